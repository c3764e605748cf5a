-- forget: drop the consumer names of a channel's group that hold no lease and
-- have been idle a long time: workers that were killed (a clean stop drops
-- its own name), which would otherwise pile up in XINFO CONSUMERS forever.
-- KEYS[1] P:q:CH   stream
-- ARGV[1] group   ARGV[2] minimum idle time, ms
-- ARGV[3] (optional) only this consumer name: a worker dropping its own at a
--         clean stop, with minimum idle 0 (kept if it still holds leases:
--         jobs that outlived the grace period, for another worker to reclaim)
-- Returns how many names were dropped.  Checking and dropping in one script
-- matters: XGROUP DELCONSUMER discards the name's pending entries, so a name
-- that leased a message between a check and a drop would lose that lease and
-- the message would never be delivered again.
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then
  return 0  -- no stream or no group yet
end
local min_idle = tonumber(ARGV[2])
local dropped = 0
for _, fields in ipairs(consumers) do
  local info = {}
  for i = 1, #fields, 2 do
    info[fields[i]] = fields[i + 1]
  end
  if info['pending'] == 0 and info['idle'] >= min_idle and (ARGV[3] == nil or ARGV[3] == info['name']) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    dropped = dropped + 1
  end
end
return dropped
