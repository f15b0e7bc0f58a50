package redisstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
)

// Access relations (access holders, læseadgang) are kept twice, under the
// citizen keys only:
//
//	P:{O}:ah   hash  the owner's holders: <holder key> = relation
//	P:{H}:ao   hash  the mailboxes the holder holds: <owner key> = relation
//
// A relation is "g|gt|x|n|nt": granted (0|1), the time of the grant or
// revoke in force (unix ms), expiry (unix ms, 0: none), notify (0|1), the
// time of the notify in force. The grant state and notify are each last
// writer wins by their own time, so an access.updated that overtakes its
// access.granted keeps its notify (a grant's notify counts only when the
// grant itself applies). A revoked relation stays (g=0) so an
// older grant arriving late cannot bring it back. The owner's side is the
// one read for alerts; it is written with the event's mark, after the
// holder's side.

func (s *Store) holdersKey(owner string) string       { return s.o.Prefix + ":{" + owner + "}:ah" }
func (s *Store) accessOwnersKey(holder string) string { return s.o.Prefix + ":{" + holder + "}:ao" }

// accessScript applies one access change to one side of a relation.
//
// KEYS[1] relation hash  KEYS[2] event mark
// ARGV[1] field (the other citizen's key)  ARGV[2] change (g|u|r)
// ARGV[3] event time (unix ms)  ARGV[4] notify (0|1)  ARGV[5] expiry
// (unix ms, 0: none)  ARGV[6] event mark TTL (ms; 0: no mark)
// Returns 1 if applied, 2 if stale. (SetAccess checks the mark before
// either side is written; a twin running at the same moment writes the
// same values, which last writer wins makes harmless.)
var accessScript = redis.NewScript(`
local mark = ARGV[6] ~= '0'
local g, gt, x, n, nt = '0', '-1', '0', '0', '-1'
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local a, b, c, d, e = string.match(cur, '^(%d)|(%-?%d+)|(%d+)|(%d)|(%-?%d+)$')
  if a then g, gt, x, n, nt = a, b, c, d, e end
end
local at = tonumber(ARGV[3])
local res = 2
if ARGV[2] == 'g' and (at > tonumber(gt) or (at == tonumber(gt) and g == '1')) then
  g, gt, x, res = '1', ARGV[3], ARGV[5], 1
elseif ARGV[2] == 'r' and at >= tonumber(gt) then
  g, gt, x, res = '0', ARGV[3], '0', 1
end
if ((ARGV[2] == 'g' and res == 1) or ARGV[2] == 'u') and at >= tonumber(nt) then
  n, nt, res = ARGV[4], ARGV[3], 1
end
if res == 1 then redis.call('HSET', KEYS[1], ARGV[1], g .. '|' .. gt .. '|' .. x .. '|' .. n .. '|' .. nt) end
if mark then redis.call('SET', KEYS[2], '1', 'PX', ARGV[6]) end
return res
`)

// SetAccess records an access change: the holder's side, then the owner's
// side with the mark (accessScript each). A marked write seen before
// changes nothing.
func (s *Store) SetAccess(ctx context.Context, w dispatcher.AccessWrite) (bool, error) {
	if w.Owner == "" || w.Holder == "" {
		return false, fmt.Errorf("access: owner and holder are required")
	}
	change := map[dispatcher.AccessChange]string{dispatcher.AccessGrant: "g", dispatcher.AccessUpdate: "u",
		dispatcher.AccessRevoke: "r"}[w.Change]
	if change == "" {
		return false, fmt.Errorf("access: unknown change %d", w.Change)
	}
	if !w.Mark.IsZero() {
		if seen, err := s.Seen(ctx, w.Mark); err != nil || seen {
			return false, err
		}
	}
	var x int64
	if !w.Expires.IsZero() {
		x = w.Expires.UnixMilli()
	}
	args := func(other string, ttl int64) []any {
		return []any{other, change, w.At.UnixMilli(), b2s(w.Notify), x, ttl}
	}
	none, _ := s.markArgs(w.Holder, dispatcher.EventRef{})
	if _, err := s.runScript(ctx, accessScript, []string{s.accessOwnersKey(w.Holder), none}, args(w.Owner, 0)); err != nil {
		return false, fmt.Errorf("access: %w", err)
	}
	mk, ttl := s.markArgs(w.Owner, w.Mark)
	n, err := s.runScript(ctx, accessScript, []string{s.holdersKey(w.Owner), mk}, args(w.Holder, ttl))
	if err != nil {
		return false, fmt.Errorf("access: %w", err)
	}
	return n == int64(1), nil
}

// HoldersOf returns the owner's granted relations, by holder key.
func (s *Store) HoldersOf(ctx context.Context, owner string) ([]dispatcher.Access, error) {
	return s.relations(ctx, s.holdersKey(owner), holderOf(owner))
}

// HeldBy returns the holder's granted relations, by owner key.
func (s *Store) HeldBy(ctx context.Context, holder string) ([]dispatcher.Access, error) {
	return s.relations(ctx, s.accessOwnersKey(holder), func(other string) dispatcher.Access {
		return dispatcher.Access{Owner: other, Holder: holder}
	})
}

func (s *Store) relations(ctx context.Context, key string, base func(other string) dispatcher.Access) ([]dispatcher.Access, error) {
	cmds, err := s.do(ctx, func(p redis.Pipeliner) []redis.Cmder { return []redis.Cmder{p.HGetAll(ctx, key)} })
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	return decodeRelations(cmds[0].(*redis.MapStringStringCmd).Val(), base), nil
}

// decodeRelations reads a relations hash (the owner's holders or the
// holder's owners): the granted relations, in key order.
func decodeRelations(m map[string]string, base func(other string) dispatcher.Access) []dispatcher.Access {
	var out []dispatcher.Access
	for other, v := range m {
		parts := strings.Split(v, "|")
		if len(parts) != 5 || parts[0] != "1" {
			continue
		}
		a := base(other)
		a.Granted, a.Notify = true, parts[3] == "1"
		a.Since = msTime(parts[1])
		if x, _ := strconv.ParseInt(parts[2], 10, 64); x > 0 {
			a.Expires = time.UnixMilli(x)
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b dispatcher.Access) int {
		return strings.Compare(a.Owner+"|"+a.Holder, b.Owner+"|"+b.Holder)
	})
	return out
}

// holderOf is the base relation of an owner's holders hash.
func holderOf(owner string) func(string) dispatcher.Access {
	return func(holder string) dispatcher.Access { return dispatcher.Access{Owner: owner, Holder: holder} }
}
