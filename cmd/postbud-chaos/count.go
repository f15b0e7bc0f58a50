package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Channel names as the harness counts them.
const (
	chEmail = "email"
	chSMS   = "sms"
)

// Letter is one letter the harness drove: the message_id of its
// message.received event and whether (and when) postbud answered 202.
type Letter struct {
	MessageID string
	Acked     bool
	AckedAt   time.Time
}

// Delivery is one alert a fake accepted, attributed to its letter by the
// recipient (each letter goes to its own citizen).
type Delivery struct {
	Letter  int
	Channel string
	// ProviderKey tells copies apart as the citizen sees them: the email's
	// Message-ID; for SMS, which the citizen cannot tell apart, the
	// gateway's own id (every copy is visible).
	ProviderKey string
	At          time.Time
}

// Record is everything one scenario run recorded.
type Record struct {
	Letters    []Letter
	Deliveries []Delivery
	// Trailed holds the letters (by index) whose trail has at least one
	// entry; only letters with no delivery need to be looked up.
	Trailed map[int]bool
	// Marked holds, by letter index and channel, the deliveries whose
	// trail has a re-send marked as one (dispatcher.ReasonResent); only
	// letters with a duplicate need to be looked up.
	Marked map[int]map[string]bool
	// Stuck is the tasks still active, pending, scheduled or retrying at
	// the end.
	Stuck int
	// Faults is how many faults were injected.
	Faults int
	// Retries is the retries asynq counted as spent (its failed-task
	// total over the queues); a throttled delivery spends none.
	Retries int
	// Acks are the times of the 202 answers (every answer, retries of
	// a letter included), for the outage measure.
	Acks []time.Time
	// Window bounds the outage measure: gaps are looked for between
	// From and To only.
	From, To time.Time
}

// Counts are the per-delivery (letter × channel) counts of a run.
type Counts struct {
	Letters    int
	Acked      int
	Deliveries int // expected: acked letters × channels
	SMS        int // expected SMS deliveries
	Lost       int
	// DupRaw is the copies beyond the first, per channel.
	DupRaw map[string]int
	// DupVisible is the copies a citizen can tell apart beyond the first:
	// emails with another Message-ID, every SMS copy.
	DupVisible map[string]int
	// DupUnmarked is the deliveries, per channel, accepted more than once
	// whose trail marks no re-send on that channel: a repeat postbud did
	// not own up to.
	DupUnmarked map[string]int
	Stuck       int
	AckLost     int
	// AckGap and DeliveryGap are the longest stretches without a 202 and
	// without an accepted alert within the record's window.
	AckGap, DeliveryGap time.Duration
	Faults              int
	Retries             int
}

// Count counts a record. It is a pure function of the record.
func Count(r Record, channels []string) Counts {
	c := Counts{Letters: len(r.Letters), DupRaw: map[string]int{}, DupVisible: map[string]int{},
		DupUnmarked: map[string]int{}, Stuck: r.Stuck, Faults: r.Faults, Retries: r.Retries}
	type key struct {
		letter  int
		channel string
	}
	for _, ch := range channels {
		c.DupRaw[ch], c.DupVisible[ch], c.DupUnmarked[ch] = 0, 0, 0
	}
	copies := map[key]int{}
	distinct := map[key]map[string]bool{}
	any := map[int]bool{}
	var deliveredAt []time.Time
	for _, d := range r.Deliveries {
		k := key{d.Letter, d.Channel}
		copies[k]++
		if distinct[k] == nil {
			distinct[k] = map[string]bool{}
		}
		distinct[k][d.ProviderKey] = true
		any[d.Letter] = true
		deliveredAt = append(deliveredAt, d.At)
	}
	for i, l := range r.Letters {
		if !l.Acked {
			continue
		}
		c.Acked++
		if !any[i] && !r.Trailed[i] {
			c.AckLost++
		}
		for _, ch := range channels {
			c.Deliveries++
			if ch == chSMS {
				c.SMS++
			}
			k := key{i, ch}
			n := copies[k]
			if n == 0 {
				c.Lost++
				continue
			}
			c.DupRaw[ch] += n - 1
			c.DupVisible[ch] += len(distinct[k]) - 1
			if n > 1 && !r.Marked[i][ch] {
				c.DupUnmarked[ch]++
			}
		}
	}
	c.AckGap = LongestGap(r.Acks, r.From, r.To)
	c.DeliveryGap = LongestGap(deliveredAt, r.From, r.To)
	return c
}

