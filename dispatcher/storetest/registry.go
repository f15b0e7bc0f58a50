package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// The citizen registry: contact data, devices, gone addresses, exemption.
var registryCases = []Case{
	{"UpdateContact", "sets the given fields, keeps absent ones, deletes empty ones", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		must(t, updateContact(ctx, s, alice, &event.ContactData{Email: ptr("a@example.dk"), Mobile: ptr("+4512345678"),
			Language: ptr("da"), Address: ptr("Vej 1")}, at, "ev-1"))
		must(t, updateContact(ctx, s, alice, &event.ContactData{Email: ptr("new@example.dk"), Mobile: ptr("")},
			at.Add(time.Second), "ev-2"))
		c := registered(t, s, alice)
		if c.Email != "new@example.dk" || c.Mobile != "" || c.Language != "da" || c.Address != "Vej 1" {
			t.Errorf("citizen = %+v; want the new email, no mobile, language and address kept", c)
		}
	}},
	{"UpdateContact", "an older event changes nothing, and is marked", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		must(t, updateContact(ctx, s, alice, &event.ContactData{Email: ptr("new@example.dk")}, at, "ev-new"))
		must(t, updateContact(ctx, s, alice, &event.ContactData{Email: ptr("old@example.dk"), Mobile: ptr("+4511111111")},
			at.Add(-time.Minute), "ev-old"))
		if c := registered(t, s, alice); c.Email != "new@example.dk" || c.Mobile != "" {
			t.Errorf("citizen = %+v; an older event was applied", c)
		}
		if !seen(t, s, alice, "", "ev-old") {
			t.Error("the older event is not marked processed")
		}
	}},
	{"UpdateContact", "a re-run of a processed event changes nothing", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		must(t, updateContact(ctx, s, alice, &event.ContactData{Email: ptr("first@example.dk")}, at, "ev-1"))
		must(t, updateContact(ctx, s, alice, &event.ContactData{Email: ptr("second@example.dk")}, at.Add(time.Second), "ev-2"))
		must(t, updateContact(ctx, s, alice, &event.ContactData{Email: ptr("rerun@example.dk")}, at.Add(time.Hour), "ev-1"))
		if c := registered(t, s, alice); c.Email != "second@example.dk" {
			t.Errorf("email = %q after a re-run of ev-1, want second@example.dk", c.Email)
		}
	}},

	{"SetDevice", "adds a token and refreshes it in place", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		must(t, registerDevice(ctx, s, alice, dispatcher.Device{App: "e-boks", Provider: "apns", Token: "tok",
			Environment: "sandbox", RegisteredAt: at}, "ev-1"))
		refreshed := dispatcher.Device{App: "mit.dk", Provider: "apns", Token: "tok", Environment: "production",
			RegisteredAt: at.Add(time.Hour)}
		must(t, registerDevice(ctx, s, alice, refreshed, "ev-2"))
		c := registered(t, s, alice)
		if diff := cmp.Diff([]dispatcher.Device{refreshed}, c.Devices, equalTime); diff != "" {
			t.Errorf("devices (-want +got):\n%s", diff)
		}
	}},
	{"SetDevice", "a re-run of a processed event changes nothing", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		d := dispatcher.Device{App: "e-boks", Provider: "fcm", Token: "tok", Environment: "production", RegisteredAt: at}
		must(t, registerDevice(ctx, s, alice, d, "ev-reg"))
		must(t, unregisterDevice(ctx, s, alice, d, "ev-unreg"))
		must(t, registerDevice(ctx, s, alice, d, "ev-reg"))
		if c := registered(t, s, alice); len(c.Devices) != 0 {
			t.Errorf("devices = %+v; a re-run registered the token again", c.Devices)
		}
	}},
	{"SetDevice", "removes that token only; an unknown token is no error", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		keep := dispatcher.Device{App: "e-boks", Provider: "apns", Token: "keep", Environment: "production", RegisteredAt: at}
		must(t, registerDevice(ctx, s, alice, keep, "ev-1"))
		must(t, registerDevice(ctx, s, alice, dispatcher.Device{App: "e-boks", Provider: "apns", Token: "drop", RegisteredAt: at}, "ev-2"))
		must(t, unregisterDevice(ctx, s, alice, dispatcher.Device{Provider: "apns", Token: "drop"}, "ev-3"))
		must(t, unregisterDevice(ctx, s, alice, dispatcher.Device{Provider: "fcm", Token: "never"}, "ev-4"))
		if diff := cmp.Diff([]dispatcher.Device{keep}, registered(t, s, alice).Devices, equalTime); diff != "" {
			t.Errorf("devices (-want +got):\n%s", diff)
		}
		if !seen(t, s, alice, "", "ev-4") {
			t.Error("unregistering an unknown token did not mark its event")
		}
	}},

	{"RemoveAddress", "an address goes unless registered after the provider's word", removeAddress},
	{"RemoveAddress", "an address with no registry entry is an error", func(t *testing.T, s dispatcher.Store) {
		if _, err := s.RemoveAddress(t.Context(), alice, channels.Address{Channel: channels.Paper, Value: "Vej 1"}, now()); err == nil {
			t.Error("RemoveAddress(paper) succeeded, want an error")
		}
	}},

	{"SetExemption", "grant with a forwarding address, then revoke", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		must(t, updateContact(ctx, s, alice, &event.ContactData{Address: ptr("Vej 1")}, at, "ev-c"))
		if ok, err := setExemption(ctx, s, alice, true, "Postboks 7", at, "ev-1"); err != nil || !ok {
			t.Fatalf("grant: applied %v, %v", ok, err)
		}
		if c := registered(t, s, alice); !c.Exempt || c.Forward != "Postboks 7" || c.Address != "Vej 1" {
			t.Errorf("after the grant: %+v", c)
		}
		if ok, err := setExemption(ctx, s, alice, false, "", at.Add(time.Second), "ev-2"); err != nil || !ok {
			t.Fatalf("revoke: applied %v, %v", ok, err)
		}
		if c := registered(t, s, alice); c.Exempt || c.Forward != "" || c.Address != "Vej 1" {
			t.Errorf("after the revoke: %+v", c)
		}
	}},
	{"SetExemption", "an older change is not applied, and is marked", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		if ok, err := setExemption(ctx, s, alice, true, "Postboks 7", at, "ev-grant"); err != nil || !ok {
			t.Fatalf("grant: applied %v, %v", ok, err)
		}
		if ok, err := setExemption(ctx, s, alice, false, "", at.Add(-time.Second), "ev-old-revoke"); err != nil || ok {
			t.Errorf("older revoke: applied %v, %v; want not applied", ok, err)
		}
		if c := registered(t, s, alice); !c.Exempt || c.Forward != "Postboks 7" {
			t.Errorf("citizen = %+v; an older revoke was applied", c)
		}
		if !seen(t, s, alice, "", "ev-old-revoke") {
			t.Error("the older revoke is not marked processed")
		}
	}},
	{"SetExemption", "a re-run of a processed event is not applied", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		if ok, err := setExemption(ctx, s, alice, true, "", at, "ev-1"); err != nil || !ok {
			t.Fatalf("grant: applied %v, %v", ok, err)
		}
		if ok, err := setExemption(ctx, s, alice, false, "", at.Add(time.Second), "ev-2"); err != nil || !ok {
			t.Fatalf("revoke: applied %v, %v", ok, err)
		}
		if ok, err := setExemption(ctx, s, alice, true, "", at.Add(time.Hour), "ev-1"); err != nil || ok {
			t.Errorf("re-run: applied %v, %v; want not applied", ok, err)
		}
		if c := registered(t, s, alice); c.Exempt {
			t.Error("a re-run of the grant made the citizen exempt again")
		}
	}},
	{"SetConsent", "each platform's consent is its own: grant, revoke, and the time of the grant", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		if c := registered(t, s, alice); c.Consented(event.EBoks) || len(c.Consents) != 0 {
			t.Fatalf("a citizen without a consent event has consents %v; want none", c.Consents)
		}
		if ok, err := setConsent(ctx, s, alice, event.EBoks, true, at, "ev-1"); err != nil || !ok {
			t.Fatalf("grant e-boks: applied %v, %v", ok, err)
		}
		if ok, err := setConsent(ctx, s, alice, event.MitDK, true, at.Add(time.Second), "ev-2"); err != nil || !ok {
			t.Fatalf("grant mit.dk: applied %v, %v", ok, err)
		}
		want := map[event.Platform]time.Time{event.EBoks: at, event.MitDK: at.Add(time.Second)}
		if diff := cmp.Diff(want, registered(t, s, alice).Consents, equalTime); diff != "" {
			t.Errorf("consents (-want +got):\n%s", diff)
		}
		if ok, err := setConsent(ctx, s, alice, event.EBoks, false, at.Add(2*time.Second), "ev-3"); err != nil || !ok {
			t.Fatalf("revoke e-boks: applied %v, %v", ok, err)
		}
		c := registered(t, s, alice)
		if c.Consented(event.EBoks) || !c.Consented(event.MitDK) {
			t.Errorf("after revoking e-boks: consents %v; want mit.dk only", c.Consents)
		}
		if c := registered(t, s, bob); len(c.Consents) != 0 {
			t.Errorf("another citizen has consents %v", c.Consents)
		}
	}},
	{"SetConsent", "last writer wins by time, a revocation wins a tie, in any order; stale events are marked", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		if ok, err := setConsent(ctx, s, alice, event.EBoks, false, at, "ev-revoke"); err != nil || !ok {
			t.Fatalf("revoke: applied %v, %v", ok, err)
		}
		if ok, err := setConsent(ctx, s, alice, event.EBoks, true, at.Add(-time.Second), "ev-old-grant"); err != nil || ok {
			t.Errorf("an older grant: applied %v, %v; want stale", ok, err)
		}
		if ok, err := setConsent(ctx, s, alice, event.EBoks, true, at, "ev-tie-grant"); err != nil || ok {
			t.Errorf("a grant at the revocation's time: applied %v, %v; want stale (a revocation wins a tie)", ok, err)
		}
		if registered(t, s, alice).Consented(event.EBoks) {
			t.Error("an older or tied grant gave consent after a revocation")
		}
		if !seen(t, s, alice, "", "ev-old-grant") || !seen(t, s, alice, "", "ev-tie-grant") {
			t.Error("stale consent events are not marked processed")
		}
		// The other order: the grant first, the tied revocation after.
		if ok, err := setConsent(ctx, s, bob, event.MitDK, true, at, "ev-b1"); err != nil || !ok {
			t.Fatalf("grant: applied %v, %v", ok, err)
		}
		if ok, err := setConsent(ctx, s, bob, event.MitDK, false, at, "ev-b2"); err != nil || !ok {
			t.Errorf("a revocation at the grant's time: applied %v, %v; want applied", ok, err)
		}
		if registered(t, s, bob).Consented(event.MitDK) {
			t.Error("a tied revocation did not win")
		}
	}},
	{"SetConsent", "a re-run of a processed event is not applied", func(t *testing.T, s dispatcher.Store) {
		at := now()
		ctx := t.Context()
		if ok, err := setConsent(ctx, s, alice, event.EBoks, true, at, "ev-1"); err != nil || !ok {
			t.Fatalf("grant: applied %v, %v", ok, err)
		}
		if ok, err := setConsent(ctx, s, alice, event.EBoks, false, at.Add(time.Second), "ev-2"); err != nil || !ok {
			t.Fatalf("revoke: applied %v, %v", ok, err)
		}
		if ok, err := setConsent(ctx, s, alice, event.EBoks, true, at.Add(time.Hour), "ev-1"); err != nil || ok {
			t.Errorf("re-run: applied %v, %v; want not applied", ok, err)
		}
		if registered(t, s, alice).Consented(event.EBoks) {
			t.Error("a re-run of the grant gave consent again")
		}
	}},
}

