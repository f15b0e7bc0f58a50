// Package redisstore keeps postbud's own state in Redis: the citizen
// registry, letters with their read state and delivery trail, and the
// idempotency marks of processed events.
//
// Key layout (P is the configured prefix, C a citizen key):
//
//	P:{C}:c          hash   the citizen: email, mobile, lang, addr, cat
//	                        (time of the last contact event, unix ms),
//	                        dev:<provider>:<token tag> =
//	                        app|env|registered ms|<sealed token>; contact
//	                        data sealed (seal.go);
//	                        cs:<platform> = 1|<ms> (consent granted) or
//	                        0|<ms> (revoked), the consent event's time;
//	                        eh, mh (fingerprints of the email and mobile),
//	                        ec, mc = "1" while that address is confirmed
//	P:{C}:cc:<ch>    hash   the pending confirmation code of the email or
//	                        sms address: m (its MAC, never the code), f
//	                        (the address's fingerprint), x (expiry, unix
//	                        ms), n (attempts), t (issuer); kept an hour
//	                        past expiry to answer "expired"
//	P:{C}:cr:<ch>:<fp> zset the code requests for one address (issuer →
//	                        unix ms) in the last hour
//	P:{C}:m:<msg>    hash   a letter: sid, sn, sk, pr, nt, at, lg, read
//	                        state, d:<delivery id> = final result, or
//	                        "f" + unix ms while its provider call is in
//	                        flight (a run's claim adds "#" + its call's
//	                        id and "~" + its event's id; the result
//	                        overwrites it), e:<event
//	                        id> = processed mark of its events, r:<delivery
//	                        id> = the last report applied (reportScript)
//	P:{C}:q:<msg>:<event> string a letter event queued in a group's task
//	                        (Queue; its TTL, dispatcher.QueuedTTL)
//	P:{C}:t:<msg>    list   the letter's delivery trail (JSON entries,
//	                        each appended by a write with an id of its
//	                        own: trailEntry)
//	P:{C}:u          zset   the citizen's unread letters by received time
//	                        (no TTL: counted with ZCOUNT over the retention
//	                        window, trimmed by the arrival that brings the
//	                        count to 1, 17, 33 … and on reads; an empty zset
//	                        is gone)
//	P:{C}:e:<event>  string the processed mark of a registry event
//	P:{C}:ans:<id>   string a script's answer to one call, for the call
//	                        run again (answerKey); an hour
//	P:{O}:ah         hash   the access holders of owner O: holder key →
//	                        relation (access.go)
//	P:{H}:ao         hash   the owners whose mailbox H holds: owner key →
//	                        relation
//	P:msg:<msg>      string message id → citizen key, for ops look-ups
//	P:reseal         hash   key id → SCAN cursor of an interrupted re-seal
//	                        (reseal.go)
//
// No key or value holds a CPR number: citizens are known by the
// pseudonymous key only. Letters, trails and marks expire.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// Options tune a Store. Zero values take the defaults.
type Options struct {
	// Prefix starts every key (default "pb").
	Prefix string
	// LetterTTL bounds how long a letter, its read state and trail are
	// kept (default 200 days: longer than the 6-month paper forwarding).
	LetterTTL time.Duration
	// EventTTL bounds how long an event id is remembered (default 7 days).
	EventTTL time.Duration
	// TrailCap is the most trail entries kept per letter (default 100).
	TrailCap int
	// ReadTTL is how long a read letter is kept (default 30 days); only
	// unread letters need LetterTTL.
	ReadTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Sealer seals the citizens' contact data (required; seal.go).
	Sealer *seal.Sealer
	// Fence, if set, holds store calls while a Sentinel failover is under
	// way (see Fence).
	Fence *Fence
}

// Store is the Redis implementation of dispatcher.Store. Close it to stop
// its batchers.
type Store struct {
	rdb redis.UniversalClient
	o   Options

	ops       chan *op
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	nOps      atomic.Int64
	nBatches  atomic.Int64
	// nConflicts counts LookupWriteAll transactions a changed letter
	// aborted.
	nConflicts atomic.Int64
	busy       bool // the batcher's last batch had more than one call
	linger     time.Duration

	callBase string        // random, the start of this store's call ids
	callSeq  atomic.Uint64 // the end of the next one
}

var allScripts = []*redis.Script{claimScript, ackScript, contactScript, deviceScript, removeScript, reportScript, letterScript, unlockScript, stateScript, exemptionScript, clearScript, reserveCodeScript, issueCodeScript, checkCodeScript, consentScript, accessScript, holdScript}

var _ dispatcher.Store = (*Store)(nil)

