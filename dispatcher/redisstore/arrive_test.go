package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
	"github.com/digitalpost/postbud/dispatcher/storetest"
)

// txStore is the Redis store whose Write and WriteAll go through
// LookupWriteAll, each write planned on a look-up of its letter: the
// conformance suite's writes then take the transaction's plain commands
// (or its way back to the scripts), and must do what the scripts do.
type txStore struct{ *redisstore.Store }

func (s txStore) Write(ctx context.Context, w dispatcher.LetterWrite) (dispatcher.WriteResult, error) {
	res, err := s.WriteAll(ctx, []dispatcher.LetterWrite{w})
	if err != nil {
		return dispatcher.WriteResult{}, err
	}
	return res[0], nil
}

func (s txStore) WriteAll(ctx context.Context, ws []dispatcher.LetterWrite) ([]dispatcher.WriteResult, error) {
	refs := make([]dispatcher.EventRef, len(ws))
	for i, w := range ws {
		refs[i] = dispatcher.EventRef{Citizen: w.Citizen, MessageID: w.MessageID}
	}
	return s.LookupWriteAll(ctx, refs, plannedAs(ws...))
}

// plannedAs is a plan that writes ws whatever the look-up found.
func plannedAs(ws ...dispatcher.LetterWrite) func([]dispatcher.LetterView) ([]dispatcher.LetterWrite, error) {
	return func([]dispatcher.LetterView) ([]dispatcher.LetterWrite, error) { return ws, nil }
}

// TestConformanceThroughLookupWriteAll runs the conformance suite with
// every letter write made by LookupWriteAll: claims and Taken, a read
// before the arrival, metadata kept, cleared in-flight marks, counts.
func TestConformanceThroughLookupWriteAll(t *testing.T) {
	storetest.Run(t, func(t *testing.T) dispatcher.Store {
		env := redistest.New(t)
		s := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix, Sealer: seal.Ephemeral()})
		t.Cleanup(func() { s.Close() })
		return txStore{s}
	})
}

