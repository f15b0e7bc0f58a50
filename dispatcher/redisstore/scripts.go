package redisstore

import "github.com/redis/go-redis/v9"

// Every key a script touches belongs to one citizen and carries the
// citizen's hash tag, {<citizen key>}, so the scripts stay valid under
// Redis Cluster. The single letter's hot path needs one script call per
// letter (its arrival, letterScript); its other writes are plain commands.
// A batch task's letters need none while nothing changes them meanwhile
// (arrive.go, LookupWriteAll).

// contactScript applies a contact.updated event unless a newer one was
// applied (last writer wins by the event's time). An email or mobile the
// event sets keeps its confirmation only when its fingerprint is the stored
// one; a changed or removed address loses it in the same step, and a
// confirmed event (core's migration) confirms the addresses it sets.
//
// KEYS[1] citizen hash  KEYS[2] event mark
// ARGV[1] event time (unix ms)  ARGV[2] event mark TTL (ms; 0: no mark)
// ARGV[3] confirmed (0|1)  ARGV[4] email fingerprint  ARGV[5] mobile
// fingerprint, then field, value pairs; an empty value deletes the field.
// Returns 0 if the event was processed before, 1 if applied, 2 if stale.
var contactScript = redis.NewScript(`
local mark = ARGV[2] ~= '0'
if mark and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local res = 2
local cur = tonumber(redis.call('HGET', KEYS[1], 'cat') or '0')
if tonumber(ARGV[1]) >= cur then
  redis.call('HSET', KEYS[1], 'cat', ARGV[1])
  local addr = {email = {'` + fieldEmailFP + `', '` + fieldEmailOK + `', ARGV[4]}, mobile = {'` + fieldMobileFP + `', '` + fieldMobileOK + `', ARGV[5]}}
  for i = 6, #ARGV, 2 do
    local f, v = ARGV[i], ARGV[i+1]
    if v == '' then redis.call('HDEL', KEYS[1], f)
    else redis.call('HSET', KEYS[1], f, v) end
    local a = addr[f]
    if a then
      if v == '' or a[3] == '' then
        redis.call('HDEL', KEYS[1], a[1], a[2])
      else
        if redis.call('HGET', KEYS[1], a[1]) ~= a[3] then redis.call('HDEL', KEYS[1], a[2]) end
        redis.call('HSET', KEYS[1], a[1], a[3])
        if ARGV[3] == '1' then redis.call('HSET', KEYS[1], a[2], '1') end
      end
    end
  end
  res = 1
end
if mark then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return res
`)

// deviceScript registers (value set) or unregisters (value empty) a push
// token; the token's field from before sealing goes either way.
//
// KEYS[1] citizen hash  KEYS[2] event mark
// ARGV[1] field  ARGV[2] value or ”  ARGV[3] event mark TTL (ms; 0: no
// mark)  ARGV[4] the field from before sealing
// Returns 0 if the event was processed before, else 1.
var deviceScript = redis.NewScript(`
local mark = ARGV[3] ~= '0'
if mark and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1], ARGV[4])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HDEL', KEYS[1], ARGV[4])
end
if mark then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
return 1
`)

// removeScript forgets an address a provider reported gone, unless it was
// registered after the provider's gone time; the fields named after it
// (an email's or mobile's fingerprint and confirmation) go with it.
//
// KEYS[1] citizen hash
// ARGV[1] field  ARGV[2] gone at (unix ms)  ARGV[3] expected value: the
// sealed value the caller read and opened, compared byte for byte (” for a
// device field, whose value is app|env|<registered ms>[|<sealed token>]),
// then fields to delete with it (an address's fingerprint and confirmation)
// Returns 1 if removed, 0 if kept.
var removeScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local reg
if ARGV[3] == '' then
  reg = tonumber(string.match(v, '^[^|]*|[^|]*|(%d+)') or '0')
else
  if v ~= ARGV[3] then return 0 end
  reg = tonumber(redis.call('HGET', KEYS[1], 'cat') or '0')
