-- slots: take concurrency slots, one per message, each held until its holder's lease would lapse.
-- KEYS[i] P:cc:CH:KEY  sorted set of the slots held under that key: member -> expiry (unix ms, Redis clock)
-- ARGV[1] the limit (slots per key); 0 renews existing holdings only (ZADD XX)   ARGV[2] holding length, ms (the channel's lease)
-- ARGV[2 + i] the member naming message i's holding (worker's consumer name, shard, entry id)
-- Returns one 1 (granted, or already held) or 0 (the key is full) per KEYS entry.
-- Holdings whose expiry passed belong to a worker that stopped renewing them
-- (killed, frozen): they are dropped first, so a dead worker's slots free
-- themselves after one lease.  A key may appear several times: each message
-- is weighed against what the earlier ones took.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local member = ARGV[2 + i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if limit == 0 then
    out[i] = redis.call('ZADD', key, 'XX', 'CH', now + lease, member)
    if out[i] == 1 then redis.call('PEXPIRE', key, lease) end
  elseif redis.call('ZSCORE', key, member) or redis.call('ZCARD', key) < limit then
    redis.call('ZADD', key, now + lease, member)
    redis.call('PEXPIRE', key, lease)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
