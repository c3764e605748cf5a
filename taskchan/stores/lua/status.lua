-- status: merge notes into message status records, many records in one call (the batched ack).
-- KEYS[i]  P:st:ID  the status record of one message (taskchan/tracking.py)
-- ARGV[1]  a JSON array with one note per KEYS[i], in turn:
--          [lifetime ms (a string), field, value, field, value, ...]
-- One script call instead of an HSET and a PEXPIRE per message, and one
-- argument for all its notes: redis-py's asyncio client packs every argument in
-- Python, which cost more than the writes (6 us a message in 9 arguments, 1 in
-- JSON).  Each record is kept its lifetime from this write.  Returns how many
-- records were written.
local notes = cjson.decode(ARGV[1])
for i = 1, #KEYS do
  local note = notes[i]
  redis.call('HSET', KEYS[i], unpack(note, 2))
  redis.call('PEXPIRE', KEYS[i], note[1])
end
return #KEYS
