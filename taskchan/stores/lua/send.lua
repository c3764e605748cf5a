-- send: store one message, atomically with its idempotency key and status record.
-- KEYS[1] P:q:CH      stream the message is added to when due now: for priority
--                     N != 0, the level's own stream P:q:CH:pN
-- KEYS[2] P:s:CH      scheduled set it is added to when delayed (score: due, unix ms)
-- KEYS[3] P:channels  set of channels ever sent to
-- KEYS[4] P:st:ID     status record (written when ARGV[6] > 0)
-- KEYS[5] P:lv:CH     the channel's non-empty priority levels (written for N != 0)
-- KEYS[6] P:i:CH:KEY  (optional) idempotency key -> message id
-- ARGV[1] envelope JSON (delayed with priority N != 0: 'pN:' .. envelope, which
--         promote.lua reads)   ARGV[2] message id   ARGV[3] delay, ms (0: now)
-- ARGV[4] idempotency key lifetime, ms   ARGV[5] channel name
-- ARGV[6] status record lifetime, ms (0: no record)   ARGV[7] priority N
-- ARGV[8] (optional) what the sender keeps in the record's 'x' field (the
--         django.tasks backend: the task and its arguments, for get_result)
-- Returns the message id: ARGV[2], or the earlier message's id when the
-- idempotency key is already held (then nothing is stored).
-- Nothing is half-written: a script's writes are not undone when a later
-- command fails, so every read and check comes first, and the first write
-- (XADD or ZADD; for a new priority level, the XGROUP CREATE that makes its
-- stream) is the only one Redis can refuse (out of memory, a read-only
-- replica, a key of the wrong type); SET and DEL overwrite any type and the
-- types of KEYS[3] and KEYS[5] are checked before.
if KEYS[6] then
  local existing = redis.call('GET', KEYS[6])
  if existing then return existing end
end
local function check_type(key, wanted)
  local found = redis.call('TYPE', key)['ok']
  if found ~= wanted and found ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. found .. ', not a ' .. wanted)
  end
end
local wrong = check_type(KEYS[3], 'set')
if wrong then return wrong end
local level = tonumber(ARGV[7])
local delay = tonumber(ARGV[3])
local leveled = level ~= 0 and delay <= 0
if leveled then
  wrong = check_type(KEYS[5], 'zset')
  if wrong then return wrong end
end
local status_ms = tonumber(ARGV[6])
local now = 0
if delay > 0 or status_ms > 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if delay > 0 then
  redis.call('ZADD', KEYS[2], now + delay, ARGV[1])
else
  if leveled and redis.call('EXISTS', KEYS[1]) == 0 then
    -- A level's stream is made here, with its group ('workers', keys.GROUP): workers learn of it from KEYS[5].
    redis.call('XGROUP', 'CREATE', KEYS[1], 'workers', '0', 'MKSTREAM')
  end
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[1])
  if leveled then
    redis.call('ZADD', KEYS[5], level, level)
  end
end
if KEYS[6] then
  redis.call('SET', KEYS[6], ARGV[2], 'PX', ARGV[4])
end
redis.call('SADD', KEYS[3], ARGV[5])
if status_ms > 0 then
  -- The record's first fields (taskchan/tracking.py): channel, enqueued, due, and
  -- what the sender keeps, if anything, in one HSET.  A message id is new, but a
  -- record of that name left by anything else is replaced.
  local fields = {'ch', ARGV[5], 'q', now, 'due', now + delay}
  if ARGV[8] then
    fields[7], fields[8] = 'x', ARGV[8]
  end
  redis.call('DEL', KEYS[4])
  redis.call('HSET', KEYS[4], unpack(fields))
  redis.call('PEXPIRE', KEYS[4], status_ms)
end
return ARGV[2]
