-- reclaim: take over entries whose lease lapsed (worker died or stalled).
-- KEYS[1] P:q:CH   stream
-- ARGV[1] group   ARGV[2] this worker's consumer name
-- ARGV[3] lease length (min idle), ms   ARGV[4] most entries to take
-- Returns {{entry id, {field, value, ...}, deliveries}, ...}.
-- The delivery counter is kept as it was (RETRYCOUNT), not raised: it counts
-- deliveries that may have *started*, and a reclaimed entry has not started
-- here yet.  The worker raises it (charge.lua) just before it starts the job,
-- so a message that sat unstarted in a dead worker's prefetch buffer is not
-- charged again for every crash.  An entry deleted from the stream while
-- still pending is dropped from the pending list.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', tonumber(ARGV[3]), '-', '+', tonumber(ARGV[4]))
local out = {}
for _, p in ipairs(pending) do
  local id = p[1]
  local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), id, 'RETRYCOUNT', p[4])
  local entry = claimed[1]
  if type(entry) == 'table' and type(entry[2]) == 'table' then
    out[#out + 1] = {id, entry[2], p[4]}
  elseif #claimed == 0 and #redis.call('XRANGE', KEYS[1], id, id) == 0 then
    redis.call('XACK', KEYS[1], ARGV[1], id)
  end
end
return out
