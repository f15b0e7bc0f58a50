package redisstore

import "github.com/redis/go-redis/v9"

// Every key a script touches belongs to one citizen and carries the
// citizen's hash tag, {<citizen key>}, so the scripts stay valid under
// Redis Cluster. The message index (prefix:msg:<id>) lives in another slot
// and is written by a separate command in the same pipeline.

// receiveScript stores a letter if it is new and returns the citizen and the
// letter.
//
// KEYS[1] event mark  KEYS[2] citizen hash  KEYS[3] letter hash
// ARGV[1] sender id   ARGV[2] sender name   ARGV[3] sender kind
// ARGV[4] priority    ARGV[5] notification  ARGV[6] received (unix ms)
// ARGV[7] legal (0|1) ARGV[8] letter TTL (ms)
// Returns 1 if the event was processed before, else
// {HGETALL citizen, HGETALL letter}.
var receiveScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('HSETNX', KEYS[3], 'sn', ARGV[2]) == 1 then
  redis.call('HSET', KEYS[3], 'sid', ARGV[1], 'sk', ARGV[3], 'pr', ARGV[4],
    'nt', ARGV[5], 'at', ARGV[6], 'lg', ARGV[7])
  redis.call('PEXPIRE', KEYS[3], ARGV[8])
end
return {redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
`)

// loadScript returns a citizen and one letter.
//
// KEYS[1] citizen hash  KEYS[2] letter hash
// Returns {HGETALL citizen, HGETALL letter}.
var loadScript = redis.NewScript(`
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
`)

// recordScript appends outcomes to a letter's trail, marks final deliveries
// done and optionally marks an event processed.
//
// KEYS[1] letter hash  KEYS[2] trail list  KEYS[3] event mark
// ARGV[1] trail TTL (ms)  ARGV[2] event mark TTL (ms), 0 = do not mark
// ARGV[3] trail length cap  ARGV[4] n
// then n triples: delivery id, final result (” if not final), entry JSON
var recordScript = redis.NewScript(`
local n = tonumber(ARGV[4])
local letter = redis.call('EXISTS', KEYS[1]) == 1
for i = 0, n - 1 do
  local did, fin, entry = ARGV[5 + i*3], ARGV[6 + i*3], ARGV[7 + i*3]
  if fin ~= '' and letter then redis.call('HSET', KEYS[1], 'd:' .. did, fin) end
  redis.call('RPUSH', KEYS[2], entry)
end
if n > 0 then
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
if ARGV[2] ~= '0' then redis.call('SET', KEYS[3], '1', 'PX', ARGV[2]) end
return 1
`)

// contactScript applies a contact.updated event unless a newer one was
// applied (last writer wins by the event's time).
//
// KEYS[1] citizen hash  KEYS[2] event mark
// ARGV[1] event time (unix ms)  ARGV[2] event mark TTL (ms)
// then field, value pairs; an empty value deletes the field.
// Returns 0 if the event was processed before, 1 if applied, 2 if stale.
var contactScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local res = 2
local cur = tonumber(redis.call('HGET', KEYS[1], 'cat') or '0')
if tonumber(ARGV[1]) >= cur then
  redis.call('HSET', KEYS[1], 'cat', ARGV[1])
  for i = 3, #ARGV, 2 do
    if ARGV[i+1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
    else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+1]) end
  end
  res = 1
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return res
`)

// deviceScript registers (value set) or unregisters (value empty) a push
// token.
//
// KEYS[1] citizen hash  KEYS[2] event mark
// ARGV[1] field  ARGV[2] value or ”  ARGV[3] event mark TTL (ms)
// Returns 0 if the event was processed before, else 1.
var deviceScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return 1
`)

// removeScript forgets an address a provider reported gone, unless it was
// registered after the provider's gone time.
//
// KEYS[1] citizen hash
// ARGV[1] field  ARGV[2] gone at (unix ms)  ARGV[3] expected value (” for
// a device field, whose value ends in |<registered ms>)
// Returns 1 if removed, 0 if kept.
var removeScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local reg
if ARGV[3] == '' then
  reg = tonumber(string.match(v, '|(%d+)$') or '0')
else
  if v ~= ARGV[3] then return 0 end
  reg = tonumber(redis.call('HGET', KEYS[1], 'cat') or '0')
end
if tonumber(ARGV[2]) < reg then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
`)
