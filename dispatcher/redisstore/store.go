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
//	                        state, d:<delivery id> = final result
//	P:{C}:t:<msg>    list   the letter's delivery trail (JSON entries)
//	P:{C}:e:<event>  string an event's processed mark
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
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
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
}

// Store is the Redis implementation of dispatcher.Store.
type Store struct {
	rdb redis.UniversalClient
	o   Options
}

var _ dispatcher.Store = (*Store)(nil)

// New returns a Store on rdb.
func New(rdb redis.UniversalClient, o Options) *Store {
	if o.Prefix == "" {
		o.Prefix = "pb"
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
	return &Store{rdb: rdb, o: o}
}

// Client returns the Redis client.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

func (s *Store) citizenKey(c string) string   { return s.o.Prefix + ":{" + c + "}:c" }
func (s *Store) letterKey(c, m string) string { return s.o.Prefix + ":{" + c + "}:m:" + m }
func (s *Store) trailKey(c, m string) string  { return s.o.Prefix + ":{" + c + "}:t:" + m }
func (s *Store) eventKey(c, e string) string  { return s.o.Prefix + ":{" + c + "}:e:" + e }
func (s *Store) indexKey(m string) string     { return s.o.Prefix + ":msg:" + m }

// Ping checks Redis answers.
func (s *Store) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// EventSeen reports whether the event was processed.
func (s *Store) EventSeen(ctx context.Context, citizen, eventID string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.eventKey(citizen, eventID)).Result()
	if err != nil {
		return false, fmt.Errorf("event mark: %w", err)
	}
	return n == 1, nil
}

// runScript runs a script in a pipeline with extra commands, loading the
// script if Redis lost it (after a restart).
func (s *Store) runScript(ctx context.Context, sc *redis.Script, keys []string, args []any, extra func(redis.Pipeliner)) (any, error) {
	for try := 0; ; try++ {
		var cmd *redis.Cmd
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			cmd = sc.EvalSha(ctx, p, keys, args...)
			if extra != nil {
				extra(p)
			}
			return nil
		})
		if err != nil && try == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if lerr := sc.Load(ctx, s.rdb).Err(); lerr != nil {
				return nil, lerr
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		return cmd.Result()
	}
}

// ReceiveLetter stores a letter if new and returns the citizen and letter.
func (s *Store) ReceiveLetter(ctx context.Context, citizen string, l *dispatcher.Letter, eventID string) (*dispatcher.Citizen, *dispatcher.Letter, bool, error) {
	keys := []string{s.eventKey(citizen, eventID), s.citizenKey(citizen), s.letterKey(citizen, l.MessageID)}
	args := []any{l.SenderID, l.SenderName, string(l.SenderKind), string(l.Priority), l.Notification,
		l.ReceivedAt.UnixMilli(), b2s(l.Legal), s.o.LetterTTL.Milliseconds()}
	res, err := s.runScript(ctx, receiveScript, keys, args, func(p redis.Pipeliner) {
		p.Set(ctx, s.indexKey(l.MessageID), citizen, s.o.LetterTTL)
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("receive letter: %w", err)
	}
	if n, ok := res.(int64); ok && n == 1 {
		return nil, nil, true, nil
	}
	c, stored, err := s.decodePair(citizen, l.MessageID, res)
	return c, stored, false, err
}

// Load returns a citizen and one letter.
func (s *Store) Load(ctx context.Context, citizen, messageID string) (*dispatcher.Citizen, *dispatcher.Letter, error) {
	res, err := s.runScript(ctx, loadScript, []string{s.citizenKey(citizen), s.letterKey(citizen, messageID)}, nil, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("load letter: %w", err)
	}
	c, l, err := s.decodePair(citizen, messageID, res)
	if err == nil && l.SenderName == "" {
		return c, l, dispatcher.ErrNotFound
	}
	return c, l, err
}

func (s *Store) decodePair(citizen, messageID string, res any) (*dispatcher.Citizen, *dispatcher.Letter, error) {
	pair, ok := res.([]any)
	if !ok || len(pair) != 2 {
		return nil, nil, fmt.Errorf("unexpected script reply %T", res)
	}
	c := decodeCitizen(citizen, asMap(pair[0]))
	l := decodeLetter(messageID, asMap(pair[1]))
	return c, l, nil
}

func asMap(v any) map[string]string {
	flat, _ := v.([]any)
	m := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		val, _ := flat[i+1].(string)
		m[k] = val
	}
	return m
}

func decodeCitizen(key string, m map[string]string) *dispatcher.Citizen {
	c := &dispatcher.Citizen{Key: key, Email: m["email"], Mobile: m["mobile"], Language: m["lang"],
		Address: m["addr"], Exempt: m["x"] == "1"}
	for f, v := range m {
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
		SenderKind: dispatcher.SenderKind(m["sk"]), Priority: dispatcher.Priority(m["pr"]),
		Notification: m["nt"], Legal: m["lg"] == "1", Read: m["r"] == "1", ChangeBy: dispatcher.Platform(m["cb"])}
	l.ReceivedAt = msTime(m["at"])
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

// Record appends outcomes to the trail and marks final deliveries done.
func (s *Store) Record(ctx context.Context, citizen, messageID string, outs []dispatcher.Outcome, eventID string) error {
	markTTL := int64(0)
	mark := s.eventKey(citizen, "-")
	if eventID != "" {
		markTTL = s.o.EventTTL.Milliseconds()
		mark = s.eventKey(citizen, eventID)
	}
	args := make([]any, 0, 4+3*len(outs))
	args = append(args, s.o.LetterTTL.Milliseconds(), markTTL, s.o.TrailCap, len(outs))
	for _, o := range outs {
		entry, err := json.Marshal(o)
		if err != nil {
			return err
		}
		fin := ""
		if o.Final {
			fin = o.Result
		}
		args = append(args, o.DeliveryID, fin, entry)
	}
	keys := []string{s.letterKey(citizen, messageID), s.trailKey(citizen, messageID), mark}
	if _, err := s.runScript(ctx, recordScript, keys, args, nil); err != nil {
		return fmt.Errorf("record outcomes: %w", err)
	}
	return nil
}

// UpdateContact applies a contact.updated event.
func (s *Store) UpdateContact(ctx context.Context, citizen string, c *dispatcher.ContactData, at time.Time, eventID string) error {
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
	_, err := s.runScript(ctx, contactScript, []string{s.citizenKey(citizen), s.eventKey(citizen, eventID)}, args, nil)
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
	if _, err := s.runScript(ctx, deviceScript, keys, []any{field, val, s.o.EventTTL.Milliseconds()}, nil); err != nil {
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
	n, err := s.runScript(ctx, removeScript, []string{s.citizenKey(citizen)}, []any{field, goneAt.UnixMilli(), expect}, nil)
	if err != nil {
		return false, fmt.Errorf("remove address: %w", err)
	}
	return n == int64(1), nil
}

// Trail returns a letter's delivery trail.
func (s *Store) Trail(ctx context.Context, messageID string) ([]dispatcher.Outcome, error) {
	citizen, err := s.rdb.Get(ctx, s.indexKey(messageID)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, dispatcher.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("trail: %w", err)
	}
	raw, err := s.rdb.LRange(ctx, s.trailKey(citizen, messageID), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("trail: %w", err)
	}
	out := make([]dispatcher.Outcome, 0, len(raw))
	for _, r := range raw {
		var o dispatcher.Outcome
		if err := json.Unmarshal([]byte(r), &o); err != nil {
			return nil, fmt.Errorf("trail entry: %w", err)
		}
		out = append(out, o)
	}
	return out, nil
}
