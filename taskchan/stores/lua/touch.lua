-- touch: write a key's remaining lifetime back, unchanged: a write that replicas must receive.
-- KEYS[1] P:i:CH:KEY  idempotency key of a durable send
-- A durable send runs send.lua, this, then WAIT on one connection.  WAIT only
-- covers what this connection wrote; a repeated key makes send.lua write
-- nothing (it returns the first message's id), and that first message may have
-- come through another connection.  Replication is in order, so once a replica
-- holds this write it holds the first message too.  Returns 1, or 0 when the
-- key is gone or has no lifetime (nothing written).
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 1
end
return 0
