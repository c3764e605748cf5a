-- handback: return leased but unstarted entries to the stream (graceful stop).
-- KEYS[1] P:q:CH   stream
-- ARGV[1] group   ARGV[2..] entry ids
-- Each entry still pending is re-added at the tail with the same envelope (so
-- its delivery does not count as an attempt) and its old entry removed.
local returned = 0
for i = 2, #ARGV do
  local entry = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 and entry[1] then
    redis.call('XADD', KEYS[1], '*', unpack(entry[1][2]))
    returned = returned + 1
  end
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return returned