// New returns a Store on rdb. Options.Sealer is required: a Store never
// writes contact data in clear.
func New(rdb redis.UniversalClient, o Options) *Store {
	if o.Sealer == nil {
		panic("redisstore: Options.Sealer is required") // a programming error
	}
	if o.Prefix == "" {
		o.Prefix = "pb"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LetterTTL == 0 {
		o.LetterTTL = 200 * 24 * time.Hour
	}
	if o.EventTTL == 0 {
		o.EventTTL = 7 * 24 * time.Hour
	}
	if o.TrailCap == 0 {
		o.TrailCap = 100
	}
	if o.ReadTTL == 0 || o.ReadTTL > o.LetterTTL {
		o.ReadTTL = min(30*24*time.Hour, o.LetterTTL)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	s := &Store{rdb: rdb, o: o, linger: DefaultLinger, callBase: base64.RawURLEncoding.EncodeToString(b[:])}
	s.startBatchers()
	return s
}

// Client returns the Redis client.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

func (s *Store) citizenKey(c string) string   { return s.o.Prefix + ":{" + c + "}:c" }
func (s *Store) letterKey(c, m string) string { return s.o.Prefix + ":{" + c + "}:m:" + m }
func (s *Store) trailKey(c, m string) string  { return s.o.Prefix + ":{" + c + "}:t:" + m }
func (s *Store) eventKey(c, e string) string  { return s.o.Prefix + ":{" + c + "}:e:" + e }
func (s *Store) queuedKey(c, m, e string) string {
	return s.o.Prefix + ":{" + c + "}:q:" + m + ":" + e
}
func (s *Store) indexKey(m string) string    { return s.o.Prefix + ":msg:" + m }
func (s *Store) deliveryKey(d string) string { return s.o.Prefix + ":dl:" + d }
func (s *Store) unreadKey(c string) string   { return s.o.Prefix + ":{" + c + "}:u" }
func (s *Store) syncLockKey(c, m, p string) string {
	return s.o.Prefix + ":{" + c + "}:sl:" + p + ":" + m
}
func (s *Store) disabledKey(p string) string { return s.o.Prefix + ":whoff:" + p }

// oldestKept is the received time (unix ms) before which letters have left
// retention and drop out of the unread index.
func (s *Store) oldestKept() int64 { return s.o.Now().Add(-s.o.LetterTTL).UnixMilli() }

// deliveryRefTTL bounds how long a tracked delivery can be matched to its
// provider's reports.
const deliveryRefTTL = 14 * 24 * time.Hour

// Ping checks Redis answers.
func (s *Store) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// Seen reports whether the event was processed. A letter's events are
// marked in the letter's hash (e:<id>); other events have a mark key of
// their own.
func (s *Store) Seen(ctx context.Context, ev dispatcher.EventRef) (bool, error) {
	seen, err := s.seenAll(ctx, []dispatcher.EventRef{ev}, false)
	if err != nil {
		return false, err
	}
	return seen[0], nil
}

// SeenAll is Seen for many events, in one pipeline, a letter event also
// seen while Queue's mark of it lasts (one EXISTS more a letter).
func (s *Store) SeenAll(ctx context.Context, evs []dispatcher.EventRef) ([]bool, error) {
	return s.seenAll(ctx, evs, true)
}

func (s *Store) seenAll(ctx context.Context, evs []dispatcher.EventRef, queued bool) ([]bool, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	var marks []*redis.IntCmd
	if queued {
		marks = make([]*redis.IntCmd, len(evs))
	}
	cmds, err := s.doN(ctx, len(evs), func(p redis.Pipeliner) []redis.Cmder {
		out := make([]redis.Cmder, len(evs), 2*len(evs))
		for i, ev := range evs {
			switch {
			case ev.MessageID != "":
				out[i] = p.HExists(ctx, s.letterKey(ev.Citizen, ev.MessageID), "e:"+ev.ID)
				if queued {
					marks[i] = p.Exists(ctx, s.queuedKey(ev.Citizen, ev.MessageID, ev.ID))
					out = append(out, marks[i])
				}
			default:
				out[i] = p.Exists(ctx, s.eventKey(ev.Citizen, ev.ID))
			}
		}
		return out
	})
	if err != nil {
		return nil, fmt.Errorf("event mark: %w", err)
	}
	seen := make([]bool, len(evs))
	for i, c := range cmds[:len(evs)] { // the queued marks follow
		switch c := c.(type) {
		case *redis.BoolCmd:
			seen[i] = c.Val()
		case *redis.IntCmd:
			seen[i] = c.Val() == 1
		}
		if i < len(marks) && marks[i] != nil && marks[i].Val() == 1 {
			seen[i] = true
		}
	}
	return seen, nil
}

// Queue marks letter events queued in a shared task: a key of its own in
// the citizen's slot (not a field of the letter, which would last as
// long as the letter), expiring after ttl.
func (s *Store) Queue(ctx context.Context, evs []dispatcher.EventRef, ttl time.Duration) error {
	n := 0
	for _, ev := range evs {
		if ev.MessageID != "" {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	_, err := s.doN(ctx, n, func(p redis.Pipeliner) []redis.Cmder {
		out := make([]redis.Cmder, 0, n)
		for _, ev := range evs {
			if ev.MessageID != "" {
				out = append(out, p.Set(ctx, s.queuedKey(ev.Citizen, ev.MessageID, ev.ID), "1", ttl))
			}
		}
		return out
	})
	if err != nil {
		return fmt.Errorf("queued mark: %w", err)
	}
	return nil
}

// Mark marks an event processed: a field of the letter's hash (which
// keeps its expiry; NX only covers a hash that had none), or a key of its
// own for a citizen-level event.
func (s *Store) Mark(ctx context.Context, ev dispatcher.EventRef) error {
	_, err := s.do(ctx, func(p redis.Pipeliner) []redis.Cmder {
		if ev.MessageID != "" {
			k := s.letterKey(ev.Citizen, ev.MessageID)
			return []redis.Cmder{p.HSet(ctx, k, "e:"+ev.ID, "1"), p.Do(ctx, "PEXPIRE", k, s.o.LetterTTL.Milliseconds(), "NX")}
		}
		return []redis.Cmder{p.Set(ctx, s.eventKey(ev.Citizen, ev.ID), "1", s.o.EventTTL)}
	})
	if err != nil {
		return fmt.Errorf("mark event: %w", err)
	}
	return nil
}

// script queues a script call (EVALSHA; do loads it if Redis lost it).
func script(ctx context.Context, p redis.Pipeliner, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	return sc.EvalSha(ctx, p, keys, args...)
}

// runScript runs one script call through the batcher.
func (s *Store) runScript(ctx context.Context, sc *redis.Script, keys []string, args []any) (any, error) {
	cmds, err := s.do(ctx, func(p redis.Pipeliner) []redis.Cmder {
		return []redis.Cmder{script(ctx, p, sc, keys, args...)}
	})
	if err != nil {
		return nil, err
	}
	return cmds[0].(*redis.Cmd).Val(), nil
}

// Lookup returns the citizen and a letter, unless the event was processed
// (its mark is a field of the letter's hash). Plain reads in one batched
// round trip; the unread count is not read (the arrival script returns
// it).
func (s *Store) Lookup(ctx context.Context, ev dispatcher.EventRef) (dispatcher.LetterView, error) {
	vs, err := s.lookupAll(ctx, []dispatcher.EventRef{ev}, false)
	if err != nil {
		return dispatcher.LetterView{}, err
	}
	return vs[0], nil
}

// LookupAll is Lookup for many letters in one pipeline: each citizen's
// hash and access holders once (all in the citizen's slot), each letter's
// hash.
func (s *Store) LookupAll(ctx context.Context, evs []dispatcher.EventRef) ([]dispatcher.LetterView, error) {
	return s.lookupAll(ctx, evs, false)
}

// lookupAll is LookupAll, with each citizen's unread count if count.
func (s *Store) lookupAll(ctx context.Context, evs []dispatcher.EventRef, count bool) ([]dispatcher.LetterView, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	var lk *lookup
	_, err := s.doN(ctx, len(evs), func(p redis.Pipeliner) []redis.Cmder {
		lk = s.queueLookup(ctx, p, evs, count)
		return lk.cmds
	})
	if err != nil {
		return nil, fmt.Errorf("look up letter: %w", err)
	}
	return s.decodeLookup(evs, lk)
}

// lookup is a look-up's commands: each citizen's hash, holders and
// (with count) unread count once, each letter's hash.
type lookup struct {
	cits    map[string]*citizenCmds
	letters []*redis.MapStringStringCmd
	cmds    []redis.Cmder
}

type citizenCmds struct {
	hash, holders *redis.MapStringStringCmd
	count         *redis.IntCmd
}

// queueLookup queues the reads of evs' citizens and letters on p.
func (s *Store) queueLookup(ctx context.Context, p redis.Pipeliner, evs []dispatcher.EventRef, count bool) *lookup {
	lk := &lookup{cits: make(map[string]*citizenCmds, len(evs)), letters: make([]*redis.MapStringStringCmd, len(evs)),
		cmds: make([]redis.Cmder, 0, 3*len(evs))}
	for i, ev := range evs {
		if _, ok := lk.cits[ev.Citizen]; !ok {
			c := &citizenCmds{hash: p.HGetAll(ctx, s.citizenKey(ev.Citizen))}
			lk.cmds = append(lk.cmds, c.hash)
			if count {
				c.count = p.ZCount(ctx, s.unreadKey(ev.Citizen), strconv.FormatInt(s.oldestKept(), 10), "+inf")
				lk.cmds = append(lk.cmds, c.count)
			}
			c.holders = p.HGetAll(ctx, s.holdersKey(ev.Citizen))
			lk.cits[ev.Citizen] = c
			lk.cmds = append(lk.cmds, c.holders)
		}
		lk.letters[i] = p.HGetAll(ctx, s.letterKey(ev.Citizen, ev.MessageID))
		lk.cmds = append(lk.cmds, lk.letters[i])
	}
	return lk
}

// decodeLookup makes the views of a look-up's replies.
func (s *Store) decodeLookup(evs []dispatcher.EventRef, lk *lookup) ([]dispatcher.LetterView, error) {
	views := make([]dispatcher.LetterView, len(evs))
	for i, ev := range evs {
		lm := lk.letters[i].Val()
		if _, seen := lm["e:"+ev.ID]; seen && ev.ID != "" {
			views[i] = dispatcher.LetterView{Seen: true}
			continue
		}
		cc := lk.cits[ev.Citizen]
		c, err := s.decodeCitizen(ev.Citizen, cc.hash.Val())
		if err != nil {
			return nil, fmt.Errorf("look up letter: %w", err)
		}
		if cc.count != nil {
			c.Unread = int(cc.count.Val())
		}
		views[i] = dispatcher.LetterView{Citizen: c, Letter: decodeLetter(ev.MessageID, lm), Stored: lm["sn"] != "",
			Holders: decodeRelations(cc.holders.Val(), holderOf(ev.Citizen))}
	}
	return views, nil
}

// Load returns a citizen, with the unread count, and one letter.
func (s *Store) Load(ctx context.Context, citizen, messageID string) (dispatcher.LetterView, error) {
	vs, err := s.lookupAll(ctx, []dispatcher.EventRef{{Citizen: citizen, MessageID: messageID}}, true)
	if err != nil {
		return dispatcher.LetterView{}, err
	}
	return vs[0], nil
}

// decodeCitizen reads a citizen hash, opening its sealed fields (seal.go).
// A sealed value that does not open is an error naming the field only.
func (s *Store) decodeCitizen(key string, m map[string]string) (*dispatcher.Citizen, error) {
	c := &dispatcher.Citizen{Key: key, Language: m["lang"]}
	for _, f := range [...]struct {
		name string
		to   *string
	}{{"email", &c.Email}, {"mobile", &c.Mobile}, {"addr", &c.Address}, {"fwd", &c.Forward}} {
		v, err := s.openField(key, f.name, m[f.name])
		if err != nil {
			return nil, err
		}
		*f.to = v
	}
	x := decodeExemption(m["x"], m["xs"], m["xt"])
	c.Exempt, c.ExemptSince = x.Exempt, x.Since
	c.EmailConfirmed, c.MobileConfirmed = m[fieldEmailOK] == "1", m[fieldMobileOK] == "1"
	for f, v := range m {
		if p, ok := strings.CutPrefix(f, "cs:"); ok {
			if granted, ms, ok := strings.Cut(v, "|"); ok && granted == "1" {
				if c.Consents == nil {
					c.Consents = map[event.Platform]time.Time{}
				}
				c.Consents[event.Platform(p)] = msTime(ms)
			}
			continue
		}
		if ch, ok := strings.CutPrefix(f, "co:"); ok {
			if c.Windows == nil {
				c.Windows = map[channels.Name]time.Time{}
			}
			c.Windows[channels.Name(ch)] = msTime(v)
			continue
		}
		d, ok, err := s.decodeDevice(key, f, v)
		if err != nil {
			return nil, err
		}
		if ok {
			c.Devices = append(c.Devices, d)
		}
	}
	// Map order is random; keep deliveries in a stable order.
	sortDevices(c.Devices)
	return c, nil
}

func decodeLetter(id string, m map[string]string) *dispatcher.Letter {
	l := &dispatcher.Letter{MessageID: id, SenderID: m["sid"], SenderName: m["sn"],
		SenderKind: event.SenderKind(m["sk"]), Priority: event.Priority(m["pr"]),
		Notification: m["nt"], Legal: m["lg"] == "1", Read: m["r"] == "1", ChangeBy: event.Platform(m["cb"])}
	l.ReceivedAt = msTime(m["at"])
	l.NotBefore = msTime(m["nb"])
	l.ReplyBy = msTime(m["rb"])
	l.ChangeAt = msTime(m["ca"])
	l.Version, _ = strconv.ParseInt(m["v"], 10, 64)
	for f, v := range m {
		did, ok := strings.CutPrefix(f, "d:")
		if !ok {
			continue
		}
		if since, ok := strings.CutPrefix(v, inFlightTag); ok {
			if l.InFlight == nil {
				l.InFlight = make(map[string]time.Time)
			}
			since, provider, handed := strings.Cut(since, handedSep)
			since, claim, _ := strings.Cut(since, claimSep)
			l.InFlight[did] = msTime(since)
			if _, run, ok := strings.Cut(claim, runSep); ok && run != "" {
				if l.ClaimedBy == nil {
					l.ClaimedBy = make(map[string]string)
				}
				l.ClaimedBy[did] = run
			}
			if handed {
				if l.Handed == nil {
					l.Handed = make(map[string]string)
				}
				l.Handed[did] = provider
			}
			continue
		}
		if l.Done == nil {
			l.Done = make(map[string]bool)
		}
		l.Done[did] = true
	}
	return l
}

// inFlightTag starts a delivery field's value while its provider call is
// in flight: "f" + the unix ms it started. A done mark's value (see
// encodeOutcome) starts with its version digit, so it never looks in
// flight, and a delivery is in flight or done, never both. One field per
// delivery keeps a tracked letter's hash as small as its final state, and
// lets the outcome simply overwrite the mark: no HDEL on the hot path.
const inFlightTag = "f"

// claimSep follows the time of an in-flight mark an arrival claimed with
// the id of the call that claimed it (letterScript).
const claimSep = "#"

// runSep follows a claim's call id with the id of the event whose run
// claimed it (LetterWrite.Run): "f1763863750352#<call id>~<event id>".
const runSep = "~"

// handedSep follows the time of an in-flight mark with the provider the
// delivery was handed to (LetterWrite.Handed): "f1763863750352/sms-2".
const handedSep = "/"

func msTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	ms, _ := strconv.ParseInt(s, 10, 64)
	return time.UnixMilli(ms)
}

func b2s(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Write applies a LetterWrite in one batched round trip. The letter hash's
// fields of the write (done marks, in-flight marks, the event mark) go in
// one HSET; with Arrive, in one script (letterScript) that also stores the
// metadata if new, files the letter in the unread index unless it is read
// and returns the unread count. Trail entries, delivery refs, windows and
// the message index are plain commands in the same pipeline. A final
// outcome is the delivery's done mark and its trail entry at once; it
// overwrites the delivery's in-flight mark (the same field). A trail
// entry of a delivery clears its in-flight mark only (clearScript): a
// done mark written meanwhile by another run stays.
func (s *Store) Write(ctx context.Context, w dispatcher.LetterWrite) (dispatcher.WriteResult, error) {
	res, err := s.WriteAll(ctx, []dispatcher.LetterWrite{w})
	if err != nil {
		return dispatcher.WriteResult{}, err
	}
	return res[0], nil
}

// WriteAll makes each write's commands as Write does and sends them all
// in one pipeline, in order.
func (s *Store) WriteAll(ctx context.Context, ws []dispatcher.LetterWrite) ([]dispatcher.WriteResult, error) {
	if len(ws) == 0 {
		return nil, nil
	}
	pws := make([]*preparedWrite, len(ws))
	for i, w := range ws {
		pw, err := s.prepareWrite(w)
		if err != nil {
			return nil, fmt.Errorf("write letter: %w", err)
		}
		pws[i] = pw
	}
	return s.writePrepared(ctx, pws)
}

// writePrepared is WriteAll of prepared writes. Written again, a prepared
// write is the same call run again: its claims carry the same call id
// (a claim of its own is no claim taken) and its trail entries the same
// ids.
func (s *Store) writePrepared(ctx context.Context, pws []*preparedWrite) ([]dispatcher.WriteResult, error) {
	// do may re-run the pipeline (NOSCRIPT): each write's arrival reply
	// is taken from the commands of the last run.
	arrivals, claims := make([]*redis.Cmd, len(pws)), make([]*redis.Cmd, len(pws))
	_, err := s.doN(ctx, len(pws), func(p redis.Pipeliner) []redis.Cmder {
		var out []redis.Cmder
		for i, pw := range pws {
			out, arrivals[i], claims[i] = s.buildWrite(ctx, p, pw, out)
		}
		return out
	})
	if err != nil {
		return nil, fmt.Errorf("write letter: %w", err)
	}
	res := make([]dispatcher.WriteResult, len(pws))
	taken := func(i int, fields []any) {
		for _, f := range fields {
			if f, ok := f.(string); ok {
				res[i].Taken = append(res[i].Taken, strings.TrimPrefix(f, "d:"))
			}
		}
	}
	for i, a := range arrivals {
		if a != nil {
			reply, _ := a.Val().([]any)
			if len(reply) > 0 {
				if n, ok := reply[0].(int64); ok {
					res[i].Unread = int(n)
				}
				taken(i, reply[1:])
			}
		}
		if c := claims[i]; c != nil {
			reply, _ := c.Val().([]any)
			taken(i, reply)
		}
	}
	return res, nil
}

// preparedWrite is a LetterWrite in the fields and values it writes.
type preparedWrite struct {
	w       dispatcher.LetterWrite
	set     []any
	claims  []any // in-flight marks claimed by an arrival (letterScript)
	clear   []any
	entries []any
	windows []any
	cur     map[string]string // the letter as read (LookupWriteAll)
}

func (s *Store) prepareWrite(w dispatcher.LetterWrite) (*preparedWrite, error) {
	pw := &preparedWrite{w: w}
	for _, o := range w.Done {
		pw.set = append(pw.set, "d:"+o.DeliveryID, encodeOutcome(o))
	}
	if len(w.InFlight) > 0 || len(w.Handed) > 0 {
		at := inFlightTag + strconv.FormatInt(s.o.Now().UnixMilli(), 10)
		// An arrival claims its in-flight marks: the call's id in the
		// value tells this call, run again, from another run.
		claiming := w.Arrive != nil || w.Claim
		claim := at
		if claiming {
			claim = at + claimSep + s.callID()
			if w.Run != "" {
				claim += runSep + w.Run
			}
		}
		for _, id := range w.InFlight {
			if _, handed := w.Handed[id]; handed {
				continue
			}
			if claiming {
				pw.claims = append(pw.claims, "d:"+id, claim)
			} else {
				pw.set = append(pw.set, "d:"+id, at)
			}
		}
		// A pin keeps the run's claim (its event, no call id: it is
		// written over the run's own claim, never checked).
		pin := at
		if w.Run != "" {
			pin += claimSep + runSep + w.Run
		}
		for _, id := range slices.Sorted(maps.Keys(w.Handed)) {
			pw.set = append(pw.set, "d:"+id, pin+handedSep+w.Handed[id])
		}
	}
	if !w.Mark.IsZero() {
		pw.set = append(pw.set, "e:"+w.Mark.ID, "1")
	}
	for _, o := range w.Trail {
		_, handed := w.Handed[o.DeliveryID]
		if o.DeliveryID != "" && !handed && !slices.ContainsFunc(w.Done, func(d dispatcher.Outcome) bool { return d.DeliveryID == o.DeliveryID }) {
			pw.clear = append(pw.clear, "d:"+o.DeliveryID)
		}
		entry, err := json.Marshal(trailEntry{Outcome: o, ID: s.callID()})
		if err != nil {
			return nil, err
		}
		pw.entries = append(pw.entries, entry)
	}
	for ch, until := range w.Windows {
		pw.windows = append(pw.windows, "co:"+string(ch), until.UnixMilli())
	}
	return pw, nil
}

// trailEntry is an entry of a letter's trail list that a write appends:
// the outcome and an id of the entry's own. The RPUSH is not idempotent,
// and a store call's pipeline can run twice: done runs a call again when
// a script was lost (NOSCRIPT), go-redis runs a whole pipeline again when
// its connection fails before the replies are in (EOF, reset, timeout).
// The entry is then in the list twice, with one id; Trail shows it once.
// The id costs a dozen bytes per entry and no Redis time; a guard in
// Redis (the RPUSH in a script checking a token per write) would cost a
// script call per letter. Entries of reportScript (guarded by the
// report's status) and from before the id have none.
type trailEntry struct {
	dispatcher.Outcome
	ID string `json:"w,omitempty"`
}

// callID returns a new id for a trail entry or a store call: unique to
// this store (a counter) and, with 48 random bits, to the process. A call
// run again (NOSCRIPT, a go-redis retry) sends the same arguments, so a
// script that keeps the id of its call with what it wrote knows its own
// write from another's (reportScript, checkCodeScript).
func (s *Store) callID() string {
	return s.callBase + strconv.FormatUint(s.callSeq.Add(1), 36)
}

// answerKey is where a script keeps the answer of one call (id: its
// event's id or a callID, behind a letter naming the script) for
// answerTTL, so the call run again gets the same answer: P:{C}:ans:<id>.
func (s *Store) answerKey(c, id string) string { return s.o.Prefix + ":{" + c + "}:ans:" + id }

// answerTTL is how long a script's answer is kept for a second run of its
// call: go-redis re-runs a call within its retries, a task within its
// timeout (minutes); a task retried later runs as new.
const answerTTL = time.Hour

// buildWrite queues one write's commands on p, appended to out; arrive is
// the arrival script's command (nil without Arrive), claim the claim
// script's of a write with claims and no Arrive (else nil).
func (s *Store) buildWrite(ctx context.Context, p redis.Pipeliner, pw *preparedWrite, out []redis.Cmder) (_ []redis.Cmder, arrive, claim *redis.Cmd) {
	w := pw.w
	citizen, msgID := w.Citizen, w.MessageID
	set, claims, clear := pw.set, pw.claims, pw.clear
	letter, unread := s.letterKey(citizen, msgID), s.unreadKey(citizen)
	if w.Arrive != nil {
		m := w.Arrive.Meta
		meta := metaPairs(m)
		args := []any{msgID, m.ReceivedAt.UnixMilli(), s.oldestKept(),
			s.o.LetterTTL.Milliseconds(), s.o.ReadTTL.Milliseconds(), len(meta) / 2, len(claims) / 2, len(set) / 2}
		args = append(append(append(args, meta...), claims...), set...)
		arrive = script(ctx, p, letterScript, []string{letter, unread}, args...)
		out = append(out, arrive)
	} else if len(set) > 0 || len(claims) > 0 {
		// Later writes keep the letter's expiry (a read letter's is
		// shorter); NX only covers a letter that had none, which a write
		// that follows its run's first write never meets.
		if len(claims) > 0 {
			claim = script(ctx, p, claimScript, []string{letter}, append(append([]any{len(claims) / 2}, claims...), set...)...)
			out = append(out, claim)
		} else {
			out = append(out, p.HSet(ctx, letter, set...))
		}
		if !w.Follows {
			out = append(out, p.Do(ctx, "PEXPIRE", letter, s.o.LetterTTL.Milliseconds(), "NX"))
		}
	}
	if len(clear) > 0 {
		out = append(out, script(ctx, p, clearScript, []string{letter}, clear...))
	}
	return s.buildRest(ctx, p, pw, out), arrive, claim
}

// metaPairs is a letter's metadata as the field/value pairs of its hash.
func metaPairs(m *dispatcher.Letter) []any {
	meta := []any{"sid", m.SenderID, "sn", m.SenderName, "sk", string(m.SenderKind),
		"pr", string(m.Priority), "nt", m.Notification, "at", m.ReceivedAt.UnixMilli(), "lg", b2s(m.Legal)}
	if !m.NotBefore.IsZero() {
		meta = append(meta, "nb", m.NotBefore.UnixMilli())
	}
	if !m.ReplyBy.IsZero() {
		meta = append(meta, "rb", m.ReplyBy.UnixMilli())
	}
	return meta
}

// buildRest queues a write's commands outside the letter's hash: its
// trail entries, the message index, the citizen's windows and the
// delivery refs.
func (s *Store) buildRest(ctx context.Context, p redis.Pipeliner, pw *preparedWrite, out []redis.Cmder) []redis.Cmder {
	w := pw.w
	citizen, msgID, entries, windows := w.Citizen, w.MessageID, pw.entries, pw.windows
	trail := s.trailKey(citizen, msgID)
	if len(entries) > 0 {
		out = append(out, p.RPush(ctx, trail, entries...), p.LTrim(ctx, trail, -int64(s.o.TrailCap), -1),
			p.PExpire(ctx, trail, s.o.LetterTTL))
	}
	// The message index is written with the letter's arrival (and
	// refreshed by trail entries); an event mark alone adds nothing to it.
	if w.Arrive != nil || len(entries) > 0 {
		out = append(out, p.Set(ctx, s.indexKey(msgID), citizen, s.o.LetterTTL))
	}
	if len(windows) > 0 {
		out = append(out, p.HSet(ctx, s.citizenKey(citizen), windows...))
	}
	for _, did := range w.Track {
		out = append(out, p.Set(ctx, s.deliveryKey(did), citizen+"/"+msgID, deliveryRefTTL))
	}
	return out
}

// clearScript clears the in-flight marks of deliveries whose provider
// answered with no final outcome; a field holding a done mark stays.
//
// KEYS[1] letter hash
// ARGV the delivery fields (d:<delivery id>)
// Returns the number of marks cleared.
var clearScript = redis.NewScript(`
local n = 0
for i = 1, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v and string.sub(v, 1, 1) == '` + inFlightTag + `' then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
`)

// markArgs returns the event mark key and its TTL argument for a registry
// script: TTL "0" means the write marks nothing (the key is then never
// touched).
func (s *Store) markArgs(citizen string, ev dispatcher.EventRef) (string, int64) {
	if ev.IsZero() {
		return s.eventKey(citizen, "-"), 0
	}
	return s.eventKey(citizen, ev.ID), s.o.EventTTL.Milliseconds()
}

// UpdateContact applies a contact.updated event (contactScript).
func (s *Store) UpdateContact(ctx context.Context, w dispatcher.ContactWrite) (bool, error) {
	mk, ttl := s.markArgs(w.Citizen, w.Mark)
	args := []any{w.At.UnixMilli(), ttl, b2s(w.Confirmed), w.EmailFingerprint, w.MobileFingerprint}
	add := func(field string, v *string) {
		if v != nil {
			args = append(args, field, *v)
		}
	}
	sealed := func(field string, v *string) {
		if v != nil {
			args = append(args, field, s.sealField(w.Citizen, field, *v))
		}
	}
	if c := w.Contact; c != nil {
		sealed("email", c.Email)
		sealed("mobile", c.Mobile)
		add("lang", c.Language)
		sealed("addr", c.Address)
	}
	n, err := s.runScript(ctx, contactScript, []string{s.citizenKey(w.Citizen), mk}, args)
	if err != nil {
		return false, fmt.Errorf("update contact: %w", err)
	}
	return n == int64(1), nil
}

// SetDevice registers or unregisters a push token (deviceScript). The
// token's field from before sealing, if any, goes either way.
func (s *Store) SetDevice(ctx context.Context, w dispatcher.DeviceWrite) (bool, error) {
	d := w.Device
	field := s.deviceField(d.Provider, d.Token)
	val := ""
	if !w.Remove {
		val = s.encodeDevice(w.Citizen, field, d)
	}
	mk, ttl := s.markArgs(w.Citizen, w.Mark)
	n, err := s.runScript(ctx, deviceScript, []string{s.citizenKey(w.Citizen), mk},
		[]any{field, val, ttl, legacyDeviceField(d.Provider, d.Token)})
	if err != nil {
		return false, fmt.Errorf("device: %w", err)
	}
	return n == int64(1), nil
}

// RemoveAddress forgets an address reported gone unless it changed or was
// registered after goneAt. The stored address is sealed: it is read and
// opened here, and the script removes it only if the field still holds
// the very value read (removeScript).
func (s *Store) RemoveAddress(ctx context.Context, citizen string, to channels.Address, goneAt time.Time) (bool, error) {
	var fields []string
	var with []any // an address's fingerprint and confirmation go with it
	compare := false
	switch to.Channel {
	case channels.Email:
		fields, compare, with = []string{"email"}, true, []any{fieldEmailFP, fieldEmailOK}
	case channels.SMS:
		fields, compare, with = []string{"mobile"}, true, []any{fieldMobileFP, fieldMobileOK}
	case channels.APNs, channels.FCM:
		fields = []string{s.deviceField(string(to.Channel), to.Value), legacyDeviceField(string(to.Channel), to.Value)}
	default:
		return false, fmt.Errorf("remove address: channel %s has no registry entry", to.Channel)
	}
	for _, field := range fields {
		expect := ""
		if compare {
			v, err := s.rdb.HGet(ctx, s.citizenKey(citizen), field).Result()
			if errors.Is(err, redis.Nil) {
				return false, nil
			}
			if err != nil {
				return false, fmt.Errorf("remove address: %w", err)
			}
			open, err := s.openField(citizen, field, v)
			if err != nil {
				return false, fmt.Errorf("remove address: %w", err)
			}
			if open != to.Value {
				return false, nil
			}
			expect = v
		}
		n, err := s.runScript(ctx, removeScript, []string{s.citizenKey(citizen)}, append([]any{field, goneAt.UnixMilli(), expect}, with...))
		if err != nil {
			return false, fmt.Errorf("remove address: %w", err)
		}
		if n == int64(1) {
			return true, nil
		}
	}
	return false, nil
}

// DeliveryRef returns the citizen and letter of a tracked delivery.
func (s *Store) DeliveryRef(ctx context.Context, deliveryID string) (string, string, error) {
	v, err := s.rdb.Get(ctx, s.deliveryKey(deliveryID)).Result()
	if errors.Is(err, redis.Nil) {
		return "", "", dispatcher.ErrNotFound
	}
	if err != nil {
		return "", "", fmt.Errorf("delivery ref: %w", err)
	}
	citizen, msg, ok := strings.Cut(v, "/")
	if !ok {
		return "", "", dispatcher.ErrNotFound
	}
	return citizen, msg, nil
}

// ApplyReport records a delivery report unless a final one was recorded
// (reportScript); run again, the call answers as it did the first time.
func (s *Store) ApplyReport(ctx context.Context, w dispatcher.ReportWrite) (bool, error) {
	b, err := json.Marshal(w.Entry)
	if err != nil {
		return false, err
	}
	keys := []string{s.letterKey(w.Citizen, w.MessageID), s.trailKey(w.Citizen, w.MessageID)}
	n, err := s.runScript(ctx, reportScript, keys, []any{w.DeliveryID, w.Status, b2s(w.Final), b, s.o.LetterTTL.Milliseconds(),
		s.o.TrailCap, s.callID()})
	if err != nil {
		return false, fmt.Errorf("apply report: %w", err)
	}
	return n == int64(1), nil
}

// Trail returns a letter's delivery trail: its final outcomes (the done
// marks) and every other entry (the list; an entry a replayed pipeline
// appended twice once, trailEntry), oldest first.
func (s *Store) Trail(ctx context.Context, messageID string) ([]dispatcher.Outcome, error) {
	citizen, err := s.rdb.Get(ctx, s.indexKey(messageID)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, dispatcher.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("trail: %w", err)
	}
	var lr *redis.StringSliceCmd
	var hr *redis.MapStringStringCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		lr = p.LRange(ctx, s.trailKey(citizen, messageID), 0, -1)
		hr = p.HGetAll(ctx, s.letterKey(citizen, messageID))
		return nil
	}); err != nil {
		return nil, fmt.Errorf("trail: %w", err)
	}
	var out []dispatcher.Outcome
	var ids map[string]bool
	for _, r := range lr.Val() {
		var e trailEntry
		if err := json.Unmarshal([]byte(r), &e); err != nil {
			return nil, fmt.Errorf("trail entry: %w", err)
		}
		if e.ID != "" {
			// A write's pipeline that ran twice appended it twice.
			if ids[e.ID] {
				continue
			}
			if ids == nil {
				ids = make(map[string]bool)
			}
			ids[e.ID] = true
		}
		out = append(out, e.Outcome)
	}
	for f, v := range hr.Val() {
		if did, ok := strings.CutPrefix(f, "d:"); ok {
			if o, ok := decodeOutcome(v); ok {
				o.DeliveryID = did
				out = append(out, o)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b dispatcher.Outcome) int { return a.At.Compare(b.At) })
	return out, nil
}

// ApplyState applies a read or unread (stateScript); run again with the
// same Guard before the event's mark, it returns the first run's answer.
func (s *Store) ApplyState(ctx context.Context, w dispatcher.StateWrite) (dispatcher.StateResult, error) {
	guard, answer, keep := "", s.answerKey(w.Citizen, "s:-"), int64(0)
	if !w.Guard.IsZero() {
		guard, answer, keep = "e:"+w.Guard.ID, s.answerKey(w.Citizen, "s:"+w.MessageID+":"+w.Guard.ID), answerTTL.Milliseconds()
	}
	keys := []string{s.letterKey(w.Citizen, w.MessageID), s.unreadKey(w.Citizen), answer}
	res, err := s.runScript(ctx, stateScript, keys, []any{b2s(w.Read), w.At.UnixMilli(), string(w.Platform), guard,
		s.o.LetterTTL.Milliseconds(), w.MessageID, s.oldestKept(), s.o.ReadTTL.Milliseconds(), keep})
	if err != nil {
		return dispatcher.StateResult{}, fmt.Errorf("apply read state: %w", err)
	}
	if n, ok := res.(int64); ok && n == -1 {
		return dispatcher.StateResult{Seen: true}, nil
	}
	v, _ := res.([]any)
	if len(v) != 7 {
		return dispatcher.StateResult{}, fmt.Errorf("apply read state: unexpected reply %v", res)
	}
	i := func(k int) int64 { n, _ := v[k].(int64); return n }
	cb, _ := v[4].(string)
	return dispatcher.StateResult{Changed: i(0) == 1, Correct: i(0) == 2,
		State: dispatcher.ReadState{MessageID: w.MessageID, Read: i(1) == 1, Version: i(2),
			ChangedAt: time.UnixMilli(i(3)), ChangedBy: event.Platform(cb), Unread: int(i(5)), Received: i(6) == 1}}, nil
}

// State returns a letter's read state, its acknowledgements by platform and
// the citizen's unread count.
func (s *Store) State(ctx context.Context, citizen, messageID string) (dispatcher.ReadState, error) {
	cmds, err := s.do(ctx, func(p redis.Pipeliner) []redis.Cmder {
		return []redis.Cmder{p.HGetAll(ctx, s.letterKey(citizen, messageID)),
			p.ZCount(ctx, s.unreadKey(citizen), strconv.FormatInt(s.oldestKept(), 10), "+inf")}
	})
	if err != nil {
		return dispatcher.ReadState{}, fmt.Errorf("read state: %w", err)
	}
	m := cmds[0].(*redis.MapStringStringCmd).Val()
	if m["sn"] == "" && m["r"] == "" {
		// Neither the letter nor a read state (marks alone are no letter).
		return dispatcher.ReadState{}, dispatcher.ErrNotFound
	}
	l := decodeLetter(messageID, m)
	st := dispatcher.ReadState{MessageID: messageID, Read: l.Read, Version: l.Version, ChangedAt: l.ChangeAt,
		ChangedBy: l.ChangeBy, Unread: int(cmds[1].(*redis.IntCmd).Val()), Received: l.SenderName != "",
		Acked: map[event.Platform]int64{}}
	for f, v := range m {
		if p, ok := strings.CutPrefix(f, "a:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			st.Acked[event.Platform(p)] = n
		}
	}
	return st, nil
}

// CitizenOf returns the citizen key of a tracked letter.
func (s *Store) CitizenOf(ctx context.Context, messageID string) (string, error) {
	c, err := s.rdb.Get(ctx, s.indexKey(messageID)).Result()
	if errors.Is(err, redis.Nil) {
		return "", dispatcher.ErrNotFound
	}
	return c, err
}

// LockSync takes the lock that serialises one platform's webhooks for one
// letter, so versions go out in order. The lock's value is a random token
// only its holder knows.
func (s *Store) LockSync(ctx context.Context, k dispatcher.SyncKey, ttl time.Duration) (dispatcher.SyncLock, error) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	key := s.syncLockKey(k.Citizen, k.MessageID, string(k.Platform))
	ok, err := s.rdb.SetNX(ctx, key, token, ttl).Result()
	if err != nil || !ok {
		return nil, err
	}
	return &syncLock{s: s, key: key, token: token}, nil
}

type syncLock struct {
	s          *Store
	key, token string
}

// Unlock frees the lock if it is still this holder's (unlockScript).
func (l *syncLock) Unlock(ctx context.Context) error {
	return unlockScript.Run(ctx, l.s.rdb, []string{l.key}, l.token).Err()
}

// AckSync records the version a platform acknowledged.
func (s *Store) AckSync(ctx context.Context, k dispatcher.SyncKey, version int64) error {
	return ackScript.Run(ctx, s.rdb, []string{s.letterKey(k.Citizen, k.MessageID)}, "a:"+string(k.Platform), version).Err()
}

// PlatformDisabled reports whether a platform's webhook endpoint was
// disabled (it answered 410).
func (s *Store) PlatformDisabled(ctx context.Context, platform event.Platform) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.disabledKey(string(platform))).Result()
	return n == 1, err
}

