package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
)

// The citizen hash's confirmation fields: the fingerprint of the registered
// email and mobile (dispatcher.Keyer.AddressFingerprint), and "1" while
// that address is confirmed.
const (
	fieldEmailFP  = "eh"
	fieldEmailOK  = "ec"
	fieldMobileFP = "mh"
	fieldMobileOK = "mc"
)

// codeFields returns the citizen hash's fingerprint and confirmation
// fields of a channel.
func codeFields(ch channels.Name) (fp, ok string, err error) {
	switch ch {
	case channels.Email:
		return fieldEmailFP, fieldEmailOK, nil
	case channels.SMS:
		return fieldMobileFP, fieldMobileOK, nil
	}
	return "", "", fmt.Errorf("confirmation codes: channel %s has no confirmed address", ch)
}

func (s *Store) codeKey(c string, ch channels.Name) string {
	return s.o.Prefix + ":{" + c + "}:cc:" + string(ch)
}

func (s *Store) codeRateKey(c string, ch channels.Name, fp string) string {
	return s.o.Prefix + ":{" + c + "}:cr:" + string(ch) + ":" + fp
}

// codeRateWindow is the window CodesPerHour counts in.
const codeRateWindow = time.Hour

// reserveCodeScript takes one of an address's code requests for an
// issuer, unless the window is full; an issuer that has one keeps it.
//
// KEYS[1] the address's request zset
// ARGV[1] issuer  ARGV[2] now (unix ms)  ARGV[3] window (ms)  ARGV[4] limit
// Returns 1 if the issuer has a request, 0 if none is left.
var reserveCodeScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[3])))
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// issueCodeScript stores a new confirmation code for the registered
// address: it must be the one the code goes to and not confirmed yet; a
// valid code another issuer got stands unless the call replaces it; the
// issuer takes one of the address's requests (a retry of the same issuer
// none).
//
// KEYS[1] code hash  KEYS[2] citizen hash  KEYS[3] the address's request zset
// ARGV[1] MAC  ARGV[2] fingerprint  ARGV[3] now (unix ms)  ARGV[4] code TTL
// (ms)  ARGV[5] window (ms)  ARGV[6] limit  ARGV[7] replace (0|1)
// ARGV[8] fingerprint field  ARGV[9] confirmed field  ARGV[10] attempts
// ARGV[11] issuer
// Returns 1 issued, 2 pending, 3 limited, 4 stale, 5 confirmed.
var issueCodeScript = redis.NewScript(`
local now = tonumber(ARGV[3])
if redis.call('HGET', KEYS[2], ARGV[8]) ~= ARGV[2] then return 4 end
if redis.call('HGET', KEYS[2], ARGV[9]) == '1' then return 5 end
if ARGV[7] ~= '1' then
  local c = redis.call('HMGET', KEYS[1], 'f', 'x', 'n', 't')
  if c[1] == ARGV[2] and c[4] ~= ARGV[11] and tonumber(c[2]) > now and tonumber(c[3]) < tonumber(ARGV[10]) then
    return 2
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - tonumber(ARGV[5])))
if not redis.call('ZSCORE', KEYS[3], ARGV[11]) then
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[6]) then return 3 end
  redis.call('ZADD', KEYS[3], now, ARGV[11])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'm', ARGV[1], 'f', ARGV[2], 'x', now + tonumber(ARGV[4]), 'n', 0, 't', ARGV[11])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) + tonumber(ARGV[5]))
return 1
`)