// LongestGap is the longest stretch between from and to holding none of
// the times (times outside the window are ignored; an empty window is 0).
func LongestGap(times []time.Time, from, to time.Time) time.Duration {
	if !to.After(from) {
		return 0
	}
	ts := make([]time.Time, 0, len(times)+2)
	ts = append(ts, from)
	for _, t := range times {
		if t.After(from) && t.Before(to) {
			ts = append(ts, t)
		}
	}
	ts = append(ts, to)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	var gap time.Duration
	for i := 1; i < len(ts); i++ {
		gap = max(gap, ts[i].Sub(ts[i-1]))
	}
	return gap
}

// Target is what a scenario must achieve; a negative limit is no limit.
type Target struct {
	MaxLost, MaxStuck, MaxAckLost int
	// MaxDupSMSPercent bounds duplicated SMS as a percentage of SMS.
	MaxDupSMSPercent float64
	// MaxDupVisibleEmail bounds emails a citizen can tell apart.
	MaxDupVisibleEmail int
	// MaxDupRaw bounds every raw copy on every channel (SIGTERM: 0).
	MaxDupRaw int
	// MaxDupUnmarked bounds duplicated deliveries whose trail marks no
	// re-send, on all channels.
	MaxDupUnmarked int
}

// Misses lists the targets c misses, empty when it meets them all.
func (t Target) Misses(c Counts) []string {
	var out []string
	check := func(name string, got, limit int) {
		if limit >= 0 && got > limit {
			out = append(out, fmt.Sprintf("%s %d > %d", name, got, limit))
		}
	}
	check("lost", c.Lost, t.MaxLost)
	check("stuck", c.Stuck, t.MaxStuck)
	check("ack-lost", c.AckLost, t.MaxAckLost)
	check("dup visible email", c.DupVisible[chEmail], t.MaxDupVisibleEmail)
	check("dup raw", c.DupRaw[chEmail]+c.DupRaw[chSMS], t.MaxDupRaw)
	check("dup unmarked", c.DupUnmarked[chEmail]+c.DupUnmarked[chSMS], t.MaxDupUnmarked)
	if t.MaxDupSMSPercent >= 0 && c.SMS > 0 {
		if pct := 100 * float64(c.DupRaw[chSMS]) / float64(c.SMS); pct > t.MaxDupSMSPercent {
			out = append(out, fmt.Sprintf("dup sms %.3f%% > %.3f%%", pct, t.MaxDupSMSPercent))
		}
	}
	return out
}

// Row is one line of the table.
type Row struct {
	Scenario string
	Counts   Counts
	Misses   []string
}

// PrintTable writes the one table of a run.
func PrintTable(w io.Writer, rows []Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tletters\tfaults\tlost\tdup raw (email/sms)\tdup visible (email/sms)\tdup unmarked (email/sms)\tstuck\tack lost\tlongest outage (202/delivery)\tretries spent\ttarget\t")
	for _, r := range rows {
		c := r.Counts
		verdict := "met"
		if len(r.Misses) > 0 {
			verdict = "MISSED: " + strings.Join(r.Misses, "; ")
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%d\t%d\t%d/%d\t%d/%d\t%d/%d\t%d\t%d\t%s/%s\t%d\t%s\t\n", r.Scenario, c.Acked, c.Letters, c.Faults,
			c.Lost, c.DupRaw[chEmail], c.DupRaw[chSMS], c.DupVisible[chEmail], c.DupVisible[chSMS],
			c.DupUnmarked[chEmail], c.DupUnmarked[chSMS], c.Stuck, c.AckLost,
			c.AckGap.Round(100*time.Millisecond), c.DeliveryGap.Round(100*time.Millisecond), c.Retries, verdict)
	}
	_ = tw.Flush()
}
