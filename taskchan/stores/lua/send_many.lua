-- send_many: store many messages of one channel in one step; each as send.lua stores one.
-- KEYS[1] P:s:CH      scheduled set (delayed messages; score: due, unix ms)
-- KEYS[2] P:channels  set of channels ever sent to
-- KEYS[3..]           for each message in turn: its stream (P:q:CH), its status
--                     record (P:st:ID), then its idempotency key (P:i:CH:KEY) if it has one
-- ARGV[1] channel name   ARGV[2] status record lifetime, ms (0: no records)
-- then 5 per message: envelope JSON, message id, delay ms (0: now),
--                     idempotency key lifetime ms, 1 if it has an idempotency key else 0
-- Returns the ids in order: each message's own, or for a held idempotency key
-- the earlier message's id (then that message is not stored).
-- Why one script for many: the per-call cost (arguments packed by the client,
-- a script invocation in Redis) is most of what a send costs; one call per
-- batch of a channel's messages is what makes send_many several times a loop of send.
-- Failure: the channel set's type is checked before any write; a message's
-- first write (XADD or ZADD) is the only one Redis can refuse (out of memory,
-- a read-only replica, a stream key of the wrong type), and then the messages
-- before it stay stored and the rest are not: the caller's retry of the whole
-- batch may store those twice (a duplicate, never a loss).
local channels_type = redis.call('TYPE', KEYS[2])['ok']
if channels_type ~= 'set' and channels_type ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' holds a ' .. channels_type .. ', not a set')
end
local channel = ARGV[1]
local status_ms = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = {}
local k = 3
local stored = false
for a = 3, #ARGV, 5 do
  local raw, id, delay = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local stream, status = KEYS[k], KEYS[k + 1]
  local idem = nil
  k = k + 2
  if ARGV[a + 4] == '1' then
    idem = KEYS[k]
    k = k + 1
  end
  local existing = idem and redis.call('GET', idem)
  if existing then
    ids[#ids + 1] = existing
  else
    if delay > 0 then
      redis.call('ZADD', KEYS[1], now + delay, raw)
    else
      redis.call('XADD', stream, '*', 'm', raw)
    end
    if not stored then
      -- Right after the first write, as send.lua does: a batch cut short
      -- later still leaves its stored messages' channel discoverable.
      redis.call('SADD', KEYS[2], channel)
      stored = true
    end
    if idem then
      redis.call('SET', idem, id, 'PX', ARGV[a + 3])
    end
    if status_ms > 0 then
      -- The record's first fields, as send.lua writes them (taskchan/tracking.py).
      redis.call('DEL', status)
      redis.call('HSET', status, 'ch', channel, 'q', now, 'due', now + delay)
      redis.call('PEXPIRE', status, status_ms)
    end
    ids[#ids + 1] = id
  end
end
return ids
