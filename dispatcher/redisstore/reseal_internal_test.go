package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// TestResealNeverOverwritesANewerValue: a contact event that lands
// between Reseal's read and its write wins; the re-seal of the value it
// read changes nothing.
func TestResealNeverOverwritesANewerValue(t *testing.T) {
	t.Parallel()
	env := redistest.New(t)
	ctx := context.Background()
	tag := []byte("test-pseudonymisation-key-0123456789")
	old, _ := seal.New(seal.Keys{Current: []byte("old-seal-key-0123456789-0123456789"), Tag: tag})
	both, _ := seal.New(seal.Keys{Current: []byte("new-seal-key-0123456789-0123456789"),
		Previous: []byte("old-seal-key-0123456789-0123456789"), Tag: tag})
	s1 := New(env.Client, Options{Prefix: env.Prefix, Sealer: old})
	defer s1.Close()
	s2 := New(env.Client, Options{Prefix: env.Prefix, Sealer: both})
	defer s2.Close()
	first, second := "first@example.dk", "second@example.dk"
	if _, err := s1.UpdateContact(ctx, dispatcher.ContactWrite{Citizen: "c1", At: time.Now(),
		Contact: &event.ContactData{Email: &first}}); err != nil {
		t.Fatal(err)
	}
	args, failed := s2.resealArgs("c1", env.Client.HGetAll(ctx, s2.citizenKey("c1")).Val())
	if len(args) != 4 || failed != 0 {
		t.Fatalf("reseal args %d, failed %d", len(args), failed)
	}
	if _, err := s2.UpdateContact(ctx, dispatcher.ContactWrite{Citizen: "c1", At: time.Now().Add(time.Second),
		Contact: &event.ContactData{Email: &second}}); err != nil {
		t.Fatal(err)
	}
	n, err := resealScript.Run(ctx, env.Client, []string{s2.citizenKey("c1")}, args...).Int()
	if err != nil || n != 0 {
		t.Fatalf("reseal of a changed value: %d, %v; want 0", n, err)
	}
	v, err := s2.Load(ctx, "c1", "m")
	if err != nil || v.Citizen.Email != second {
		t.Fatalf("email after the reseal: %q, %v; want the newer %q", v.Citizen.Email, err, second)
	}
}
