package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
)

// A batch's arrivals without scripts. letterScript decides in Redis what
// the batch's look-up a moment before already knows: whether the letter
// has its metadata, whether it is read, whether a claimed delivery's
// field is free. LookupWriteAll reads the letters under WATCH and applies
// the writes planned from that read as one MULTI/EXEC of plain commands,
// decided by the read. EXEC applies them only if no letter read changed
// in between, so each write has the effects letterScript would give it
// then. When a letter did change (another run's claim, a read, an
// expiry), EXEC applies nothing and the same prepared writes go through
// the scripts (writePrepared), which decide on the letters as they are —
// as the path without a transaction always does. The plain commands cost
// Redis ≈ 6 µs a letter less than the script (README, runs 30–32).

// LookupWriteAll implements dispatcher.LookupWriter: one WATCH and
// look-up, plan, one MULTI/EXEC of plain commands. The writes go through
// the scripts instead (writePrepared) when a letter read changed
// meanwhile, when they are not the looked-up letters' one each (a letter
// not watched, or a second write decided on the first's state), and when
// the transaction failed on its way (a dropped connection: go-redis never
// moves a WATCH to another one): written again with the same call id, a
// claim the EXEC did apply is this call's own, not taken. A look-up that
// failed before plan ran, and a Redis Cluster (one transaction's keys
// would span slots), take the scripts' way from the start.
func (s *Store) LookupWriteAll(ctx context.Context, evs []dispatcher.EventRef, plan func([]dispatcher.LetterView) ([]dispatcher.LetterWrite, error)) ([]dispatcher.WriteResult, error) {
	if _, cluster := s.rdb.(*redis.ClusterClient); !cluster && len(evs) > 0 {
		tx := s.lookupWriteTx(ctx, evs, plan)
		switch {
		case tx.planned && tx.err == nil:
			return tx.res, nil
		case tx.planErr != nil:
			return nil, tx.planErr
		case errors.Is(tx.err, ErrFenced):
			return nil, tx.err
		case tx.planned && len(tx.ws) == 0:
			return nil, nil // nothing to write
		case errors.Is(tx.err, errNotPlain):
			return s.WriteAll(ctx, tx.ws)
		case tx.planned:
			if errors.Is(tx.err, redis.TxFailedErr) {
				s.nConflicts.Add(1)
			}
			return s.writePrepared(ctx, tx.pws)
		}
		// The look-up failed: plan has not run.
	}
	return dispatcher.LookupThenWriteAll(ctx, s, evs, plan)
}

// errNotPlain says a plan's writes cannot go in the transaction.
var errNotPlain = errors.New("writes the look-up did not read for")

// TxConflicts returns how many LookupWriteAll transactions a letter
// changed meanwhile aborted (their writes then went through the scripts).
func (s *Store) TxConflicts() int64 { return s.nConflicts.Load() }

// txOutcome is what lookupWriteTx did: planned says plan ran, ws are its
// writes and pws the prepared ones (when the transaction was built);
// planErr is plan's own error (or preparing its writes'). err, with
// planned, says the writes are not known to be applied
// (redis.TxFailedErr, errNotPlain: none is) unless it is ErrFenced.
type txOutcome struct {
	planned bool
	ws      []dispatcher.LetterWrite
	pws     []*preparedWrite
	res     []dispatcher.WriteResult
	planErr error
	err     error
}

