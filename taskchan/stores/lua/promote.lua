-- promote: move due scheduled messages (delays, retries) onto their stream.
-- KEYS[1] P:s:CH   scheduled set (score: due, unix ms, Redis clock)
-- KEYS[2] P:q:CH   stream
-- KEYS[3] P:lv:CH  the channel's non-empty priority levels
-- ARGV[1] most messages to move in one call
-- Returns {moved, next due (ms) or false}.
-- A member 'pN:' .. envelope (priority N, from send.lua or a retry) goes to
-- level N's stream, KEYS[2] .. ':pN': built here, as the level is only known
-- from the member, and in KEYS[2]'s hash slot (the name begins with it).  A
-- member whose N is not a level (-100..100, not 0), or whose level's keys hold
-- another type (written around taskchan), goes to KEYS[2] whole: the worker
-- dead-letters it as malformed, and no write here can fail half-way.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local index_ok = redis.call('TYPE', KEYS[3])['ok']
index_ok = index_ok == 'zset' or index_ok == 'none'
for _, member in ipairs(due) do
  local level, envelope = string.match(member, '^p(%-?%d+):(.*)$')
  level = tonumber(level)
  local lane = level and KEYS[2] .. ':p' .. level
  local kind = lane and redis.call('TYPE', lane)['ok']
  if level and level ~= 0 and level >= -100 and level <= 100 and index_ok and (kind == 'stream' or kind == 'none') then
    if kind == 'none' then
      redis.call('XGROUP', 'CREATE', lane, 'workers', '0', 'MKSTREAM')  -- keys.GROUP
    end
    redis.call('XADD', lane, '*', 'm', envelope)
    redis.call('ZADD', KEYS[3], level, level)
  else
    redis.call('XADD', KEYS[2], '*', 'm', member)
  end
end
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, nxt[2] or false}