// SetPlatformDisabled disables or re-enables a platform's webhook endpoint.
func (s *Store) SetPlatformDisabled(ctx context.Context, platform event.Platform, disabled bool) error {
	if disabled {
		return s.rdb.Set(ctx, s.disabledKey(string(platform)), s.o.Now().UTC().Format(time.RFC3339), 0).Err()
	}
	return s.rdb.Del(ctx, s.disabledKey(string(platform))).Err()
}

// Remember records key for ttl and reports whether it was new.
func (s *Store) Remember(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	return s.rdb.SetNX(ctx, s.o.Prefix+":seen:"+key, "1", ttl).Result()
}

// SetExemption records an exemption change (exemptionScript).
func (s *Store) SetExemption(ctx context.Context, w dispatcher.ExemptionWrite) (bool, error) {
	mk, ttl := s.markArgs(w.Citizen, w.Mark)
	n, err := s.runScript(ctx, exemptionScript, []string{s.citizenKey(w.Citizen), mk},
		[]any{b2s(w.Exempt), w.At.UnixMilli(), s.sealField(w.Citizen, "fwd", w.Forward), ttl})
	if err != nil {
		return false, fmt.Errorf("exemption: %w", err)
	}
	return n == int64(1), nil
}

// ExemptionOf reads the citizen's exemption: one HMGET, whether or not
// the citizen is known.
func (s *Store) ExemptionOf(ctx context.Context, citizen string) (dispatcher.Exemption, error) {
	cmds, err := s.do(ctx, func(p redis.Pipeliner) []redis.Cmder {
		return []redis.Cmder{p.HMGet(ctx, s.citizenKey(citizen), "x", "xs", "xt")}
	})
	if err != nil {
		return dispatcher.Exemption{}, fmt.Errorf("exemption: %w", err)
	}
	v := cmds[0].(*redis.SliceCmd).Val()
	str := func(i int) string {
		if i < len(v) {
			s, _ := v[i].(string)
			return s
		}
		return ""
	}
	return decodeExemption(str(0), str(1), str(2)), nil
}