func removeAddress(t *testing.T, s dispatcher.Store) {
	at := now()
	ctx := t.Context()
	for _, tc := range []struct {
		name        string
		to          channels.Address
		goneAt      time.Time
		wantRemoved bool
	}{
		{"email, gone after it was set", channels.Address{Channel: channels.Email, Value: "a@example.dk"}, at.Add(time.Second), true},
		{"email, gone as it was set", channels.Address{Channel: channels.Email, Value: "a@example.dk"}, at, true},
		{"email, set again after the provider's word", channels.Address{Channel: channels.Email, Value: "a@example.dk"}, at.Add(-time.Second), false},
		{"email, changed meanwhile", channels.Address{Channel: channels.Email, Value: "old@example.dk"}, at.Add(time.Hour), false},
		{"sms, gone after it was set", channels.Address{Channel: channels.SMS, Value: "+4512345678"}, at.Add(time.Second), true},
		{"sms, set again after", channels.Address{Channel: channels.SMS, Value: "+4512345678"}, at.Add(-time.Second), false},
		{"apns, gone after registration", channels.Address{Channel: channels.APNs, Value: "a-tok", App: "e-boks"}, at.Add(time.Second), true},
		{"apns, registered again after", channels.Address{Channel: channels.APNs, Value: "a-tok", App: "e-boks"}, at.Add(-time.Second), false},
		{"fcm, gone after registration", channels.Address{Channel: channels.FCM, Value: "f-tok", App: "mit.dk"}, at.Add(time.Second), true},
		{"fcm, unknown token", channels.Address{Channel: channels.FCM, Value: "nobody"}, at.Add(time.Second), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			citizen := "cit-" + tc.name
			must(t, updateContact(ctx, s, citizen, &event.ContactData{Email: ptr("a@example.dk"), Mobile: ptr("+4512345678")}, at, "ev-c"))
			for _, d := range []dispatcher.Device{
				{App: "e-boks", Provider: "apns", Token: "a-tok", Environment: "production", RegisteredAt: at},
				{App: "mit.dk", Provider: "fcm", Token: "f-tok", Environment: "production", RegisteredAt: at},
			} {
				must(t, registerDevice(ctx, s, citizen, d, "ev-"+d.Token))
			}
			removed, err := s.RemoveAddress(ctx, citizen, tc.to, tc.goneAt)
			must(t, err)
			if removed != tc.wantRemoved {
				t.Errorf("removed = %v, want %v", removed, tc.wantRemoved)
			}
			c := registered(t, s, citizen)
			has := map[channels.Name]bool{channels.Email: c.Email == "a@example.dk", channels.SMS: c.Mobile == "+4512345678"}
			for _, d := range c.Devices {
				has[channels.Name(d.Provider)] = true
			}
			for _, ch := range []channels.Name{channels.Email, channels.SMS, channels.APNs, channels.FCM} {
				if want := !(removed && ch == tc.to.Channel); has[ch] != want {
					t.Errorf("after removal: %s registered %v, want %v", ch, has[ch], want)
				}
			}
		})
	}
}
