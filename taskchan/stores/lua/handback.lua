-- handback: return leased but unstarted entries to the stream (graceful stop).
-- KEYS[1] P:q:CH   stream
-- ARGV[1] group   ARGV[2..] pairs of (entry id, envelope to re-add)
-- Each entry still pending is re-added at the tail as a fresh entry (so this
-- delivery does not count as an attempt) and its old entry removed.  The
-- worker passes the envelope: the stored one, or for an entry it had
-- reclaimed, one that carries the attempts lost with earlier workers, so a
-- hand-back never resets a crash loop's count.
local returned = 0
for i = 2, #ARGV, 2 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[1], '*', 'm', ARGV[i + 1])
    returned = returned + 1
  end
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return returned
