-- promote: move due scheduled messages (delays, retries) onto their stream.
-- KEYS[1] P:s:CH   scheduled set (score: due, unix ms, Redis clock)
-- KEYS[2] P:q:CH   stream
-- ARGV[1] most messages to move in one call
-- Returns {moved, next due (ms) or false}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, envelope in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'm', envelope)
end
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, nxt[2] or false}
