-- reschedule: finish a failed delivery and schedule its next attempt, atomically.
-- KEYS[1] P:q:CH      stream holding the delivered entry
-- KEYS[2] P:s:CH      scheduled set for the next attempt
-- KEYS[3] P:i:CH:KEY  (optional) idempotency key, kept alive while pending
-- ARGV[1] group   ARGV[2] entry id   ARGV[3] next attempt's envelope
-- ARGV[4] delay, ms (0: straight back onto the stream)   ARGV[5] key lifetime, ms
-- Returns 1, or 0 when the entry was no longer pending (another worker
-- already finished it after its lease lapsed): then nothing is scheduled, so
-- one delivery never turns into two retries.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])
local delay = tonumber(ARGV[4])
if delay > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[2], now + delay, ARGV[3])
else
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[3])
end
if KEYS[3] then
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[5]) + delay)
end
return 1