// decodeExemption reads the citizen hash's exemption fields: x (exempt),
// xs (since) and xt (the time of the last exemption change). A citizen
// exempted before xs was kept has none: the last change, a grant, stands
// in for it.
func decodeExemption(x, xs, xt string) dispatcher.Exemption {
	if x != "1" {
		return dispatcher.Exemption{}
	}
	if xs == "" {
		xs = xt
	}
	return dispatcher.Exemption{Exempt: true, Since: msTime(xs)}
}

// SetConsent records a consent change of one platform (consentScript).
func (s *Store) SetConsent(ctx context.Context, w dispatcher.ConsentWrite) (bool, error) {
	mk, ttl := s.markArgs(w.Citizen, w.Mark)
	n, err := s.runScript(ctx, consentScript, []string{s.citizenKey(w.Citizen), mk},
		[]any{"cs:" + string(w.Platform), b2s(w.Granted), w.At.UnixMilli(), ttl})
	if err != nil {
		return false, fmt.Errorf("consent: %w", err)
	}
	return n == int64(1), nil
}

// UnreadSince returns the citizen's unread letters received in [from, to].
func (s *Store) UnreadSince(ctx context.Context, citizen string, from, to time.Time) ([]string, error) {
	ids, err := s.rdb.ZRangeByScore(ctx, s.unreadKey(citizen), &redis.ZRangeBy{
		Min: strconv.FormatInt(from.UnixMilli(), 10), Max: strconv.FormatInt(to.UnixMilli(), 10)}).Result()
	if err != nil {
		return nil, fmt.Errorf("unread letters: %w", err)
	}
	return ids, nil
}

