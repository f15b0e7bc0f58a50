package redisstore

import "github.com/redis/go-redis/v9"

// Every key a script touches belongs to one citizen and carries the
// citizen's hash tag, {<citizen key>}, so the scripts stay valid under
// Redis Cluster. The letter hot path (Lookup, Record) needs no script.

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

// reportScript applies a provider's delivery report: a final state is never
// replaced, and a repeated state changes nothing.
//
// KEYS[1] letter hash  KEYS[2] trail list
// ARGV[1] delivery id  ARGV[2] status  ARGV[3] final (0|1)  ARGV[4] entry
// ARGV[5] trail TTL (ms)  ARGV[6] trail cap
// Returns 1 if applied, 0 if not.
var reportScript = redis.NewScript(`
local f = 'r:' .. ARGV[1]
local cur = redis.call('HGET', KEYS[1], f)
if cur then
  if string.sub(cur, 1, 2) == '1|' then return 0 end
  if string.sub(cur, 3) == ARGV[2] then return 0 end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], f, ARGV[3] .. '|' .. ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[6]), -1)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
`)
