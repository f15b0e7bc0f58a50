package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// per is a per-channel count.
func per(email, sms int) map[string]int { return map[string]int{chEmail: email, chSMS: sms} }

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func TestCount(t *testing.T) {
	acked := []Letter{{MessageID: "a", Acked: true}, {MessageID: "b", Acked: true}, {MessageID: "c", Acked: true}}
	tests := []struct {
		name string
		rec  Record
		want Counts
	}{
		{
			name: "each letter once on each channel",
			rec: Record{Letters: acked[:2], Deliveries: []Delivery{
				{Letter: 0, Channel: chEmail, ProviderKey: "<x>"}, {Letter: 0, Channel: chSMS, ProviderKey: "1"},
				{Letter: 1, Channel: chEmail, ProviderKey: "<y>"}, {Letter: 1, Channel: chSMS, ProviderKey: "2"},
			}},
			want: Counts{Letters: 2, Acked: 2, Deliveries: 4, SMS: 2, DupRaw: per(0, 0), DupVisible: per(0, 0), DupUnmarked: per(0, 0)},
		},
		{
			name: "a resent email with the same Message-ID is a raw duplicate only",
			rec: Record{Letters: acked[:1], Deliveries: []Delivery{
				{Letter: 0, Channel: chEmail, ProviderKey: "<x>"}, {Letter: 0, Channel: chEmail, ProviderKey: "<x>"},
				{Letter: 0, Channel: chSMS, ProviderKey: "1"},
			}},
			want: Counts{Letters: 1, Acked: 1, Deliveries: 2, SMS: 1,
				DupRaw: per(1, 0), DupVisible: per(0, 0), DupUnmarked: per(1, 0)},
		},
		{
			name: "emails with two Message-IDs and a second SMS are visible duplicates",
			rec: Record{Letters: acked[:1], Deliveries: []Delivery{
				{Letter: 0, Channel: chEmail, ProviderKey: "<x>"}, {Letter: 0, Channel: chEmail, ProviderKey: "<z>"},
				{Letter: 0, Channel: chEmail, ProviderKey: "<z>"},
				{Letter: 0, Channel: chSMS, ProviderKey: "1"}, {Letter: 0, Channel: chSMS, ProviderKey: "2"},
			}},
			want: Counts{Letters: 1, Acked: 1, Deliveries: 2, SMS: 1,
				DupRaw: per(2, 1), DupVisible: per(1, 1), DupUnmarked: per(1, 1)},
		},
		{
			name: "a duplicate whose trail marks the re-send on its channel is not unmarked",
			rec: Record{Letters: acked[:1], Marked: map[int]map[string]bool{0: {chEmail: true}}, Deliveries: []Delivery{
				{Letter: 0, Channel: chEmail, ProviderKey: "<x>"}, {Letter: 0, Channel: chEmail, ProviderKey: "<x>"},
				{Letter: 0, Channel: chSMS, ProviderKey: "1"},
			}},
			want: Counts{Letters: 1, Acked: 1, Deliveries: 2, SMS: 1,
				DupRaw: per(1, 0), DupVisible: per(0, 0), DupUnmarked: per(0, 0)},
		},
		{
			name: "a re-send marked on another channel leaves the duplicate unmarked",
			rec: Record{Letters: acked[:1], Marked: map[int]map[string]bool{0: {chEmail: true}}, Deliveries: []Delivery{
				{Letter: 0, Channel: chEmail, ProviderKey: "<x>"},
				{Letter: 0, Channel: chSMS, ProviderKey: "1"}, {Letter: 0, Channel: chSMS, ProviderKey: "2"},
			}},
			want: Counts{Letters: 1, Acked: 1, Deliveries: 2, SMS: 1,
				DupRaw: per(0, 1), DupVisible: per(0, 1), DupUnmarked: per(0, 1)},
		},
		{
			name: "a missing channel is lost; a letter with nothing and no trail is an acknowledged event lost",
			rec: Record{Letters: acked, Trailed: map[int]bool{2: true}, Stuck: 3, Faults: 4, Deliveries: []Delivery{
				{Letter: 0, Channel: chEmail, ProviderKey: "<x>"},
			}},
			want: Counts{Letters: 3, Acked: 3, Deliveries: 6, SMS: 3, Lost: 5, AckLost: 1, Stuck: 3, Faults: 4,
				DupRaw: per(0, 0), DupVisible: per(0, 0), DupUnmarked: per(0, 0)},
		},
		{
			name: "letters never answered 202 are not expected",
			rec: Record{Letters: []Letter{{MessageID: "a"}, {MessageID: "b", Acked: true}}, Deliveries: []Delivery{
				{Letter: 1, Channel: chEmail, ProviderKey: "<x>"}, {Letter: 1, Channel: chSMS, ProviderKey: "1"},
			}},
			want: Counts{Letters: 2, Acked: 1, Deliveries: 2, SMS: 1,
				DupRaw: per(0, 0), DupVisible: per(0, 0), DupUnmarked: per(0, 0)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Count(tt.rec, []string{chEmail, chSMS})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Count (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLongestGap(t *testing.T) {
	tests := []struct {
		name     string
		times    []time.Time
		from, to time.Time
		want     time.Duration
	}{
		{"no events: the whole window", nil, at(0), at(10), 10 * time.Second},
		{"gap in the middle", []time.Time{at(1), at(2), at(7), at(9)}, at(0), at(10), 5 * time.Second},
		{"unsorted, gap at the end", []time.Time{at(3), at(1), at(2)}, at(0), at(10), 7 * time.Second},
		{"times outside the window ignored", []time.Time{at(-5), at(5), at(20)}, at(0), at(10), 5 * time.Second},
		{"empty window", []time.Time{at(1)}, at(5), at(5), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LongestGap(tt.times, tt.from, tt.to); got != tt.want {
				t.Errorf("LongestGap = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestTargetMisses(t *testing.T) {
	base := Target{MaxLost: 0, MaxStuck: 0, MaxAckLost: 0, MaxDupSMSPercent: 0.01, MaxDupVisibleEmail: 0, MaxDupRaw: -1}
	clean := Counts{SMS: 10000, DupRaw: map[string]int{}, DupVisible: map[string]int{}, DupUnmarked: map[string]int{}}
	tests := []struct {
		name   string
		target Target
		counts func(c Counts) Counts
		want   []string
	}{
		{"clean run meets all", base, func(c Counts) Counts { return c }, nil},
		{"one lost", base, func(c Counts) Counts { c.Lost = 1; return c }, []string{"lost 1 > 0"}},
		{"stuck and ack lost", base, func(c Counts) Counts { c.Stuck, c.AckLost = 2, 1; return c },
			[]string{"stuck 2 > 0", "ack-lost 1 > 0"}},
		{"one SMS in 10000 is within 0.01 %", base, func(c Counts) Counts { c.DupRaw = map[string]int{chSMS: 1}; return c }, nil},
		{"two SMS in 10000 are not", base, func(c Counts) Counts { c.DupRaw = map[string]int{chSMS: 2}; return c },
			[]string{"dup sms 0.020% > 0.010%"}},
		{"same Message-ID email copies pass without a raw limit", base,
			func(c Counts) Counts { c.DupRaw = map[string]int{chEmail: 5}; return c }, nil},
		{"a visible email duplicate misses", base,
			func(c Counts) Counts {
				c.DupRaw, c.DupVisible = map[string]int{chEmail: 1}, map[string]int{chEmail: 1}
				return c
			},
			[]string{"dup visible email 1 > 0"}},
		{"sigterm: any raw copy misses", scenarios["sigterm"].Target(base),
			func(c Counts) Counts { c.DupRaw = map[string]int{chEmail: 1}; return c }, []string{"dup raw 1 > 0"}},
		{"an unmarked duplicate misses", base,
			func(c Counts) Counts {
				c.DupRaw, c.DupUnmarked = map[string]int{chEmail: 1, chSMS: 1}, map[string]int{chEmail: 1, chSMS: 1}
				return c
			},
			[]string{"dup unmarked 2 > 0"}},
		{"negative limits are no limits", Target{MaxLost: -1, MaxStuck: -1, MaxAckLost: -1, MaxDupSMSPercent: -1,
			MaxDupVisibleEmail: -1, MaxDupRaw: -1, MaxDupUnmarked: -1},
			func(c Counts) Counts {
				c.Lost, c.Stuck, c.AckLost = 9, 9, 9
				c.DupRaw, c.DupVisible = map[string]int{chSMS: 9, chEmail: 9}, map[string]int{chEmail: 9}
				c.DupUnmarked = map[string]int{chSMS: 9, chEmail: 9}
				return c
			}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.target.Misses(tt.counts(clean))); diff != "" {
				t.Errorf("Misses (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrintTable(t *testing.T) {
	var buf bytes.Buffer
	c := Counts{Letters: 10, Acked: 9, Faults: 3, Lost: 1, DupRaw: map[string]int{chEmail: 2, chSMS: 1},
		DupVisible: map[string]int{chSMS: 1}, DupUnmarked: map[string]int{chEmail: 1}, AckGap: 1500 * time.Millisecond, DeliveryGap: 3 * time.Second}
	PrintTable(&buf, []Row{{Scenario: "kill9", Counts: c, Misses: []string{"lost 1 > 0"}}})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("table has %d lines, want header + 1:\n%s", len(lines), buf.String())
	}
	for _, want := range []string{"kill9", "9/10", "2/1", "0/1", "1/0", "1.5s/3s", "MISSED: lost 1 > 0"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row lacks %q: %s", want, lines[1])
		}
	}
}

func TestCitizensAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for i := range 16000 {
		c := cpr(i)
		if seen[c] {
			t.Fatalf("citizen %d repeats a CPR number", i)
		}
		seen[c] = true
	}
}
