package redisstore_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// A store call whose connection drops after Redis ran it and before its
// reply came is run again by go-redis (dropProxy). The second run must
// give the caller the first run's answer: these calls change what they
// read, so a plain second run would answer differently.

// TestApplyStateAfterRetry: a read that changed the letter must say so
// when run again, or the other platforms are never told (no fan-out).
func TestApplyStateAfterRetry(t *testing.T) {
	s, direct, px := dropStore(t)
	ctx := t.Context()
	at := time.Now().Truncate(time.Millisecond)
	if _, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: replayCitizen, MessageID: "msg-1",
		Arrive: &dispatcher.Arrival{Meta: replayLetter("msg-1", at)}}); err != nil {
		t.Fatal(err)
	}
	letter := "pb:{" + replayCitizen + "}:m:msg-1"
	px.arm([]byte("ev-drop"), func() bool { return direct.HGet(ctx, letter, "r").Val() == "1" })
	w := dispatcher.StateWrite{Citizen: replayCitizen, MessageID: "msg-1", Read: true, At: at.Add(time.Second),
		Platform: event.EBoks, Guard: dispatcher.EventRef{Citizen: replayCitizen, MessageID: "msg-1", ID: "ev-drop"}}
	res, err := s.ApplyState(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	px.mustHaveDropped(1)
	if !res.Changed || res.Correct || res.Seen || !res.State.Read || res.State.Version != 1 || res.State.Unread != 0 ||
		!res.State.Received || res.State.ChangedBy != event.EBoks {
		t.Errorf("ApplyState run twice = %+v; want changed, read, version 1, unread 0", res)
	}
	// A later copy of the event before its mark gets the same answer.
	if again, err := s.ApplyState(ctx, w); err != nil || !reflect.DeepEqual(again, res) {
		t.Errorf("ApplyState again = %+v, %v; want %+v", again, err, res)
	}
}

// TestApplyReportAfterRetry: a report applied once must say so when run
// again (the caller acts on an applied final report: a dead address is
// removed), and its trail entry is there once.
func TestApplyReportAfterRetry(t *testing.T) {
	s, direct, px := dropStore(t)
	ctx := t.Context()
	at := time.Now().Truncate(time.Millisecond)
	if _, err := s.Write(ctx, dispatcher.LetterWrite{Citizen: replayCitizen, MessageID: "msg-1",
		Arrive: &dispatcher.Arrival{Meta: replayLetter("msg-1", at)}, Track: []string{"d-drop"}}); err != nil {
		t.Fatal(err)
	}
	letter := "pb:{" + replayCitizen + "}:m:msg-1"
	px.arm([]byte("d-drop"), func() bool { return direct.HExists(ctx, letter, "r:d-drop").Val() })
	entry := dispatcher.Outcome{At: at.Add(time.Second), DeliveryID: "d-drop", Channel: channels.SMS,
		Result: dispatcher.ResultReport, Reason: "UNDELIVERABLE"}
	applied, err := s.ApplyReport(ctx, dispatcher.ReportWrite{Citizen: replayCitizen, MessageID: "msg-1",
		DeliveryID: "d-drop", Status: "UNDELIVERABLE", Final: true, Entry: entry})
	if err != nil {
		t.Fatal(err)
	}
	px.mustHaveDropped(1)
	if !applied {
		t.Error("ApplyReport run twice: not applied, want applied")
	}
	if got, want := trailOf(t, s, "msg-1"), []string{"report d-drop"}; !equalLines(got, want) {
		t.Errorf("trail = %q, want %q", got, want)
	}
	// Another copy of the report still applies nothing.
	if again, err := s.ApplyReport(ctx, dispatcher.ReportWrite{Citizen: replayCitizen, MessageID: "msg-1",
		DeliveryID: "d-drop", Status: "UNDELIVERABLE", Final: true, Entry: entry}); err != nil || again {
		t.Errorf("a copy of the report = %v, %v; want not applied", again, err)
	}
}

// TestCheckCodeAfterRetry: an attempt run twice counts once, and the right
// code run twice answers "confirmed", not "no code pending".
func TestCheckCodeAfterRetry(t *testing.T) {
	s, direct, px := dropStore(t)
	ctx := t.Context()
	at := time.Now().Truncate(time.Millisecond)
	citizen, code := "pb:{"+replayCitizen+"}:c", "pb:{"+replayCitizen+"}:cc:email"
	if err := direct.HSet(ctx, citizen, "eh", "fp-1").Err(); err != nil {
		t.Fatal(err)
	}
	if a, err := s.IssueCode(ctx, dispatcher.CodeWrite{Citizen: replayCitizen, Channel: channels.Email, Fingerprint: "fp-1",
		MAC: "mac-right", Issuer: "task-1", At: at}); err != nil || a != dispatcher.CodeIssued {
		t.Fatalf("IssueCode = %v, %v", a, err)
	}
	check := func(mac string) (dispatcher.CodeAnswer, int) {
		t.Helper()
		a, left, err := s.CheckCode(ctx, dispatcher.CodeCheck{Citizen: replayCitizen, Channel: channels.Email, MAC: mac, At: at})
		if err != nil {
			t.Fatal(err)
		}
		return a, left
	}

	px.arm([]byte("mac-wrong"), func() bool { return direct.HGet(ctx, code, "n").Val() == "1" })
	a, left := check("mac-wrong")
	px.mustHaveDropped(1)
	if a != dispatcher.AnswerWrong || left != dispatcher.CodeAttempts-1 {
		t.Errorf("a wrong code run twice = %v, %d left; want wrong, %d left", a, left, dispatcher.CodeAttempts-1)
	}
	if n := direct.HGet(ctx, code, "n").Val(); n != "1" {
		t.Errorf("attempts counted = %s, want 1", n)
	}

	px.arm([]byte("mac-right"), func() bool { return direct.HGet(ctx, citizen, "ec").Val() == "1" })
	a, _ = check("mac-right")
	px.mustHaveDropped(2)
	if a != dispatcher.AnswerConfirmed {
		t.Errorf("the right code run twice = %v, want confirmed (%v)", a, dispatcher.AnswerConfirmed)
	}
	if a, _ := check("mac-right"); a != dispatcher.AnswerNone {
		t.Errorf("the right code again = %v, want none: it was used up", a)
	}
}

// TestHoldAfterRetry: a letter held by a call run twice is held once, and
// the first letter held says so.
func TestHoldAfterRetry(t *testing.T) {
	s, direct, px := dropStore(t)
	ctx := t.Context()
	held := "pb:{" + replayCitizen + "}:held:sms"
	// A first call loads the scripts: the armed one must not meet NOSCRIPT.
	if _, err := s.Hold(ctx, replayCitizen, channels.Email, "msg-0"); err != nil {
		t.Fatal(err)
	}
	px.arm([]byte("msg-drop"), func() bool { return direct.Exists(ctx, held).Val() == 1 })
	first, err := s.Hold(ctx, replayCitizen, channels.SMS, "msg-drop")
	if err != nil {
		t.Fatal(err)
	}
	px.mustHaveDropped(1)
	if !first {
		t.Error("the first letter held, run twice: not first")
	}
	if ids, err := s.Held(ctx, replayCitizen, channels.SMS); err != nil || !equalLines(ids, []string{"msg-drop"}) {
		t.Errorf("Held = %q, %v; want [msg-drop]", ids, err)
	}
}
