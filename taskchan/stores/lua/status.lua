-- status: merge notes into message status records, many records in one call (the batched ack).
-- KEYS[i] P:st:ID  the status record of one message (taskchan/tracking.py)
-- ARGV, for each KEYS[i] in turn: its lifetime (ms), its number of fields n,
--   then n field/value pairs
-- One script call instead of an HSET and a PEXPIRE per message: the worker's
-- client packs one command per ack batch.  Each record is kept its lifetime
-- from this write.  Returns how many records were written.
local a = 1
for i = 1, #KEYS do
  local ttl = tonumber(ARGV[a])
  local n = tonumber(ARGV[a + 1])
  local fields = {}
  for j = a + 2, a + 1 + 2 * n do
    fields[#fields + 1] = ARGV[j]
  end
  redis.call('HSET', KEYS[i], unpack(fields))
  redis.call('PEXPIRE', KEYS[i], ttl)
  a = a + 2 + 2 * n
end
return #KEYS
