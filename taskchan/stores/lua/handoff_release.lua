-- handoff_release: give up a hand-off's claim on an idempotency key (its publish failed).
-- KEYS[1] P:i:CH:KEY  idempotency key
-- ARGV[1] the claim this send set (handoff_claim.lua)
-- Deletes the key only while it still holds that claim: a claim that lapsed
-- and was taken over by another send is left alone.  Returns 1 if deleted, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
