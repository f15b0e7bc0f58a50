package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Re-sealing (`postbud reseal`): every contact value of every citizen hash
// sealed again under the current key, and values from before sealing
// sealed for the first time. It walks the citizen hashes with SCAN; the
// cursor is kept in P:reseal (with the id of the key it reseals to), so an
// interrupted run goes on where it stopped. Each step is idempotent as
// well: a value under the current key is left alone, and a value is only
// replaced if it is still the one read (resealScript), so a contact event
// that lands meanwhile is never overwritten.
//
// SCAN walks one server: the keyspace of a single primary (postbud's
// deployments, with or without Sentinel), not a Redis Cluster's.

// ResealProgress counts what a re-seal did so far.
type ResealProgress struct {
	// Cursor is the SCAN cursor to go on from (0 when done).
	Cursor uint64
	// Citizens is the citizen hashes looked at.
	Citizens int64
	// Resealed is the values sealed again (or sealed for the first time).
	Resealed int64
	// Failed is the values that do not open (tampered with, or sealed
	// under a key that is not configured): left as they are.
	Failed int64
	// Done says the whole keyspace was walked.
	Done bool
}

func (s *Store) resealKey() string { return s.o.Prefix + ":reseal" }

// ResealState returns the saved cursor of an interrupted re-seal to the
// current key (0 when none).
func (s *Store) ResealState(ctx context.Context) (uint64, error) {
	v, err := s.rdb.HGet(ctx, s.resealKey(), s.o.Sealer.KeyID()).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(v, 10, 64)
}

// Reseal re-seals the citizen hashes of one SCAN step from cursor (count
// is SCAN's COUNT hint) and saves the cursor it reached; at the end of the
// keyspace it forgets the cursor and reports Done.
func (s *Store) Reseal(ctx context.Context, cursor uint64, count int64) (ResealProgress, error) {
	keys, next, err := s.rdb.ScanType(ctx, cursor, globEscape(s.o.Prefix)+":{*}:c", count, "hash").Result()
	if err != nil {
		return ResealProgress{}, fmt.Errorf("reseal: scan: %w", err)
	}
	p := ResealProgress{Cursor: next, Done: next == 0}
	if len(keys) > 0 {
		reads := make([]*redis.MapStringStringCmd, len(keys))
		if _, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for i, k := range keys {
				reads[i] = pl.HGetAll(ctx, k)
			}
			return nil
		}); err != nil {
			return ResealProgress{}, fmt.Errorf("reseal: read: %w", err)
		}
		// Loaded first, so the pipeline's EVALSHAs find it (a Redis that
		// loses it meanwhile fails the step, which a re-run repeats).
		if err := resealScript.Load(ctx, s.rdb).Err(); err != nil {
			return ResealProgress{}, fmt.Errorf("reseal: load script: %w", err)
		}
		var writes []*redis.Cmd
		if _, err := s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for i, k := range keys {
				citizen, ok := citizenOfKey(k)
				if !ok {
					continue
				}
				p.Citizens++
				args, failed := s.resealArgs(citizen, reads[i].Val())
				p.Failed += failed
				if len(args) > 0 {
					writes = append(writes, resealScript.EvalSha(ctx, pl, []string{k}, args...))
				}
			}
			return nil
		}); err != nil {
			return ResealProgress{}, fmt.Errorf("reseal: write: %w", err)
		}
		for _, w := range writes {
			n, _ := w.Val().(int64)
			p.Resealed += n
		}
	}
	if p.Done {
		err = s.rdb.HDel(ctx, s.resealKey(), s.o.Sealer.KeyID()).Err()
	} else {
		err = s.rdb.HSet(ctx, s.resealKey(), s.o.Sealer.KeyID(), strconv.FormatUint(next, 10)).Err()
	}
	if err != nil {
		return ResealProgress{}, fmt.Errorf("reseal: save the cursor: %w", err)
	}
	return p, nil
}

// resealArgs returns resealScript's arguments for one citizen hash, and
// the number of values that do not open.
func (s *Store) resealArgs(citizen string, m map[string]string) ([]any, int64) {
	var args []any
	var failed int64
	sl := s.o.Sealer
	for _, f := range sealedFields {
		v, ok := m[f]
		if !ok || v == "" || sl.Current(v) {
			continue
		}
		plain, err := s.openField(citizen, f, v)
		if err != nil {
			failed++
			continue
		}
		args = append(args, f, v, f, sl.Seal(citizen, f, plain))
	}
	for f, v := range m {
		if !strings.HasPrefix(f, devicePrefix) {
			continue
		}
		d, ok, err := s.decodeDevice(citizen, f, v)
		if err != nil {
			failed++
			continue
		}
		if !ok {
			continue
		}
		nf := s.deviceField(d.Provider, d.Token)
		if nf == f && sl.Current(sealedToken(v)) {
			continue
		}
		args = append(args, f, v, nf, s.encodeDevice(citizen, nf, d))
	}
	return args, failed
}

// citizenOfKey returns the citizen key of a citizen hash's key.
func citizenOfKey(k string) (string, bool) {
	i, j := strings.IndexByte(k, '{'), strings.LastIndexByte(k, '}')
	if i < 0 || j < i {
		return "", false
	}
	return k[i+1 : j], true
}

// globEscape escapes the glob characters of a SCAN MATCH pattern.
func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(s)
}

// resealScript replaces contact values of a citizen hash that are still
// the ones the caller read.
//
// KEYS[1] citizen hash
// ARGV quadruples: field, the value read, the field to write (another for
// a device field from before sealing, which is deleted), the new value.
// (A device field from before sealing and its tagged field never exist
// together: SetDevice deletes the one as it writes the other.)
// Returns the number of values replaced.
var resealScript = redis.NewScript(`
local n = 0
for i = 1, #ARGV, 4 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i+1] then
    if ARGV[i+2] ~= ARGV[i] then redis.call('HDEL', KEYS[1], ARGV[i]) end
    redis.call('HSET', KEYS[1], ARGV[i+2], ARGV[i+3])
    n = n + 1
  end
end
return n
`)
