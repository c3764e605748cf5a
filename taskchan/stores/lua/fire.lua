-- fire: claim one schedule slot and queue its message, in one step: each slot fires once.
-- KEYS[1] P:sched:CH  the last slot fired (unix ms)
-- KEYS[2] P:q:CH      stream the slot's message is added to
-- KEYS[3] P:channels  set of channels ever sent to
-- ARGV[1] slot (unix ms)   ARGV[2] envelope   ARGV[3] channel name
-- ARGV[4] '1': a catch-up at start, fired only if an earlier slot was recorded
-- Returns 1 when this call fired the slot, 0 when it (or a later one) had fired already.
-- Every worker serving the channel calls this for every slot; the first one
-- wins.  Reads and checks come first; XADD is the one write Redis can refuse.
local slot = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '')
if last ~= nil and last >= slot then return 0 end
if last == nil and ARGV[4] == '1' then return 0 end
local channels_type = redis.call('TYPE', KEYS[3])['ok']
if channels_type ~= 'set' and channels_type ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[3] .. ' holds a ' .. channels_type .. ', not a set')
end
redis.call('XADD', KEYS[2], '*', 'm', ARGV[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