func (s *Store) heldKey(c string, ch channels.Name) string {
	return s.o.Prefix + ":{" + c + "}:held:" + string(ch)
}

// heldTTL bounds how long a channel's held letters are kept.
const heldTTL = 7 * 24 * time.Hour

// Hold adds a letter to a channel's held letters unless it is held
// already (holdScript).
func (s *Store) Hold(ctx context.Context, citizen string, ch channels.Name, messageID string) (bool, error) {
	n, err := s.runScript(ctx, holdScript, []string{s.heldKey(citizen, ch)}, []any{messageID, heldTTL.Milliseconds()})
	if err != nil {
		return false, fmt.Errorf("hold: %w", err)
	}
	return n == int64(1), nil
}

// Held returns a channel's held letters, oldest first.
func (s *Store) Held(ctx context.Context, citizen string, ch channels.Name) ([]string, error) {
	return s.rdb.LRange(ctx, s.heldKey(citizen, ch), 0, -1).Result()
}

// Release forgets the first n held letters.
func (s *Store) Release(ctx context.Context, citizen string, ch channels.Name, n int) error {
	return s.rdb.LTrim(ctx, s.heldKey(citizen, ch), int64(n), -1).Err()
}

// A done mark's value is its final outcome in a compact form: fields
// separated by the ASCII unit separator, behind a version tag. A quarter
// of the JSON's size keeps the letter's hash small (a hash of short values
// stays a listpack in Redis).
const outcomeSep = "\x1f"

