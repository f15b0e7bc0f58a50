package dispatcher_test

import (
	"context"
	"sync"
	"testing"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// TestHandoffPinsAnInterruptedSendToItsProvider: a channel of several
// providers names the provider before each call (channels.Handoff); the
// dispatcher records it before the call is made, so that when the worker
// dies before the outcome is written, the re-send goes to that provider
// only (channels.Alert.Provider) — and the trail names it.
func TestHandoffPinsAnInterruptedSendToItsProvider(t *testing.T) {
	fail, crashed := failOnce(outcomeOf(channels.SMS), errCrash)
	var mu sync.Mutex
	var pinned []string
	var handedBeforeCall string
	h := newHarnessWith(t, func(c *dispatcher.Config, hh *harness) {
		c.Store = &crashingStore{Store: hh.store, fail: fail}
		c.Senders[channels.SMS] = channels.SenderFunc(func(ctx context.Context, to channels.Address, a channels.Alert) (channels.Receipt, error) {
			mu.Lock()
			pinned = append(pinned, a.Provider)
			first := len(pinned) == 1
			mu.Unlock()
			// The second provider takes it (the first refused it, say).
			if err := channels.Handoff(ctx, "sms-2"); err != nil {
				return channels.Receipt{}, err
			}
			if first {
				cpr, _ := event.ParseCPR(annaCPR)
				v, err := hh.store.Load(ctx, hh.keyer.CitizenKey(cpr), msgInterrupted)
				if err == nil {
					mu.Lock()
					handedBeforeCall = v.Letter.Handed[a.DeliveryID]
					mu.Unlock()
				}
			}
			return channels.Receipt{ProviderID: "gw2-1", Provider: "sms-2"}, nil
		})
	}, channels.SMS)
	registerNow(h, annaCPR)
	h.start()
	h.accept(letter("ev-handoff", msgInterrupted, annaCPR))
	h.waitFor("the SMS sent, its record lost, and sent again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return crashed.Load() && len(pinned) == 2
	})
	h.idle()
	mu.Lock()
	defer mu.Unlock()
	if handedBeforeCall != "sms-2" {
		t.Errorf("during the call the letter records the delivery handed to %q, want sms-2", handedBeforeCall)
	}
	if pinned[0] != "" || pinned[1] != "sms-2" {
		t.Errorf("providers asked for = %q, want the first free and the re-send pinned to sms-2", pinned)
	}
	trail := h.trail(msgInterrupted)
	if !hasEntry(trail, channels.SMS, dispatcher.ResultSent, dispatcher.ReasonResent) {
		t.Errorf("trail %+v: no re-sent SMS", trail)
	}
	for _, o := range trail {
		if o.Result == dispatcher.ResultSent && o.Provider != "sms-2" {
			t.Errorf("the trail's sent entry names provider %q, want sms-2", o.Provider)
		}
	}
}
