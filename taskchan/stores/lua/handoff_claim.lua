-- handoff_claim: claim an idempotency key for a hand-off to Celery while its publish is in flight.
-- KEYS[1] P:i:CH:KEY  idempotency key
-- ARGV[1] the claim: "~" followed by this send's message id
-- ARGV[2] the claim's lifetime, ms (it lapses if its sender dies mid-publish)
-- Returns false when the key was free and now holds the claim; otherwise the
-- value it holds: an earlier message's id, or the claim of a send still publishing.
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