// An outcome of an access holder's delivery is version 2: version 1 with
// the holder's reference (dispatcher.HolderRef) appended.
func encodeOutcome(o dispatcher.Outcome) string {
	f := []string{"1", strconv.FormatInt(o.At.UnixMilli(), 10), string(o.Channel), o.App, o.Result,
		o.Reason, o.Kind, o.Code, o.ProviderID, strconv.Itoa(o.Attempt), strconv.FormatInt(o.DurationMS, 10)}
	switch {
	case o.Holder != "": // version 2: the provider (maybe "") and the access holder
		f[0] = "2"
		f = append(f, o.Provider, o.Holder)
	case o.Provider != "": // a channel of several providers: a twelfth field
		f = append(f, o.Provider)
	}
	return strings.Join(f, outcomeSep)
}

// decodeOutcome reads what encodeOutcome wrote: version 1 with 11 fields
// or 12 (the provider), version 2 with 13 (provider and access holder).
func decodeOutcome(v string) (dispatcher.Outcome, bool) {
	f := strings.Split(v, outcomeSep)
	provider, holder := "", ""
	switch {
	case f[0] == "1" && len(f) == 11:
	case f[0] == "1" && len(f) == 12:
		provider = f[11]
	case f[0] == "2" && len(f) == 13:
		provider, holder = f[11], f[12]
	default:
		return dispatcher.Outcome{}, false
	}
	ms, _ := strconv.ParseInt(f[1], 10, 64)
	attempt, _ := strconv.Atoi(f[9])
	dur, _ := strconv.ParseInt(f[10], 10, 64)
	return dispatcher.Outcome{At: time.UnixMilli(ms).UTC(), Channel: channels.Name(f[2]), App: f[3], Result: f[4],
		Reason: f[5], Kind: f[6], Code: f[7], ProviderID: f[8], Attempt: attempt, DurationMS: dur, Provider: provider,
		Holder: holder}, true
}
