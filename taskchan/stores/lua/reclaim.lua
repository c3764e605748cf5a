-- reclaim: take over entries whose lease lapsed (worker died or stalled).
-- KEYS[1] P:q:CH   stream
-- ARGV[1] group   ARGV[2] this worker's consumer name
-- ARGV[3] lease length (min idle), ms   ARGV[4] most entries to take
-- Returns {{entry id, {field, value, ...}, deliveries}, ...}; deliveries
-- counts this one, so the worker can dead-letter a message that keeps
-- killing its workers.  An entry deleted from the stream while still
-- pending is dropped from the pending list.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', tonumber(ARGV[3]), '-', '+', tonumber(ARGV[4]))
local out = {}
for _, p in ipairs(pending) do
  local id = p[1]
  local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), id)
  local entry = claimed[1]
  if type(entry) == 'table' and type(entry[2]) == 'table' then
    out[#out + 1] = {id, entry[2], p[4] + 1}
  elseif #claimed == 0 and #redis.call('XRANGE', KEYS[1], id, id) == 0 then
    redis.call('XACK', KEYS[1], ARGV[1], id)
  end
end
return out