// lookupWriteOne looks one letter up and writes w planned on it, with
// during (if any) run between the look-up and the write: a concurrent
// writer.
func lookupWriteOne(t *testing.T, s *redisstore.Store, w dispatcher.LetterWrite, during func()) (dispatcher.WriteResult, dispatcher.LetterView) {
	t.Helper()
	var view dispatcher.LetterView
	res, err := s.LookupWriteAll(t.Context(), []dispatcher.EventRef{{Citizen: w.Citizen, MessageID: w.MessageID, ID: "ev-tx"}},
		func(vs []dispatcher.LetterView) ([]dispatcher.LetterWrite, error) {
			view = vs[0]
			if during != nil {
				during()
			}
			return []dispatcher.LetterWrite{w}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return res[0], view
}

func arrival(citizen, msg string, at time.Time, inFlight ...string) dispatcher.LetterWrite {
	return dispatcher.LetterWrite{Citizen: citizen, MessageID: msg, Run: "ev-tx", InFlight: inFlight,
		Arrive: &dispatcher.Arrival{Meta: &dispatcher.Letter{MessageID: msg, SenderID: "skat", SenderName: "Skattestyrelsen",
			SenderKind: event.SenderPublic, Priority: event.Bulk, ReceivedAt: at}}}
}

// A run that claims a delivery between the batch's look-up and its
// write keeps it: the batch's write finds the letter changed, and its
// claim comes back taken instead of overwriting the other run's.
func TestLookupWriteAllLeavesAClaimMadeMeanwhile(t *testing.T) {
	env := redistest.New(t)
	s := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix, Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	at := time.Now().Truncate(time.Millisecond)
	other := arrival("c-1", "m-1", at, "d-email")
	other.Run = "ev-other"
	res, view := lookupWriteOne(t, s, arrival("c-1", "m-1", at, "d-email", "d-sms"), func() {
		if _, err := s.Write(t.Context(), other); err != nil {
			t.Fatal(err)
		}
	})
	if view.Stored {
		t.Fatal("the look-up saw the other run's arrival: it was to come after it")
	}
	if !slices.Equal(res.Taken, []string{"d-email"}) {
		t.Errorf("Taken = %v, want [d-email]: the other run claimed it after the look-up", res.Taken)
	}
	l, err := s.Load(t.Context(), "c-1", "m-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Letter.ClaimedBy; got["d-email"] != "ev-other" || got["d-sms"] != "ev-tx" {
		t.Errorf("claims = %v, want d-email the other run's, d-sms this one's", got)
	}
	if res.Unread != 1 || s.TxConflicts() != 1 {
		t.Errorf("unread %d, conflicts %d; want 1 and 1", res.Unread, s.TxConflicts())
	}
}

// A letter read on a platform between the look-up and the arrival is not
// filed unread: the arrival finds it read, as the script would.
func TestLookupWriteAllHonoursAReadMadeMeanwhile(t *testing.T) {
	env := redistest.New(t)
	s := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix, Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	at := time.Now().Truncate(time.Millisecond)
	res, _ := lookupWriteOne(t, s, arrival("c-1", "m-1", at, "d-email"), func() {
		if _, err := s.ApplyState(t.Context(), dispatcher.StateWrite{Citizen: "c-1", MessageID: "m-1", Read: true,
			At: at, Platform: event.EBoks}); err != nil {
			t.Fatal(err)
		}
	})
	unread, err := s.UnreadSince(t.Context(), "c-1", at.Add(-time.Hour), at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if res.Unread != 0 || len(unread) != 0 {
		t.Errorf("unread count %d, unread letters %v; want none: the letter was read before it arrived", res.Unread, unread)
	}
}

// Letters nobody touches meanwhile are written without a script call:
// the transaction's plain commands. Checked on a Redis of the test's own,
// whose command counts no other test moves.
func TestLookupWriteAllCallsNoScript(t *testing.T) {
	srv := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { c.Close() })
	s := redisstore.New(c, redisstore.Options{Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	at := time.Now().Truncate(time.Millisecond)
	var refs []dispatcher.EventRef
	var ws []dispatcher.LetterWrite
	for i := range 40 {
		citizen, msg := "c-"+strconv.Itoa(i), "m-"+strconv.Itoa(i)
		refs = append(refs, dispatcher.EventRef{Citizen: citizen, MessageID: msg, ID: "ev-" + strconv.Itoa(i)})
		ws = append(ws, arrival(citizen, msg, at, "d-email-"+strconv.Itoa(i)))
	}
	before := scriptCalls(t, c)
	res, err := s.LookupWriteAll(t.Context(), refs, plannedAs(ws...))
	if err != nil {
		t.Fatal(err)
	}
	if n := scriptCalls(t, c) - before; n != 0 {
		t.Errorf("%d script calls for 40 arrivals nobody touched; want none", n)
	}
	for i, r := range res {
		if r.Unread != 1 || len(r.Taken) != 0 {
			t.Errorf("letter %d: %+v, want unread 1, nothing taken", i, r)
		}
	}
	if s.TxConflicts() != 0 {
		t.Errorf("%d conflicts, want none", s.TxConflicts())
	}
}

// scriptCalls is how many EVAL and EVALSHA calls Redis has run.
func scriptCalls(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.SplitSeq(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_eval"); ok {
			_, calls, _ := strings.Cut(rest, "calls=")
			calls, _, _ = strings.Cut(calls, ",")
			k, _ := strconv.Atoi(calls)
			n += k
		}
	}
	return n
}

// loseExecReply is a hook that lets a transaction's EXEC run and then
// reports its reply lost, as a connection that drops after Redis ran it.
type loseExecReply struct{ on *atomic.Bool }

func (h loseExecReply) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h loseExecReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h loseExecReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if len(cmds) > 0 && cmds[len(cmds)-1].Name() == "exec" && h.on.CompareAndSwap(true, false) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
}

// A transaction whose EXEC ran but whose reply was lost is written again
// through the scripts as the same call: its own claims are not taken
// (the alerts would otherwise be left to a run that does not exist).
func TestLookupWriteAllAfterALostExecReply(t *testing.T) {
	env := redistest.New(t)
	s := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix, Sealer: seal.Ephemeral()})
	t.Cleanup(func() { s.Close() })
	var on atomic.Bool
	on.Store(true)
	env.Client.AddHook(loseExecReply{on: &on})
	at := time.Now().Truncate(time.Millisecond)
	res, _ := lookupWriteOne(t, s, arrival("c-1", "m-1", at, "d-email", "d-sms"), nil)
	if on.Load() {
		t.Fatal("no EXEC ran: the test measured nothing")
	}
	if len(res.Taken) != 0 || res.Unread != 1 {
		t.Errorf("after the lost reply: taken %v, unread %d; want nothing taken, unread 1", res.Taken, res.Unread)
	}
	l, err := s.Load(t.Context(), "c-1", "m-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Letter.ClaimedBy; got["d-email"] != "ev-tx" || got["d-sms"] != "ev-tx" {
		t.Errorf("claims = %v, want both this run's", got)
	}
}

