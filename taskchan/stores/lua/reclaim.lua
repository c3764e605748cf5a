-- reclaim: take over entries whose lease lapsed (worker died or stalled).
-- KEYS[1] P:q:CH   stream (level 0)
-- KEYS[2] P:lv:CH  the channel's priority levels: level N's stream is KEYS[1] .. ':pN'
--                  (built here, as fetch.lua does, in KEYS[1]'s hash slot)
-- ARGV[1] group   ARGV[2] this worker's consumer name
-- ARGV[3] lease length (min idle), ms   ARGV[4] most entries to take
-- Returns {{level, entry id, {field, value, ...}, deliveries}, ...}, highest
-- level first: an entry keeps its level, so its priority, when reclaimed.
-- The delivery counter is kept as it was (RETRYCOUNT), not raised: it counts
-- deliveries that may have *started*, and a reclaimed entry has not started
-- here yet.  The worker raises it (charge.lua) just before it starts the job,
-- so a message that sat unstarted in a dead worker's prefetch buffer is not
-- charged again for every crash.  An entry deleted from the stream while
-- still pending is dropped from the pending list.
local out = {}
local left = tonumber(ARGV[4])
local function take(level, stream)
  local pending = redis.call('XPENDING', stream, ARGV[1], 'IDLE', tonumber(ARGV[3]), '-', '+', left)
  for _, p in ipairs(pending) do
    local id = p[1]
    local claimed = redis.call('XCLAIM', stream, ARGV[1], ARGV[2], tonumber(ARGV[3]), id, 'RETRYCOUNT', p[4])
    local entry = claimed[1]
    if type(entry) == 'table' and type(entry[2]) == 'table' then
      out[#out + 1] = {level, id, entry[2], p[4]}
      left = left - 1
    elseif #claimed == 0 and #redis.call('XRANGE', stream, id, id) == 0 then
      redis.call('XACK', stream, ARGV[1], id)
    end
  end
end
local levels = {}
local index_ok, members = pcall(redis.call, 'ZRANGE', KEYS[2], 0, -1)
for _, member in ipairs(index_ok and members or {}) do
  local n = tonumber(member)
  if n and n ~= 0 and n >= -100 and n <= 100 and tostring(n) == member then
    levels[#levels + 1] = n
  end
end
table.sort(levels, function(a, b) return a > b end)
for _, level in ipairs(levels) do
  -- A level's stream of another type or without its group is fetch.lua's to clear.
  if left > 0 and level > 0 then pcall(take, level, KEYS[1] .. ':p' .. level) end
end
if left > 0 then
  local ok, err = pcall(take, 0, KEYS[1])
  -- No group (a FLUSHDB): the caller's to handle, once what was taken is handed out.
  if not ok and #out == 0 then return redis.error_reply(type(err) == 'table' and err.err or tostring(err)) end
end
for _, level in ipairs(levels) do
  if left > 0 and level < 0 then pcall(take, level, KEYS[1] .. ':p' .. level) end
end
return out
