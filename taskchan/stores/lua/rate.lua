-- rate: take up to N tokens from a channel's token bucket, shared by every worker.
-- KEYS[1] P:rate:CH   hash: tokens (may be fractional), at (unix ms of the last refill, Redis clock)
-- ARGV[1] tokens per ms (refill rate)   ARGV[2] capacity (most tokens held)
-- ARGV[3] tokens wanted
-- Returns {tokens granted, ms until the next whole token is due (0 when all were granted)}.
-- The bucket starts full; it expires once it would have refilled anyway, so
-- an idle channel leaves no key behind.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, capacity, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then
  tokens, at = capacity, now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local granted = math.min(wanted, math.floor(tokens))
tokens = tokens - granted
local wait = 0
if granted < wanted then
  wait = math.max(1, math.ceil((1 - tokens) / rate))
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate) + 1000)
return {granted, wait}