// checkCodeScript counts one attempt at the pending code and, if it is
// right, confirms the address and uses the code up. The attempt is counted
// before the comparison, so no number of concurrent calls makes more
// attempts than the limit; the MACs are compared in constant time: every
// byte is looked at and the differences summed, whatever differs first (no
// early exit; plain arithmetic, since not every Redis-compatible server
// has Lua's bit library).
//
// An attempt counted is remembered under the id of its store call
// (answerKey), and the call run again (go-redis re-runs a call whose
// connection dropped before the reply) gets that answer: run anew, it
// would count the attempt twice, and the right code, used up by the first
// run, would answer "none".
//
// KEYS[1] code hash  KEYS[2] citizen hash  KEYS[3] the call's answer
// ARGV[1] MAC  ARGV[2] now (unix ms)  ARGV[3] attempts  ARGV[4] fingerprint
// field  ARGV[5] confirmed field  ARGV[6] answer TTL (ms)
// Returns {answer, attempts left}: 1 confirmed, 2 wrong, 3 expired, 4 too
// many, 5 none (no code for the registered address).
var checkCodeScript = redis.NewScript(`
local prev = redis.call('GET', KEYS[3])
if prev then
  local a, left = string.match(prev, '^(%d+)|(%d+)$')
  return {tonumber(a), tonumber(left)}
end
local c = redis.call('HMGET', KEYS[1], 'm', 'f', 'x')
if not c[1] then return {5, 0} end
if redis.call('HGET', KEYS[2], ARGV[4]) ~= c[2] then return {5, 0} end
if tonumber(c[3]) <= tonumber(ARGV[2]) then return {3, 0} end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local max = tonumber(ARGV[3])
local res = {4, 0}
if n <= max then
  local a, b = c[1], ARGV[1]
  local diff = 0
  if #a ~= #b then diff = 1 end
  for i = 1, math.min(#a, #b) do
    diff = diff + math.abs(string.byte(a, i) - string.byte(b, i))
  end
  if diff ~= 0 then
    res = {2, max - n}
  else
    redis.call('HSET', KEYS[2], ARGV[5], '1')
    redis.call('DEL', KEYS[1])
    res = {1, 0}
  end
end
redis.call('SET', KEYS[3], res[1] .. '|' .. res[2], 'PX', ARGV[6])
return res
`)

// ReserveCode takes one of the address's code requests for issuer
// (reserveCodeScript).
func (s *Store) ReserveCode(ctx context.Context, citizen string, ch channels.Name, fingerprint, issuer string, at time.Time) (bool, error) {
	if _, _, err := codeFields(ch); err != nil {
		return false, err
	}
	n, err := s.runScript(ctx, reserveCodeScript, []string{s.codeRateKey(citizen, ch, fingerprint)},
		[]any{issuer, at.UnixMilli(), codeRateWindow.Milliseconds(), dispatcher.CodesPerHour})
	if err != nil {
		return false, fmt.Errorf("reserve code: %w", err)
	}
	return n == int64(1), nil
}

// IssueCode stores a new confirmation code (issueCodeScript).
func (s *Store) IssueCode(ctx context.Context, w dispatcher.CodeWrite) (dispatcher.CodeIssue, error) {
	fpField, okField, err := codeFields(w.Channel)
	if err != nil {
		return 0, err
	}
	keys := []string{s.codeKey(w.Citizen, w.Channel), s.citizenKey(w.Citizen), s.codeRateKey(w.Citizen, w.Channel, w.Fingerprint)}
	n, err := s.runScript(ctx, issueCodeScript, keys, []any{w.MAC, w.Fingerprint, w.At.UnixMilli(),
		dispatcher.CodeTTL.Milliseconds(), codeRateWindow.Milliseconds(), dispatcher.CodesPerHour, b2s(w.Replace),
		fpField, okField, dispatcher.CodeAttempts, w.Issuer})
	if err != nil {
		return 0, fmt.Errorf("issue code: %w", err)
	}
	v, _ := n.(int64)
	if v < int64(dispatcher.CodeIssued) || v > int64(dispatcher.CodeConfirmed) {
		return 0, fmt.Errorf("issue code: unexpected reply %v", n)
	}
	return dispatcher.CodeIssue(v), nil
}

// CheckCode counts one attempt at the pending code (checkCodeScript); run
// again, the call answers as it did the first time.
func (s *Store) CheckCode(ctx context.Context, c dispatcher.CodeCheck) (dispatcher.CodeAnswer, int, error) {
	fpField, okField, err := codeFields(c.Channel)
	if err != nil {
		return 0, 0, err
	}
	keys := []string{s.codeKey(c.Citizen, c.Channel), s.citizenKey(c.Citizen), s.answerKey(c.Citizen, "c:"+s.callID())}
	res, err := s.runScript(ctx, checkCodeScript, keys, []any{c.MAC, c.At.UnixMilli(), dispatcher.CodeAttempts, fpField, okField,
		answerTTL.Milliseconds()})
	if err != nil {
		return 0, 0, fmt.Errorf("check code: %w", err)
	}
	v, _ := res.([]any)
	if len(v) != 2 {
		return 0, 0, fmt.Errorf("check code: unexpected reply %v", res)
	}
	a, _ := v[0].(int64)
	left, _ := v[1].(int64)
	return dispatcher.CodeAnswer(a), int(left), nil
}
