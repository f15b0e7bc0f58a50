package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

var (
	oldSealKey = []byte("old-seal-key-0123456789-0123456789")
	newSealKey = []byte("new-seal-key-0123456789-0123456789")
	tagKey     = []byte("test-pseudonymisation-key-0123456789")
)

func sealer(t *testing.T, cur, prev []byte) *seal.Sealer {
	t.Helper()
	s, err := seal.New(seal.Keys{Current: cur, Previous: prev, Tag: tagKey})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openStore(t *testing.T, env *redistest.Env, s *seal.Sealer) *redisstore.Store {
	t.Helper()
	st := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix, Sealer: s})
	t.Cleanup(func() { st.Close() })
	return st
}

const (
	anna, bo  = "cit-anna", "cit-bo"
	annaEmail = "anna.jensen@example.dk"
	annaPhone = "+4520304050"
	annaAddr  = "Vestergade 12, 1456 København K"
	annaToken = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
)

func registerAnna(t *testing.T, st *redisstore.Store) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	email, mobile, addr := annaEmail, annaPhone, annaAddr
	if _, err := st.UpdateContact(ctx, dispatcher.ContactWrite{Citizen: anna, At: now,
		Contact: &event.ContactData{Email: &email, Mobile: &mobile, Address: &addr}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetDevice(ctx, dispatcher.DeviceWrite{Citizen: anna, Device: dispatcher.Device{App: "mit.dk",
		Provider: "apns", Token: annaToken, Environment: "production", RegisteredAt: now}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetExemption(ctx, dispatcher.ExemptionWrite{Citizen: anna, Exempt: true, Forward: "Postboks 7, 9990 Skagen", At: now}); err != nil {
		t.Fatal(err)
	}
}

func citizen(t *testing.T, st *redisstore.Store, key string) (*dispatcher.Citizen, error) {
	t.Helper()
	v, err := st.Load(context.Background(), key, "msg-1")
	return v.Citizen, err
}

// noData fails the test when err names any of Anna's contact data or
// any part of a sealed value.
func noData(t *testing.T, err error, sealed ...string) {
	t.Helper()
	for _, s := range append([]string{annaEmail, "anna", annaPhone, "20304050", "Vestergade", annaToken, "Postboks"}, sealed...) {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q names %q", err, s)
		}
	}
}

func TestContactDataIsSealedAndOpens(t *testing.T) {
	t.Parallel()
	env := redistest.New(t)
	st := openStore(t, env, sealer(t, newSealKey, nil))
	registerAnna(t, st)
	c, err := citizen(t, st, anna)
	if err != nil {
		t.Fatal(err)
	}
	if c.Email != annaEmail || c.Mobile != annaPhone || c.Address != annaAddr || c.Forward != "Postboks 7, 9990 Skagen" ||
		len(c.Devices) != 1 || c.Devices[0].Token != annaToken || c.Devices[0].App != "mit.dk" {
		t.Fatalf("citizen %+v", c)
	}
	for _, l := range env.Leaks(t, annaEmail, "20304050", "Vestergade", annaToken, "Postboks") {
		t.Error(l)
	}
	// Unregistering finds the token's field by its tag.
	if _, err := st.SetDevice(context.Background(), dispatcher.DeviceWrite{Citizen: anna, Remove: true,
		Device: dispatcher.Device{Provider: "apns", Token: annaToken}}); err != nil {
		t.Fatal(err)
	}
	if c, _ := citizen(t, st, anna); len(c.Devices) != 0 {
		t.Errorf("devices after unregistering: %+v", c.Devices)
	}
}

// TestSealedValueMovedToAnotherCitizenDoesNotOpen copies each of Anna's
// sealed values into Bo's record: none opens there, and the error names
// no data.
func TestSealedValueMovedToAnotherCitizenDoesNotOpen(t *testing.T) {
	t.Parallel()
	env := redistest.New(t)
	st := openStore(t, env, sealer(t, newSealKey, nil))
	registerAnna(t, st)
	ctx := context.Background()
	annaKey, boKey := env.Prefix+":{"+anna+"}:c", env.Prefix+":{"+bo+"}:c"
	m, err := env.Client.HGetAll(ctx, annaKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for f, v := range m {
		if f != "email" && f != "mobile" && f != "addr" && f != "fwd" && !strings.HasPrefix(f, "dev:") {
			continue
		}
		moved++
		env.Client.Del(ctx, boKey)
		env.Client.HSet(ctx, boKey, f, v)
		c, err := citizen(t, st, bo)
		if err == nil {
			t.Errorf("field %s copied to another citizen opens: %+v", f, c)
			continue
		}
		if !errors.Is(err, seal.ErrOpen) {
			t.Errorf("field %s: %v, want ErrOpen", f, err)
		}
		noData(t, err, v[6:])
	}
	if moved != 5 {
		t.Fatalf("moved %d fields, want 5 (email, mobile, addr, fwd, a device)", moved)
	}
}

// TestTamperedValueIsAnError: a changed sealed value is an error of the
// look-up that names no personal data.
func TestTamperedValueIsAnError(t *testing.T) {
	t.Parallel()
	env := redistest.New(t)
	st := openStore(t, env, sealer(t, newSealKey, nil))
	registerAnna(t, st)
	ctx := context.Background()
	k := env.Prefix + ":{" + anna + "}:c"
	v, _ := env.Client.HGet(ctx, k, "email").Result()
	b := []byte(v)
	i := len(b) - 5
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	env.Client.HSet(ctx, k, "email", string(b))
	_, err := citizen(t, st, anna)
	if !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("tampered email: %v, want ErrOpen", err)
	}
	noData(t, err, v[6:], string(b[6:]))
	if !strings.Contains(err.Error(), "email") {
		t.Errorf("error %q does not name the field", err)
	}
	// A device value whose token is not sealed is refused too.
	env.Client.HSet(ctx, k, "email", v)
	for f := range env.Client.HGetAll(ctx, k).Val() {
		if strings.HasPrefix(f, "dev:") {
			env.Client.HSet(ctx, k, f, "mit.dk|production|1|"+annaToken)
		}
	}
	if _, err := citizen(t, st, anna); !errors.Is(err, seal.ErrNotSealed) {
		t.Fatalf("device with a token in clear: %v, want ErrNotSealed", err)
	} else {
		noData(t, err)
	}
}

// TestRemoveAddressComparesOpenedValue: a gone address is removed only
// while the record holds that address (compared opened, in Go).
func TestRemoveAddressComparesOpenedValue(t *testing.T) {
	t.Parallel()
	env := redistest.New(t)
	st := openStore(t, env, sealer(t, newSealKey, nil))
	registerAnna(t, st)
	ctx := context.Background()
	later := time.Now().Add(time.Hour)
	if ok, err := st.RemoveAddress(ctx, anna, channels.Address{Channel: channels.Email, Value: "other@example.dk"}, later); err != nil || ok {
		t.Fatalf("another address removed: %v, %v", ok, err)
	}
	if ok, err := st.RemoveAddress(ctx, anna, channels.Address{Channel: channels.Email, Value: annaEmail}, later); err != nil || !ok {
		t.Fatalf("the gone address kept: %v, %v", ok, err)
	}
	if ok, err := st.RemoveAddress(ctx, anna, channels.Address{Channel: channels.APNs, Value: annaToken}, later); err != nil || !ok {
		t.Fatalf("the gone token kept: %v, %v", ok, err)
	}
	c, _ := citizen(t, st, anna)
	if c.Email != "" || len(c.Devices) != 0 || c.Mobile != annaPhone {
		t.Errorf("after removal: %+v", c)
	}
}

// TestResealRotatesEveryValue: values under the old key open with it as
// previous key; Reseal moves every one (and the values stored before
// sealing) to the new key, after which the new key alone opens them all.
func TestResealRotatesEveryValue(t *testing.T) {
	t.Parallel()
	env := redistest.New(t)
	ctx := context.Background()
	registerAnna(t, openStore(t, env, sealer(t, oldSealKey, nil)))
	// Bo's record from before sealing: plain values, the token in the
	// field's name.
	boKey := env.Prefix + ":{" + bo + "}:c"
	env.Client.HSet(ctx, boKey, "email", "bo@example.dk", "mobile", "+4520405060", "lang", "da",
		"dev:fcm:fcm-token-bo-0001", "e-boks|production|1700000000000")

	// Carol's email was tampered with: it is counted and left alone.
	carolKey := env.Prefix + ":{cit-carol}:c"
	bad := sealer(t, oldSealKey, nil).SealCompact("cit-anna", "email", "carol@example.dk")
	env.Client.HSet(ctx, carolKey, "email", bad)

	both := openStore(t, env, sealer(t, newSealKey, oldSealKey))
	for _, who := range []string{anna, bo} {
		if _, err := citizen(t, both, who); err != nil {
			t.Fatalf("%s before reseal: %v", who, err)
		}
	}
	// A device from before sealing is found by its token and can go.
	env.Client.HSet(ctx, boKey, "dev:apns:b0b0b0b0", "mit.dk|production|1700000000000")
	if ok, err := both.RemoveAddress(ctx, bo, channels.Address{Channel: channels.APNs, Value: "b0b0b0b0"}, time.Now()); err != nil || !ok {
		t.Fatalf("RemoveAddress of a device from before sealing: %v, %v", ok, err)
	}
	// A run in steps of a few keys, each saving its cursor.
	total := reseal(t, both, 10, true)
	if total.Citizens != 3 || total.Resealed != 8 || total.Failed != 1 { // Anna 5, Bo 3, Carol's email fails
		t.Errorf("reseal: %+v, want 3 citizens, 8 values, 1 failed", total)
	}
	if v, _ := env.Client.HGet(ctx, carolKey, "email").Result(); v != bad {
		t.Error("a value that does not open was changed")
	}
	if saved, _ := both.ResealState(ctx); saved != 0 {
		t.Errorf("cursor %d kept after the end", saved)
	}
	// Again: nothing left to do.
	if again := reseal(t, both, 1000, false); again.Resealed != 0 || again.Citizens != 3 {
		t.Errorf("second reseal: %+v", again)
	}
	only := openStore(t, env, sealer(t, newSealKey, nil))
	a, err := citizen(t, only, anna)
	if err != nil || a.Email != annaEmail || a.Mobile != annaPhone || a.Address != annaAddr || len(a.Devices) != 1 ||
		a.Devices[0].Token != annaToken {
		t.Fatalf("Anna under the new key alone: %+v, %v", a, err)
	}
	b, err := citizen(t, only, bo)
	if err != nil || b.Email != "bo@example.dk" || len(b.Devices) != 1 || b.Devices[0].Token != "fcm-token-bo-0001" ||
		b.Devices[0].RegisteredAt.UnixMilli() != 1700000000000 {
		t.Fatalf("Bo under the new key alone: %+v, %v", b, err)
	}
	for _, l := range env.Leaks(t, "bo@example.dk", "20405060", "fcm-token-bo-0001", annaEmail, annaToken) {
		t.Error(l)
	}
}

// reseal runs Reseal to the end from the start and sums its steps; with
// check, each step's cursor must be the one saved.
func reseal(t *testing.T, st *redisstore.Store, count int64, check bool) redisstore.ResealProgress {
	t.Helper()
	ctx := context.Background()
	var total redisstore.ResealProgress
	for cursor := uint64(0); ; {
		p, err := st.Reseal(ctx, cursor, count)
		if err != nil {
			t.Fatal(err)
		}
		total.Citizens += p.Citizens
		total.Resealed += p.Resealed
		total.Failed += p.Failed
		if p.Done {
			return total
		}
		if saved, _ := st.ResealState(ctx); check && saved != p.Cursor {
			t.Fatalf("saved cursor %d, want %d", saved, p.Cursor)
		}
		cursor = p.Cursor
	}
}

// TestNewRequiresSealer: a Store without a Sealer is a programming error,
// caught at once, never a store that writes contact data in clear.
func TestNewRequiresSealer(t *testing.T) {
	env := redistest.New(t)
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "Sealer is required") {
			t.Errorf("New without a Sealer: recovered %v, want a panic naming the Sealer", r)
		}
	}()
	st := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix})
	st.Close()
}
