-- charge: count a reclaimed delivery as an attempt, just before it starts.
-- KEYS[1] P:q:CH   stream
-- ARGV[1] group   ARGV[2] this worker's consumer name   ARGV[3] entry id
-- ARGV[4] the delivery count to record (deliveries so far + 1)
-- Returns 1, or 0 when the entry is no longer leased to this worker (another
-- worker took it, or it was finished): then the job must not start here.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not p[1] or p[1][2] ~= ARGV[2] then
  return 0
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'RETRYCOUNT', tonumber(ARGV[4]), 'JUSTID')
return 1