end
if tonumber(ARGV[2]) < reg then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
for i = 4, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
return 1
`)

// reportScript applies a provider's delivery report: a final state is never
// replaced, and a repeated state changes nothing. The state field
// ('r:<delivery id>' = final|status, then the unit separator and the id of
// the call that wrote it) tells the call run again (go-redis re-runs a
// call whose connection dropped before the reply) from a copy of the
// report: the call's own write answers "applied" again, a copy's
// "not applied". Fields from before the call id have none.
//
// KEYS[1] letter hash  KEYS[2] trail list
// ARGV[1] delivery id  ARGV[2] status  ARGV[3] final (0|1)  ARGV[4] entry
// ARGV[5] trail TTL (ms)  ARGV[6] trail cap  ARGV[7] call id
// Returns 1 if applied, 0 if not.
var reportScript = redis.NewScript(`
local f = 'r:' .. ARGV[1]
local cur = redis.call('HGET', KEYS[1], f)
if cur then
  local status, call = string.sub(cur, 3), ''
  local sep = string.find(status, '\31', 1, true)
  if sep then status, call = string.sub(status, 1, sep - 1), string.sub(status, sep + 1) end
  if call == ARGV[7] then return 1 end
  if string.sub(cur, 1, 2) == '1|' then return 0 end
  if status == ARGV[2] then return 0 end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], f, ARGV[3] .. '|' .. ARGV[2] .. '\31' .. ARGV[7])
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[6]), -1)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
`)

// letterScript is a letter's arrival: the metadata is stored if the letter
// has none yet, the write's letter fields are set and cleared (never the
// read state 'r', so it is read with 'sn' before them), and the
// letter is filed in the unread index unless it is read — one step, so no
// reader ever counts a letter that was read before it arrived. The count
// it returns is the alert's badge (Lookup reads none). Every 16th letter
// (by that count: 1, 17, 33 …) it also drops the letters past retention
// from the index, which has no expiry of its own (reads trim it too).
//
// The in-flight marks of the deliveries its run is about to send are
// claims: one is set only where the delivery's field is empty or holds
// this very mark (the call run again: go-redis re-runs a pipeline whose
// connection dropped, and the mark carries the call's id). A field that
// holds another run's in-flight mark or a done mark is left as it is and
// returned as taken: two runs of one letter at once (two event ids for
// one message id, a letter queued twice) send each delivery once.
//
// KEYS[1] letter hash  KEYS[2] unread index
// ARGV[1] message id  ARGV[2] received (unix ms)
// ARGV[3] oldest received ms still kept  ARGV[4] letter TTL (ms)
// ARGV[5] read letter TTL (ms)  ARGV[6] nm, the number of metadata pairs
// ARGV[7] nc, the number of claim pairs  ARGV[8] ns, the number of other
// field pairs to set
// then nm metadata field/value pairs, nc claim field/value pairs (the
// in-flight marks), ns field/value pairs (done marks, the event mark),
// and the fields to delete (in-flight marks answered).
// Returns {the citizen's unread count after the write, taken fields...}.
var letterScript = redis.NewScript(claimLua + `
local nm, nc, ns = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local c0 = 9 + 2 * nm
local s0 = c0 + 2 * nc
local last = s0 + 2 * ns - 1
local cur = redis.call('HMGET', KEYS[1], unpack(claimed({'sn', 'r'}, c0, nc)))
local from = 9
if nm > 0 and cur[1] then from = c0 end
local out = claim(KEYS[1], cur, 3, c0, nc, from, last)
if last < #ARGV then redis.call('HDEL', KEYS[1], unpack(ARGV, last + 1, #ARGV)) end
if cur[2] == '1' then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
else
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local n = redis.call('ZCOUNT', KEYS[2], ARGV[3], '+inf')
if n % 16 == 1 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
end
table.insert(out, 1, n)
return out
`)

// claimScript is letterScript's claims for a write without an arrival
// (an access holder's deliveries of the owner's letter): the in-flight
// marks are set only where the field is empty or holds this call's own
// claim, the other fields as they are.
//
// KEYS[1] letter hash
// ARGV[1] nc, the number of claim pairs; then nc claim field/value pairs,
// then the other field/value pairs to set.
// Returns the taken fields.
var claimScript = redis.NewScript(claimLua + `
local nc = tonumber(ARGV[1])
local cur = redis.call('HMGET', KEYS[1], unpack(claimed({}, 2, nc)))
return claim(KEYS[1], cur, 1, 2, nc, 2, #ARGV)
`)

// claimLua is the claim rule of letterScript and claimScript, one copy:
// claimed appends the nc claimed fields (ARGV pairs from c0) to fields,
// for the script's HMGET; claim sets the field/value pairs ARGV[from..last]
// on key except a claim whose field holds a value other than the claim's
// own (cur[k0 + k] is claim k's field as read), and returns those taken
// fields. With none taken it sets the pairs in one HSET of ARGV as it is.
const claimLua = `
local function claimed(fields, c0, nc)
  for i = c0, c0 + 2 * nc - 1, 2 do fields[#fields + 1] = ARGV[i] end
  return fields
end
local function claim(key, cur, k0, c0, nc, from, last)
  local taken = {}
  for k = 0, nc - 1 do
    local old = cur[k0 + k]
    if old and old ~= ARGV[c0 + 2 * k + 1] then taken[#taken + 1] = ARGV[c0 + 2 * k] end
  end
  if #taken == 0 then
    if from <= last then redis.call('HSET', key, unpack(ARGV, from, last)) end
    return taken
  end
  local set, skip = {}, {}
  for _, f in ipairs(taken) do skip[f] = true end
  for i = from, last, 2 do
    if not skip[ARGV[i]] then
      set[#set + 1] = ARGV[i]
      set[#set + 1] = ARGV[i + 1]
    end
  end
  if #set > 0 then redis.call('HSET', key, unpack(set)) end
  return taken
end
`

// unlockScript frees a sync lock only while it holds the caller's token.
//
// KEYS[1] lock  ARGV[1] token
// Returns 1 if freed, 0 if the lock was another holder's or gone.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// stateScript applies a read or unread from a platform to a letter. Last
// writer wins by the event's time; a tie goes to read over unread, then to
// the greater platform name, so every replica and every order of arrival
// ends in the same state. The citizen's unread index follows in the same
// step.
//
// The version grows whenever some platform must be told: when the event
// wins and changes the read flag (tell the others: target 1), and when it
// loses to a newer state from another platform that differs from it (tell
// the event's own platform, which shows the losing state: target 2).
// Receivers drop a version not above the last they applied, so a
// correction needs a version of its own.
//
// The event is marked processed by its caller after the fan-out, so it
// may run again before (go-redis runs a call again when the connection
// drops before the reply came; a task is retried): the answer is kept
// under the event's id (answerKey) and a second run returns it, changing
// nothing. Run anew, it would find its own state in place and answer "not
// changed" (no platform told), or lose again and count a second
// correction.
//
// KEYS[1] letter hash  KEYS[2] unread index  KEYS[3] the event's answer
// ARGV[1] read (0|1)  ARGV[2] at (unix ms)  ARGV[3] platform
// ARGV[4] event mark field ('e:<id>')  ARGV[5] letter TTL (ms)
// ARGV[6] message id  ARGV[7] oldest received ms still kept
// ARGV[8] read letter TTL (ms): a read letter is kept that long (it may
// still be unread again, and platforms may still ask for its state); only
// unread letters need the full retention (6-month paper forwarding).
// ARGV[9] answer TTL (ms; 0: no event, no answer kept)
// Returns -1 if the event was processed, else
// {target, read, version, changed at, changed by, unread count, received}.
var stateScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[4]) == 1 then return -1 end
local keep = ARGV[9] ~= '0'
if keep then
  local a = redis.call('GET', KEYS[3])
  if a then
    local t, r, v, ca, n, rc, cb = string.match(a, '^(%d+)|(%d)|(%d+)|(%-?%d+)|(%d+)|(%d)|(.*)$')
    return {tonumber(t), tonumber(r), tonumber(v), tonumber(ca), cb, tonumber(n), tonumber(rc)}
  end
end
local cur = redis.call('HMGET', KEYS[1], 'r', 'ca', 'cb', 'v', 'sn', 'at')
local r, ca, cb, v = cur[1] or '0', tonumber(cur[2] or '-1'), cur[3] or '', tonumber(cur[4] or '0')
local nr, nat, np = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local target = 0
if nat > ca or (nat == ca and (nr > r or (nr == r and np > cb))) then
  if nr ~= r then
    v = v + 1
    target = 1
  end
  r, ca, cb = nr, nat, np
  redis.call('HSET', KEYS[1], 'r', r, 'ca', ca, 'cb', cb, 'v', v)
  if r == '1' then
    redis.call('PEXPIRE', KEYS[1], ARGV[8])
  else
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
  end
  if cur[5] then
    if r == '1' then
      redis.call('ZREM', KEYS[2], ARGV[6])
    else
      redis.call('ZADD', KEYS[2], cur[6], ARGV[6])
    end
  end
elseif nr ~= r and np ~= cb then
  v = v + 1
  target = 2
  redis.call('HSET', KEYS[1], 'v', v)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[7])
local received = 0
if cur[5] then received = 1 end
local n = redis.call('ZCARD', KEYS[2])
if keep then
  redis.call('SET', KEYS[3], string.format('%d|%d|%d|%d|%d|%d|%s', target, tonumber(r), v, ca, n, received, cb), 'PX', ARGV[9])
end
return {target, tonumber(r), v, ca, cb, n, received}
`)

// exemptionScript records exemption.granted or .revoked, last writer wins
// by the event's time. The exemption's start ('xs') is set by the grant
// that makes the citizen exempt, kept by later grants, and cleared by the
// revoke.
//
// KEYS[1] citizen hash  KEYS[2] event mark
// ARGV[1] exempt (0|1)  ARGV[2] event time (unix ms)  ARGV[3] forward
// address (” = none)  ARGV[4] event mark TTL (ms; 0: no mark)
// Returns 0 if the event was processed before, 1 if applied, 2 if stale.
var exemptionScript = redis.NewScript(`
local mark = ARGV[4] ~= '0'
if mark and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local res = 2
if tonumber(ARGV[2]) >= tonumber(redis.call('HGET', KEYS[1], 'xt') or '0') then
  redis.call('HSET', KEYS[1], 'xt', ARGV[2])
  if ARGV[1] == '1' then
    if redis.call('HEXISTS', KEYS[1], 'x') == 0 then redis.call('HSET', KEYS[1], 'xs', ARGV[2]) end
    redis.call('HSET', KEYS[1], 'x', '1')
  else
    redis.call('HDEL', KEYS[1], 'x', 'xs')
  end
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'fwd', ARGV[3]) else redis.call('HDEL', KEYS[1], 'fwd') end
  res = 1
end
if mark then redis.call('SET', KEYS[2], '1', 'PX', ARGV[4]) end
return res
`)

// ackScript records the version a platform acknowledged: only upwards, and
// only on a letter that still exists (no key without expiry).
//
// KEYS[1] letter hash  ARGV[1] field ('a:<platform>')  ARGV[2] version
var ackScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// consentScript records consent.granted or .revoked for one platform, last
// writer wins by the event's time per platform; at the same time a
// revocation wins, so any order of arrival ends the same. The field's
// value is "1|<ms>" (granted) or "0|<ms>" (revoked: kept, so an older
// grant arriving late stays stale).
//
// KEYS[1] citizen hash  KEYS[2] event mark
// ARGV[1] field ('cs:<platform>')  ARGV[2] granted (0|1)  ARGV[3] event
// time (unix ms)  ARGV[4] event mark TTL (ms; 0: no mark)
// Returns 0 if the event was processed before, 1 if applied, 2 if stale.
var consentScript = redis.NewScript(`
local mark = ARGV[4] ~= '0'
if mark and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local res = 2
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local cg, ct = '0', -1
if cur then
  cg = string.sub(cur, 1, 1)
  ct = tonumber(string.sub(cur, 3)) or -1
end
local at = tonumber(ARGV[3])
if at > ct or (at == ct and (ARGV[2] == '0' or cg == '1')) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
  res = 1
end
if mark then redis.call('SET', KEYS[2], '1', 'PX', ARGV[4]) end
return res
`)

// holdScript holds a letter for a channel's coalesced alert: appended to
// the held letters unless it is among them already, where it stays. So a
// call run again (go-redis re-runs a call whose connection dropped before
// the reply; a task is retried) holds it once and answers the same, and
// Release, which forgets the first n letters of an earlier Held, never
// loses a letter held after that Held to a letter moved.
//
// KEYS[1] held list  ARGV[1] message id  ARGV[2] TTL (ms)
// Returns 1 if the letter is the first held, else 0.
var holdScript = redis.NewScript(`
local p = redis.call('LPOS', KEYS[1], ARGV[1])
if not p then p = redis.call('RPUSH', KEYS[1], ARGV[1]) - 1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if p == 0 then return 1 end
return 0
`)