// lookupWriteTx is LookupWriteAll's transaction.
func (s *Store) lookupWriteTx(ctx context.Context, evs []dispatcher.EventRef, plan func([]dispatcher.LetterView) ([]dispatcher.LetterWrite, error)) (o txOutcome) {
	if err := s.o.Fence.Wait(ctx); err != nil {
		o.err = fmt.Errorf("%w: %w (%w)", dispatcher.ErrTransient, ErrFenced, err)
		return o
	}
	tok := s.o.Fence.Token()
	keys := make([]string, len(evs))
	for i, ev := range evs {
		keys[i] = s.letterKey(ev.Citizen, ev.MessageID)
	}
	var counts []*redis.IntCmd
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		var lk *lookup
		if _, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
			lk = s.queueLookup(ctx, p, evs, false)
			return nil
		}); err != nil {
			return err
		}
		s.nBatches.Add(1)
		s.nOps.Add(int64(len(evs)))
		views, err := s.decodeLookup(evs, lk)
		if err != nil {
			return err
		}
		o.planned = true
		if o.ws, o.planErr = plan(views); o.planErr != nil {
			return o.planErr
		}
		if len(o.ws) == 0 {
			return nil
		}
		// What each letter held when read: unchanged until EXEC, or EXEC
		// applies nothing. A letter's second write would be decided on
		// the first's state, which the read does not know.
		cur := make(map[string]map[string]string, len(evs))
		for i, k := range keys {
			cur[k] = lk.letters[i].Val()
		}
		pws := make([]*preparedWrite, len(o.ws))
		for i, w := range o.ws {
			k := s.letterKey(w.Citizen, w.MessageID)
			m, ok := cur[k]
			if !ok || m == nil {
				return errNotPlain
			}
			if pws[i], err = s.prepareWrite(w); err != nil {
				o.planErr = fmt.Errorf("write letter: %w", err)
				return o.planErr
			}
			pws[i].cur, cur[k] = m, nil
		}
		o.pws = pws
		o.res, counts = make([]dispatcher.WriteResult, len(o.ws)), make([]*redis.IntCmd, len(o.ws))
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for i, pw := range pws {
				counts[i], o.res[i].Taken = s.buildPlainWrite(ctx, p, pw)
			}
			return nil
		})
		s.nBatches.Add(1)
		s.nOps.Add(int64(len(o.ws)))
		return err
	}, keys...)
	if s.o.Fence.Broken(tok) {
		o.err = fmt.Errorf("%w: %w", dispatcher.ErrTransient, ErrFenced)
		return o
	}
	if err != nil {
		o.err = fmt.Errorf("write letter: %w", classify(err))
		return o
	}
	// letterScript's trim, every 16th letter filed by the count after it:
	// apart from the transaction, best effort (the next 16th letter and
	// every read trim too).
	var trim []string
	for i, c := range counts {
		if c == nil {
			continue
		}
		o.res[i].Unread = int(c.Val())
		if o.res[i].Unread%16 == 1 {
			trim = append(trim, s.unreadKey(o.ws[i].Citizen))
		}
	}
	if len(trim) > 0 {
		oldest := "(" + strconv.FormatInt(s.oldestKept(), 10)
		_, _ = s.doN(ctx, len(trim), func(p redis.Pipeliner) []redis.Cmder {
			out := make([]redis.Cmder, len(trim))
			for i, k := range trim {
				out[i] = p.ZRemRangeByScore(ctx, k, "-inf", oldest)
			}
			return out
		})
	}
	return o
}

// buildPlainWrite queues a write's commands on p as plain commands,
// decided on what its letter held when read (pw.cur), with the effects
// buildWrite's scripts would have: the metadata only on a letter without
// it, claims only where the field is free (a field holding another
// value is taken, and none of the write's pairs for it is set), the
// unread filing and expiry by the read state, cleared in-flight marks
// only where the field holds one after the write. It returns the unread
// count's command (Arrive) and the deliveries taken.
func (s *Store) buildPlainWrite(ctx context.Context, p redis.Pipeliner, pw *preparedWrite) (count *redis.IntCmd, taken []string) {
	w, cur := pw.w, pw.cur
	letter, unread := s.letterKey(w.Citizen, w.MessageID), s.unreadKey(w.Citizen)
	skip := map[string]bool{}
	for i := 0; i < len(pw.claims); i += 2 {
		f, v := pw.claims[i].(string), pw.claims[i+1].(string)
		if old, ok := cur[f]; ok && old != v {
			skip[f] = true
			taken = append(taken, strings.TrimPrefix(f, "d:"))
		}
	}
	var fields []any
	if w.Arrive != nil {
		if _, stored := cur["sn"]; !stored {
			fields = append(fields, metaPairs(w.Arrive.Meta)...)
		}
	}
	after := map[string]string{}
	for _, pairs := range [][]any{pw.claims, pw.set} {
		for i := 0; i < len(pairs); i += 2 {
			f := pairs[i].(string)
			if skip[f] {
				continue
			}
			fields = append(fields, f, pairs[i+1])
			if v, ok := pairs[i+1].(string); ok {
				after[f] = v
			}
		}
	}
	if len(fields) > 0 {
		p.HSet(ctx, letter, fields...)
	}
	switch {
	case w.Arrive != nil:
		if cur["r"] == "1" {
			p.PExpire(ctx, letter, s.o.ReadTTL)
		} else {
			p.ZAdd(ctx, unread, redis.Z{Score: float64(w.Arrive.Meta.ReceivedAt.UnixMilli()), Member: w.MessageID})
			p.PExpire(ctx, letter, s.o.LetterTTL)
		}
		count = p.ZCount(ctx, unread, strconv.FormatInt(s.oldestKept(), 10), "+inf")
	case (len(pw.set) > 0 || len(pw.claims) > 0) && !w.Follows:
		p.Do(ctx, "PEXPIRE", letter, s.o.LetterTTL.Milliseconds(), "NX")
	}
	var clear []string
	for _, f := range pw.clear {
		f := f.(string)
		v, ok := after[f]
		if !ok {
			v = cur[f]
		}
		if strings.HasPrefix(v, inFlightTag) {
			clear = append(clear, f)
		}
	}
	if len(clear) > 0 {
		p.HDel(ctx, letter, clear...)
	}
	s.buildRest(ctx, p, pw, nil)
	return count, taken
}
