-- extend: renew this worker's leases (heartbeat) without counting a delivery.
-- KEYS[1] P:q:CH   stream
-- ARGV[1] group   ARGV[2] this worker's consumer name   ARGV[3..] entry ids
-- Only entries still leased to this worker are renewed: one whose lease lapsed
-- and was taken by another worker stays with that worker.
-- Returns the ids now leased to another worker.  An id no longer pending at
-- all was finished (acked or rescheduled) meanwhile and is not reported.
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] then
    if p[1][2] == ARGV[2] then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    else
      lost[#lost + 1] = ARGV[i]
    end
  end
end
return lost
