// Package redisstore keeps postbud's own state in Redis: the citizen
// registry, letters with their read state and delivery trail, and the
// idempotency marks of processed events.
//
// Key layout (P is the configured prefix, C a citizen key):
//
//	P:{C}:c          hash   the citizen: email, mobile, lang, addr, cat
//	                        (time of the last contact event, unix ms),
//	                        dev:<provider>:<token> = app|env|registered ms
//	P:{C}:m:<msg>    hash   a letter: sid, sn, sk, pr, nt, at, lg, read
//	                        state, d:<delivery id> = final result,
//	                        e:<event id> = processed mark of its events
//	P:{C}:t:<msg>    list   the letter's delivery trail (JSON entries)
//	P:{C}:u          zset   the citizen's unread letters by received time
//	                        (no TTL: counted with ZCOUNT over the retention
//	                        window, trimmed every 16th letter and on reads;
//	                        an empty zset is gone)
//	P:{C}:e:<event>  string the processed mark of a registry event
//	P:msg:<msg>      string message id → citizen key, for ops look-ups
//
// No key or value holds a CPR number: citizens are known by the
// pseudonymous key only. Letters, trails and marks expire.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	busy      bool // the batcher's last batch had more than one call
	linger    time.Duration
}

var allScripts = []*redis.Script{ackScript, contactScript, deviceScript, removeScript, reportScript, fixUnreadScript, stateScript, exemptionScript}

var _ dispatcher.Store = (*Store)(nil)

// New returns a Store on rdb.
func New(rdb redis.UniversalClient, o Options) *Store {
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
	s := &Store{rdb: rdb, o: o, linger: DefaultLinger}
	s.startBatchers()
	return s
}

// Client returns the Redis client.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

func (s *Store) citizenKey(c string) string   { return s.o.Prefix + ":{" + c + "}:c" }
func (s *Store) letterKey(c, m string) string { return s.o.Prefix + ":{" + c + "}:m:" + m }
func (s *Store) trailKey(c, m string) string  { return s.o.Prefix + ":{" + c + "}:t:" + m }
func (s *Store) eventKey(c, e string) string  { return s.o.Prefix + ":{" + c + "}:e:" + e }
func (s *Store) indexKey(m string) string     { return s.o.Prefix + ":msg:" + m }
func (s *Store) deliveryKey(d string) string  { return s.o.Prefix + ":dl:" + d }
func (s *Store) unreadKey(c string) string    { return s.o.Prefix + ":{" + c + "}:u" }
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

