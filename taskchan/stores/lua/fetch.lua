-- fetch: lease up to ARGV[3] new entries of one channel, highest priority first.
-- KEYS[1] P:q:CH   the channel's stream (level 0)
-- KEYS[2] P:lv:CH  the channel's non-empty priority levels (members: level numbers)
-- ARGV[1] group   ARGV[2] this worker's consumer name   ARGV[3] most entries to lease
-- Returns {{level, entry id, {field, value, ...}}, ...}, highest level first,
-- each level's entries in the order they were added (FIFO among equals).
-- Level N's stream is KEYS[1] .. ':pN', built here from KEYS[2]'s members (the
-- levels in use are only known here) and in KEYS[1]'s hash slot.  A channel
-- that never used priority costs one ZRANGE of a missing key more than a plain
-- XREADGROUP.  An emptied level's stream is deleted and leaves KEYS[2]; members
-- that are no level, and levels whose key is no stream (written around
-- taskchan), leave KEYS[2] too, so garbage never stops a read.
local left = tonumber(ARGV[3])
local levels = {0}
local index_ok, members = pcall(redis.call, 'ZRANGE', KEYS[2], 0, -1)
if index_ok then
  for _, member in ipairs(members) do
    local n = tonumber(member)
    if n and n ~= 0 and n >= -100 and n <= 100 and tostring(n) == member then
      levels[#levels + 1] = n
    else
      redis.call('ZREM', KEYS[2], member)
    end
  end
end
table.sort(levels, function(a, b) return a > b end)
local out = {}
local function lease(level, reply)
  for _, entry in ipairs(reply[1][2]) do
    out[#out + 1] = {level, entry[1], entry[2]}
    left = left - 1
  end
end
for _, level in ipairs(levels) do
  if left <= 0 then break end
  local stream = level == 0 and KEYS[1] or KEYS[1] .. ':p' .. level
  local ok, reply = pcall(redis.call, 'XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS', stream, '>')
  if ok and reply then
    lease(level, reply)
  elseif level == 0 then
    -- No group (a FLUSHDB) or a key of the wrong type: the caller's to handle, unless
    -- entries were leased already (they must reach the worker; the next read fails).
    if not ok and #out == 0 then
      return redis.error_reply(type(reply) == 'table' and reply.err or tostring(reply))
    end
  elseif ok and redis.call('XLEN', stream) == 0 then
    redis.call('DEL', stream)
    redis.call('ZREM', KEYS[2], level)
  elseif not ok then
    if redis.call('TYPE', stream)['ok'] == 'stream' then
      pcall(redis.call, 'XGROUP', 'CREATE', stream, ARGV[1], '0')  -- its group was deleted: read next time
    else
      redis.call('ZREM', KEYS[2], level)
    end
  end
end
return out
