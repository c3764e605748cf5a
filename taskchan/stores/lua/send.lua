-- send: store one message, atomically with its idempotency key and status record.
-- KEYS[1] P:q:CH      stream the message is added to when due now
-- KEYS[2] P:s:CH      scheduled set it is added to when delayed (score: due, unix ms)
-- KEYS[3] P:channels  set of channels ever sent to
-- KEYS[4] P:st:ID     status record (written when ARGV[6] > 0)
-- KEYS[5] P:i:CH:KEY  (optional) idempotency key -> message id
-- ARGV[1] envelope JSON   ARGV[2] message id   ARGV[3] delay, ms (0: now)
-- ARGV[4] idempotency key lifetime, ms   ARGV[5] channel name
-- ARGV[6] status record lifetime, ms (0: no record)
-- ARGV[7] (optional) what the sender keeps in the record's 'x' field (the
--         django.tasks backend: the task and its arguments, for get_result)
-- Returns the message id: ARGV[2], or the earlier message's id when the
-- idempotency key is already held (then nothing is stored).
-- Nothing is half-written: a script's writes are not undone when a later
-- command fails, so every read and check comes first, and the first write
-- (XADD or ZADD) is the only one Redis can refuse (out of memory, a read-only
-- replica, a key of the wrong type); SET and DEL overwrite any type and KEYS[3]'s
-- type is checked before.
if KEYS[5] then
  local existing = redis.call('GET', KEYS[5])
  if existing then return existing end
end
local channels_type = redis.call('TYPE', KEYS[3])['ok']
if channels_type ~= 'set' and channels_type ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[3] .. ' holds a ' .. channels_type .. ', not a set')
end
local delay = tonumber(ARGV[3])
local status_ms = tonumber(ARGV[6])
local now = 0
if delay > 0 or status_ms > 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if delay > 0 then
  redis.call('ZADD', KEYS[2], now + delay, ARGV[1])
else
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[1])
end
if KEYS[5] then
  redis.call('SET', KEYS[5], ARGV[2], 'PX', ARGV[4])
end
redis.call('SADD', KEYS[3], ARGV[5])
if status_ms > 0 then
  -- The record's first fields (taskchan/tracking.py): channel, enqueued, due.
  -- A message id is new, but a record of that name left by anything else is replaced.
  redis.call('DEL', KEYS[4])
  redis.call('HSET', KEYS[4], 'ch', ARGV[5], 'q', now, 'due', now + delay)
  if ARGV[7] then
    redis.call('HSET', KEYS[4], 'x', ARGV[7])
  end
  redis.call('PEXPIRE', KEYS[4], status_ms)
end
return ARGV[2]