// EventSeen reports whether the event was processed. A letter's events
// are marked in the letter's hash (messageID set); other events have a
// mark key of their own.
func (s *Store) EventSeen(ctx context.Context, citizen, messageID, eventID string) (bool, error) {
	cmds, err := s.do(ctx, func(p redis.Pipeliner) []redis.Cmder {
		if messageID != "" {
			return []redis.Cmder{p.HExists(ctx, s.letterKey(citizen, messageID), "e:"+eventID)}
		}
		return []redis.Cmder{p.Exists(ctx, s.eventKey(citizen, eventID))}
	})
	if err != nil {
		return false, fmt.Errorf("event mark: %w", err)
	}
	switch c := cmds[0].(type) {
	case *redis.BoolCmd:
		return c.Val(), nil
	case *redis.IntCmd:
		return c.Val() == 1, nil
	}
	return false, nil
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
// (its mark is a field of the letter's hash). Two plain reads in one
// batched round trip.
func (s *Store) Lookup(ctx context.Context, citizen, messageID, eventID string) (*dispatcher.Citizen, *dispatcher.Letter, bool, error) {
	cmds, err := s.do(ctx, func(p redis.Pipeliner) []redis.Cmder {
		return []redis.Cmder{p.HGetAll(ctx, s.citizenKey(citizen)), p.HGetAll(ctx, s.letterKey(citizen, messageID)),
			p.ZCount(ctx, s.unreadKey(citizen), strconv.FormatInt(s.oldestKept(), 10), "+inf")}
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("look up letter: %w", err)
	}
	lm := cmds[1].(*redis.MapStringStringCmd).Val()
	if _, seen := lm["e:"+eventID]; seen && eventID != "" {
		return nil, nil, true, nil
	}
	c := decodeCitizen(citizen, cmds[0].(*redis.MapStringStringCmd).Val())
	c.Unread = int(cmds[2].(*redis.IntCmd).Val())
	return c, decodeLetter(messageID, lm), false, nil
}

// Load returns a citizen and one letter.
func (s *Store) Load(ctx context.Context, citizen, messageID string) (*dispatcher.Citizen, *dispatcher.Letter, error) {
	c, l, _, err := s.Lookup(ctx, citizen, messageID, "")
	if err != nil {
		return nil, nil, err
	}
	if l.SenderName == "" {
		return c, l, dispatcher.ErrNotFound
	}
	return c, l, nil
}

func decodeCitizen(key string, m map[string]string) *dispatcher.Citizen {
	c := &dispatcher.Citizen{Key: key, Email: m["email"], Mobile: m["mobile"], Language: m["lang"],
		Address: m["addr"], Exempt: m["x"] == "1", Forward: m["fwd"]}
	for f, v := range m {
		if ch, ok := strings.CutPrefix(f, "co:"); ok {
			if c.Windows == nil {
				c.Windows = map[channels.Name]time.Time{}
			}
			c.Windows[channels.Name(ch)] = msTime(v)
			continue
		}
		rest, ok := strings.CutPrefix(f, "dev:")
		if !ok {
			continue
		}
		provider, token, ok := strings.Cut(rest, ":")
		parts := strings.Split(v, "|")
		if !ok || len(parts) != 3 {
			continue
		}
		ms, _ := strconv.ParseInt(parts[2], 10, 64)
		c.Devices = append(c.Devices, dispatcher.Device{App: parts[0], Provider: provider, Token: token,
			Environment: parts[1], RegisteredAt: time.UnixMilli(ms)})
	}
	// Map order is random; keep deliveries in a stable order.
	sortDevices(c.Devices)
	return c
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
		if did, ok := strings.CutPrefix(f, "d:"); ok {
			if l.Done == nil {
				l.Done = make(map[string]string)
			}
			l.Done[did] = v
		}
	}
	return l
}

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

// Record writes, in one batched round trip: the letter's state that must
// change together — its metadata when eventID is set, the final outcomes as
// done marks, the event's mark — in one HSET, the letter's filing in the
// unread index on its first processing, then non-final trail entries,
// expiries and the message index: plain commands, no script. The trail is
// the letter's done marks and its list, by time.
func (s *Store) Record(ctx context.Context, citizen string, l *dispatcher.Letter, outs []dispatcher.Outcome, eventID string) error {
	var fields []any
	if eventID != "" {
		fields = append(fields, "sid", l.SenderID, "sn", l.SenderName, "sk", string(l.SenderKind),
			"pr", string(l.Priority), "nt", l.Notification, "at", l.ReceivedAt.UnixMilli(), "lg", b2s(l.Legal),
			"e:"+eventID, "1")
		if !l.NotBefore.IsZero() {
			fields = append(fields, "nb", l.NotBefore.UnixMilli())
		}
		if !l.ReplyBy.IsZero() {
			fields = append(fields, "rb", l.ReplyBy.UnixMilli())
		}
	}
	var entries []any
	var tracked []string
	var windows []any
	for _, o := range outs {
		if !o.Window.IsZero() {
			windows = append(windows, "co:"+string(o.Channel), o.Window.UnixMilli())
		}
		if o.Track && o.DeliveryID != "" {
			tracked = append(tracked, o.DeliveryID)
		}
		if o.Final && o.DeliveryID != "" {
			// A final outcome is the delivery's done mark and its trail
			// entry at once, in a compact form: the common letter needs
			// no list.
			fields = append(fields, "d:"+o.DeliveryID, encodeOutcome(o))
			continue
		}
		entry, err := json.Marshal(o)
		if err != nil {
			return err
		}
		entries = append(entries, entry)
	}
	letter, trail, unread := s.letterKey(citizen, l.MessageID), s.trailKey(citizen, l.MessageID), s.unreadKey(citizen)
	var readFlag *redis.StringCmd
	_, err := s.do(ctx, func(p redis.Pipeliner) []redis.Cmder {
		var out []redis.Cmder
		if len(fields) > 0 {
			out = append(out, p.HSet(ctx, letter, fields...))
			if eventID != "" {
				out = append(out, p.PExpire(ctx, letter, s.o.LetterTTL))
			} else {
				// Later records keep the letter's expiry (a read letter's
				// is shorter); NX only covers a letter that had none.
				out = append(out, p.Do(ctx, "PEXPIRE", letter, s.o.LetterTTL.Milliseconds(), "NX"))
			}
		}
		if eventID != "" {
			// The letter's first processing files it in the unread index;
			// if a read got in first (read flag set), fixUnread undoes it
			// below. The flag is read after the ZADD, so a read that runs
			// in between is seen by one side or the other (stateScript
			// takes the letter out of the index once it has its 'sn').
			readFlag = p.HGet(ctx, letter, "r")
			out = append(out, p.ZAdd(ctx, unread, redis.Z{Score: float64(l.ReceivedAt.UnixMilli()), Member: l.MessageID}))
			if l.Tidy {
				out = append(out, p.ZRemRangeByScore(ctx, unread, "-inf", "("+strconv.FormatInt(s.oldestKept(), 10)))
			}
			out = append(out, readFlag)
		}
		if len(entries) > 0 {
			out = append(out, p.RPush(ctx, trail, entries...), p.LTrim(ctx, trail, -int64(s.o.TrailCap), -1),
				p.PExpire(ctx, trail, s.o.LetterTTL))
		}
		if len(outs) > 0 || eventID != "" {
			out = append(out, p.Set(ctx, s.indexKey(l.MessageID), citizen, s.o.LetterTTL))
		}
		if len(windows) > 0 {
			out = append(out, p.HSet(ctx, s.citizenKey(citizen), windows...))
		}
		for _, did := range tracked {
			out = append(out, p.Set(ctx, s.deliveryKey(did), citizen+"/"+l.MessageID, deliveryRefTTL))
		}
		return out
	})
	if err != nil {
		return fmt.Errorf("record outcomes: %w", err)
	}
	if readFlag != nil {
		if readFlag.Val() == "1" {
			_, err := s.runScript(ctx, fixUnreadScript, []string{letter, unread}, []any{l.MessageID, s.o.ReadTTL.Milliseconds()})
			if err != nil {
				return fmt.Errorf("record outcomes: %w", err)
			}
		}
	}
	return nil
}

// UpdateContact applies a contact.updated event.
func (s *Store) UpdateContact(ctx context.Context, citizen string, c *event.ContactData, at time.Time, eventID string) error {
	args := []any{at.UnixMilli(), s.o.EventTTL.Milliseconds()}
	add := func(field string, v *string) {
		if v != nil {
			args = append(args, field, *v)
		}
	}
	add("email", c.Email)
	add("mobile", c.Mobile)
	add("lang", c.Language)
	add("addr", c.Address)
	_, err := s.runScript(ctx, contactScript, []string{s.citizenKey(citizen), s.eventKey(citizen, eventID)}, args)
	if err != nil {
		return fmt.Errorf("update contact: %w", err)
	}
	return nil
}

func deviceField(provider, token string) string { return "dev:" + provider + ":" + token }

// RegisterDevice adds or refreshes a push token.
func (s *Store) RegisterDevice(ctx context.Context, citizen string, d dispatcher.Device, eventID string) error {
	val := d.App + "|" + d.Environment + "|" + strconv.FormatInt(d.RegisteredAt.UnixMilli(), 10)
	return s.device(ctx, citizen, deviceField(d.Provider, d.Token), val, eventID)
}

// UnregisterDevice removes a push token.
func (s *Store) UnregisterDevice(ctx context.Context, citizen string, d dispatcher.Device, eventID string) error {
	return s.device(ctx, citizen, deviceField(d.Provider, d.Token), "", eventID)
}

func (s *Store) device(ctx context.Context, citizen, field, val, eventID string) error {
	keys := []string{s.citizenKey(citizen), s.eventKey(citizen, eventID)}
	if _, err := s.runScript(ctx, deviceScript, keys, []any{field, val, s.o.EventTTL.Milliseconds()}); err != nil {
		return fmt.Errorf("device: %w", err)
	}
	return nil
}

// RemoveAddress forgets an address reported gone unless registered after
// goneAt.
func (s *Store) RemoveAddress(ctx context.Context, citizen string, to channels.Address, goneAt time.Time) (bool, error) {
	var field, expect string
	switch to.Channel {
	case channels.Email:
		field, expect = "email", to.Value
	case channels.SMS:
		field, expect = "mobile", to.Value
	case channels.APNs, channels.FCM:
		field = deviceField(string(to.Channel), to.Value)
	default:
		return false, fmt.Errorf("remove address: channel %s has no registry entry", to.Channel)
	}
	n, err := s.runScript(ctx, removeScript, []string{s.citizenKey(citizen)}, []any{field, goneAt.UnixMilli(), expect})
	if err != nil {
		return false, fmt.Errorf("remove address: %w", err)
	}
	return n == int64(1), nil
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

// ApplyReport records a delivery report unless a final one was recorded.
func (s *Store) ApplyReport(ctx context.Context, citizen, messageID, deliveryID, status string, final bool, entry dispatcher.Outcome) (bool, error) {
	b, err := json.Marshal(entry)
	if err != nil {
		return false, err
	}
	keys := []string{s.letterKey(citizen, messageID), s.trailKey(citizen, messageID)}
	n, err := s.runScript(ctx, reportScript, keys, []any{deliveryID, status, b2s(final), b, s.o.LetterTTL.Milliseconds(), s.o.TrailCap})
	if err != nil {
		return false, fmt.Errorf("apply report: %w", err)
	}
	return n == int64(1), nil
}

// Trail returns a letter's delivery trail: its final outcomes (the done
// marks) and every other entry (the list), oldest first.
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
	for _, r := range lr.Val() {
		var o dispatcher.Outcome
		if err := json.Unmarshal([]byte(r), &o); err != nil {
			return nil, fmt.Errorf("trail entry: %w", err)
		}
		out = append(out, o)
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

// ApplyState applies a read or unread (stateScript).
func (s *Store) ApplyState(ctx context.Context, citizen, messageID string, read bool, at time.Time, platform event.Platform, eventID string) (dispatcher.ReadState, bool, error) {
	r := "0"
	if read {
		r = "1"
	}
	keys := []string{s.letterKey(citizen, messageID), s.unreadKey(citizen)}
	res, err := s.runScript(ctx, stateScript, keys, []any{r, at.UnixMilli(), string(platform), "e:" + eventID,
		s.o.LetterTTL.Milliseconds(), messageID, s.oldestKept(), s.o.ReadTTL.Milliseconds()})
	if err != nil {
		return dispatcher.ReadState{}, false, fmt.Errorf("apply read state: %w", err)
	}
	if n, ok := res.(int64); ok && n == -1 {
		return dispatcher.ReadState{}, true, nil
	}
	v, _ := res.([]any)
	if len(v) != 7 {
		return dispatcher.ReadState{}, false, fmt.Errorf("apply read state: unexpected reply %v", res)
	}
	i := func(k int) int64 { n, _ := v[k].(int64); return n }
	cb, _ := v[4].(string)
	return dispatcher.ReadState{MessageID: messageID, Changed: i(0) == 1, Correct: i(0) == 2, Read: i(1) == 1, Version: i(2),
		ChangedAt: time.UnixMilli(i(3)), ChangedBy: event.Platform(cb), Unread: int(i(5)), Received: i(6) == 1}, false, nil
}

// MarkEvent marks a letter's event processed.
func (s *Store) MarkEvent(ctx context.Context, citizen, messageID, eventID string) error {
	k := s.letterKey(citizen, messageID)
	_, err := s.do(ctx, func(p redis.Pipeliner) []redis.Cmder {
		// stateScript created the letter with its expiry; NX only covers
		// a letter that had none.
		return []redis.Cmder{p.HSet(ctx, k, "e:"+eventID, "1"), p.Do(ctx, "PEXPIRE", k, s.o.LetterTTL.Milliseconds(), "NX")}
	})
	return err
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
	if len(m) == 0 {
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
// letter, so versions go out in order.
func (s *Store) LockSync(ctx context.Context, citizen, messageID string, platform event.Platform, ttl time.Duration) (bool, error) {
	return s.rdb.SetNX(ctx, s.syncLockKey(citizen, messageID, string(platform)), "1", ttl).Result()
}

// UnlockSync releases LockSync's lock.
func (s *Store) UnlockSync(ctx context.Context, citizen, messageID string, platform event.Platform) error {
	return s.rdb.Del(ctx, s.syncLockKey(citizen, messageID, string(platform))).Err()
}

// AckSync records the version a platform acknowledged.
func (s *Store) AckSync(ctx context.Context, citizen, messageID string, platform event.Platform, version int64) error {
	return ackScript.Run(ctx, s.rdb, []string{s.letterKey(citizen, messageID)}, "a:"+string(platform), version).Err()
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
func (s *Store) SetExemption(ctx context.Context, citizen string, exempt bool, forward string, at time.Time, eventID string) (bool, error) {
	n, err := s.runScript(ctx, exemptionScript, []string{s.citizenKey(citizen), s.eventKey(citizen, eventID)},
		[]any{b2s(exempt), at.UnixMilli(), forward, s.o.EventTTL.Milliseconds()})
	if err != nil {
		return false, fmt.Errorf("exemption: %w", err)
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

// MarkRegistryEvent marks a citizen-level event processed.
func (s *Store) MarkRegistryEvent(ctx context.Context, citizen, eventID string) error {
	return s.rdb.Set(ctx, s.eventKey(citizen, eventID), "1", s.o.EventTTL).Err()
}

func (s *Store) heldKey(c string, ch channels.Name) string {
	return s.o.Prefix + ":{" + c + "}:held:" + string(ch)
}

// Hold adds a letter to a channel's held letters.
func (s *Store) Hold(ctx context.Context, citizen string, ch channels.Name, messageID string) (bool, error) {
	k := s.heldKey(citizen, ch)
	var n *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.RPush(ctx, k, messageID)
		p.Expire(ctx, k, 7*24*time.Hour)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("hold: %w", err)
	}
	return n.Val() == 1, nil
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

func encodeOutcome(o dispatcher.Outcome) string {
	return strings.Join([]string{"1", strconv.FormatInt(o.At.UnixMilli(), 10), string(o.Channel), o.App, o.Result,
		o.Reason, o.Kind, o.Code, o.ProviderID, strconv.Itoa(o.Attempt), strconv.FormatInt(o.DurationMS, 10)}, outcomeSep)
}

func decodeOutcome(v string) (dispatcher.Outcome, bool) {
	f := strings.Split(v, outcomeSep)
	if len(f) != 11 || f[0] != "1" {
		return dispatcher.Outcome{}, false
	}
	ms, _ := strconv.ParseInt(f[1], 10, 64)
	attempt, _ := strconv.Atoi(f[9])
	dur, _ := strconv.ParseInt(f[10], 10, 64)
	return dispatcher.Outcome{At: time.UnixMilli(ms).UTC(), Channel: channels.Name(f[2]), App: f[3], Result: f[4],
		Reason: f[5], Kind: f[6], Code: f[7], ProviderID: f[8], Attempt: attempt, DurationMS: dur}, true
}