// TestLookupWriteAllAsWriteAll: writes the dispatcher does not make today
// but the store accepts — a delivery claimed and answered in one write, a
// done mark for a delivery another run claimed — end the same through the
// transaction as through WriteAll's scripts.
func TestLookupWriteAllAsWriteAll(t *testing.T) {
	env := redistest.New(t)
	at := time.Now().Truncate(time.Millisecond)
	retry := dispatcher.Outcome{At: at, DeliveryID: "d-a", Channel: "email", Result: dispatcher.ResultRetrying, Attempt: 1}
	sent := dispatcher.Outcome{At: at, DeliveryID: "d-a", Channel: "email", Result: dispatcher.ResultSent, Attempt: 1}
	withTrail := arrival("c-1", "m-1", at, "d-a", "d-b")
	withTrail.Trail = []dispatcher.Outcome{retry}
	withDone := arrival("c-2", "m-2", at, "d-a", "d-b")
	withDone.Done = []dispatcher.Outcome{sent}
	other := arrival("c-2", "m-2", at, "d-a")
	other.Run = "ev-other"
	var hashes [2]map[string]string
	var results [2][]dispatcher.WriteResult
	for i, viaTx := range []bool{false, true} {
		s := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix + strconv.Itoa(i), Sealer: seal.Ephemeral()})
		t.Cleanup(func() { s.Close() })
		if _, err := s.Write(t.Context(), other); err != nil {
			t.Fatal(err)
		}
		ws := []dispatcher.LetterWrite{withTrail, withDone}
		var err error
		if viaTx {
			results[i], err = txStore{s}.WriteAll(t.Context(), ws)
		} else {
			results[i], err = s.WriteAll(t.Context(), ws)
		}
		if err != nil {
			t.Fatal(err)
		}
		hashes[i] = map[string]string{}
		for _, m := range []string{"{c-1}:m:m-1", "{c-2}:m:m-2"} {
			h, err := env.Client.HGetAll(t.Context(), env.Prefix+strconv.Itoa(i)+":"+m).Result()
			if err != nil {
				t.Fatal(err)
			}
			for f, v := range h {
				hashes[i][m+" "+f] = claimTime.ReplaceAllString(v, "f…#")
			}
		}
	}
	if fmt.Sprint(hashes[0]) != fmt.Sprint(hashes[1]) {
		t.Errorf("letters after WriteAll:\n%v\nafter LookupWriteAll:\n%v", hashes[0], hashes[1])
	}
	if fmt.Sprint(results[0]) != fmt.Sprint(results[1]) {
		t.Errorf("results of WriteAll %v, of LookupWriteAll %v", results[0], results[1])
	}
}

// claimTime matches an in-flight mark's time and call id, which differ
// between two calls.
var claimTime = regexp.MustCompile(`f\d+#[^~/]*`)
