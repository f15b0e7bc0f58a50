package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/time/rate"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/gsm7"
	"github.com/digitalpost/postbud/dispatcher/event"
	"github.com/digitalpost/postbud/dispatcher/groupcommit"
	"github.com/digitalpost/postbud/dispatcher/rules"
	"github.com/digitalpost/postbud/dispatcher/seal"
)

// Enqueuer puts tasks on asynq queues; *asynq.Client implements it.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Limiter caps send rates. Reserve takes one send from the channel's rate
// or says how long to wait (redisstore.Limiter).
type Limiter interface {
	Reserve(ctx context.Context, ch channels.Name) (time.Duration, error)
}

// Observer receives the dispatcher's measurements (metrics). All methods
// must be safe for concurrent use; a nil Observer in Config records nothing.
type Observer interface {
	// Delivered is called once per delivery attempt with its outcome.
	Delivered(ch channels.Name, result, kind string, took time.Duration)
	// EventToAlert is called when an alert was handed to its provider.
	EventToAlert(ch channels.Name, since time.Duration)
	// AddressRemoved is called when a gone address or token is removed.
	AddressRemoved(ch channels.Name)
	// Webhook is called per webhook attempt: its result, the lag since
	// the change, and how long the send took.
	Webhook(p event.Platform, result string, lag, took time.Duration)
}

// Config wires a Dispatcher.
type Config struct {
	Store Store
	Keyer *Keyer
	// Sealer seals the contact data of queued events (required).
	Sealer   *seal.Sealer
	Enqueuer Enqueuer
	Queues   Queues
	// Senders are the configured channels; a channel without a sender gets
	// no deliveries.
	Senders map[channels.Name]channels.Sender
	Logger  *slog.Logger
	// MailboxURL is the one link alerts carry.
	MailboxURL string
	// AlertTTL is how long after a letter arrived its alert is still worth
	// sending (default 48h); later attempts are dropped and recorded.
	AlertTTL time.Duration
	// SendTimeout bounds one send (default 30s).
	SendTimeout time.Duration
	// Syncer sends read-state changes to the platforms; nil sends none.
	Syncer Syncer
	// Observer receives measurements; nil records none.
	Observer Observer
	// Now is the clock (default time.Now).
	Now func() time.Time
	// QuietHours are the channels' quiet hours (POSTBUD_QUIET_HOURS_*):
	// alerts that are not urgent wait for the window's end.
	QuietHours map[channels.Name]rules.QuietHours
	// PaperForMinors sends public letters to citizens under 15 on paper
	// (they get no digital alert either way).
	PaperForMinors bool
	// ReminderBefore is how long before a letter's reply_by a reminder
	// goes out if it is still unread; 0 sends none.
	ReminderBefore time.Duration
	// Coalesce is each channel's coalescing window (0 or absent: off).
	Coalesce map[channels.Name]time.Duration
	// Limiter caps each channel's send rate across all replicas; nil
	// sends as fast as the channels go.
	Limiter Limiter
	// TrackReports lists the channels whose providers send delivery
	// reports postbud receives (SMS): their sent deliveries are tracked so
	// a report finds its letter.
	TrackReports []channels.Name
	// RetryBase is the first step of the exponential backoff (default
	// 5s); steps double up to an hour, with jitter.
	RetryBase time.Duration
	// RecordRetry bounds how long the write of a provider's answer is
	// retried on a transient store error (Redis loading, a failover, a
	// refused or reset connection, a timeout) before the task fails
	// (default 60s): a store hiccup never turns an accepted send into a
	// re-send of the whole letter.
	RecordRetry time.Duration
	// ReportWait is how long a delivery whose provider sends delivery
	// reports (TrackReports) and whose send was interrupted (in flight
	// when its worker died) waits for the report before it is sent again,
	// counted from the interrupted attempt (default 3 minutes).
	ReportWait time.Duration
	// FirstRetryDelay is how long a delivery that failed inside its event
	// waits before its own task runs (default: RetryDelay's first step, or
	// the provider's Retry-After). Tests shorten it.
	FirstRetryDelay func(err error) time.Duration
	// BatchSize is the most letters one TypeLetters task carries
	// (AcceptBatch; default DefaultBatchSize).
	BatchSize int
	// BatchInflight is the most letters of batch tasks (TypeLetters,
	// TypeInboundLetters) this Dispatcher processes at once, across all
	// its workers (default DefaultBatchInflight). A task waits for room
	// before it reads its letters, holding only its payload; a task of
	// more letters than this waits for the whole bound and runs alone.
	BatchInflight int
	// GroupAccepts enqueues the letters that Accept calls made at once
	// bring (not urgent ones) together, as AcceptBatch does a batch's
	// (acceptgroup.go): asynq's cost is paid per group instead of per
	// letter. A copy of a letter still queued in a group's task is then
	// answered accepted, not duplicate (it is processed once).
	GroupAccepts bool
	// UrgentFlowing reports whether the urgent lane's tasks are flowing
	// (wake.Flow: one was enqueued within the last second, by any replica:
	// an urgent letter, a read and its sync, a badge, a confirmation code).
	// While they are, batch tasks yield Redis to them: they take their
	// letters in parts of at most YieldTurn, each when YieldPace allows it
	// (yield.go). nil: they never yield.
	UrgentFlowing func(ctx context.Context) bool
	// YieldPace paces batch tasks while UrgentFlowing: a rate of letters
	// shared by every replica (redisstore.Pacer). nil: a rate of this
	// Dispatcher's own, DefaultYieldRate letters a second.
	YieldPace Pacer
}

// Pacer paces batch tasks while the urgent lane's tasks flow: WaitN
// returns once n more letters (at most YieldTurn) may be processed, or
// with an error (ctx's end). redisstore.Pacer is one shared by every
// replica; *rate.Limiter (golang.org/x/time/rate) one of a process's own.
type Pacer interface {
	WaitN(ctx context.Context, n int) error
}

// Dispatcher handles postbud's tasks: events in, deliveries out.
type Dispatcher struct {
	cfg Config
	log *slog.Logger
	obs Observer
	// letters bounds the letters of batch tasks processed at once
	// (Config.BatchInflight).
	letters *letterBound
	// groups gathers Accept's letters (Config.GroupAccepts).
	groups groupcommit.Group[*event.Event, Accepted]
	// yield paces batch tasks while the urgent lane's tasks flow (yield.go).
	yield *yielder
}

// New returns a Dispatcher; it reports every missing part at once.
func New(cfg Config) (*Dispatcher, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("dispatcher: Store is required"))
	}
	if cfg.Keyer == nil {
		errs = append(errs, errors.New("dispatcher: Keyer is required"))
	}
	if cfg.Enqueuer == nil {
		errs = append(errs, errors.New("dispatcher: Enqueuer is required"))
	}
	if cfg.Sealer == nil {
		errs = append(errs, errors.New("dispatcher: Sealer is required"))
	}
	if cfg.MailboxURL == "" {
		errs = append(errs, errors.New("dispatcher: MailboxURL is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Queues == (Queues{}) {
		cfg.Queues = DefaultQueues("")
	}
	if cfg.AlertTTL == 0 {
		cfg.AlertTTL = 48 * time.Hour
	}
	if cfg.SendTimeout == 0 {
		cfg.SendTimeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RecordRetry == 0 {
		cfg.RecordRetry = 60 * time.Second
	}
	if cfg.ReportWait == 0 {
		cfg.ReportWait = 3 * time.Minute
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.BatchInflight <= 0 {
		cfg.BatchInflight = DefaultBatchInflight
	}
	if cfg.RetryBase == 0 {
		cfg.RetryBase = DefaultRetryBase
	}
	if cfg.FirstRetryDelay == nil {
		base := cfg.RetryBase
		cfg.FirstRetryDelay = func(err error) time.Duration { return retryDelay(base, 0, err) }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	obs := cfg.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	if cfg.YieldPace == nil {
		cfg.YieldPace = rate.NewLimiter(DefaultYieldRate, YieldTurn)
	}
	return &Dispatcher{cfg: cfg, log: cfg.Logger, obs: obs, letters: newLetterBound(cfg.BatchInflight),
		yield: &yielder{flowing: cfg.UrgentFlowing, pace: cfg.YieldPace}}, nil
}

type nopObserver struct{}

func (nopObserver) Delivered(channels.Name, string, string, time.Duration)       {}
func (nopObserver) EventToAlert(channels.Name, time.Duration)                    {}
func (nopObserver) AddressRemoved(channels.Name)                                 {}
func (nopObserver) Webhook(event.Platform, string, time.Duration, time.Duration) {}

// Register adds the dispatcher's handlers to mux; a task of the urgent
// lane runs with its context marked (WithUrgent).
func (d *Dispatcher) Register(mux *asynq.ServeMux) {
	mux.Use(d.urgentLane)
	mux.HandleFunc(TypeInbound, d.HandleInbound)
	mux.HandleFunc(TypeEvent, d.HandleEvent)
	mux.HandleFunc(TypeLetters, d.HandleLetters)
	mux.HandleFunc(TypeInboundLetters, d.HandleInboundLetters)
	mux.HandleFunc(TypeDelivery, d.HandleDelivery)
	mux.HandleFunc(TypeSync, d.HandleSync)
	mux.HandleFunc(TypeBadge, d.HandleBadge)
	mux.HandleFunc(TypeReminder, d.HandleReminder)
	mux.HandleFunc(TypeRejected, d.HandleRejected)
	mux.HandleFunc(TypeFlush, d.HandleFlush)
	mux.HandleFunc(TypeConfirm, d.HandleConfirm)
}

// urgentLane marks the context of a task of the urgent lane: its store
// calls do not wait behind the group commit of other lanes' work.
func (d *Dispatcher) urgentLane(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if q, ok := asynq.GetQueueName(ctx); ok && q == d.cfg.Queues.Urgent {
			ctx = WithUrgent(ctx)
		}
		return h.ProcessTask(ctx, t)
	})
}

// HandleInbound handles an event a platform enqueued straight into asynq.
// A registry event (contact, device, exemption) becomes a postbud:event
// with its contact data sealed; a letter or read event is handled here.
// An invalid event can never succeed: it is replaced by a postbud:rejected
// task that names the bad fields and holds the event with anything shaped
// like a CPR number masked, and that task is archived for ops to see. The
// original, CPR and all, is not kept.
func (d *Dispatcher) HandleInbound(ctx context.Context, t *asynq.Task) error {
	ev, err := event.Parse(t.Payload())
	var refused []event.FieldError
	switch {
	case err != nil:
		refused = []event.FieldError{{Reason: "invalid event"}}
		if ve := (*event.ValidationError)(nil); errors.As(err, &ve) {
			refused = ve.Errors
		}
	case event.CoreOnly(ev.Type) && ev.Source != event.Core:
		// A platform that enqueues straight into asynq names its own
		// source; only core's may carry access events.
		refused = []event.FieldError{{Field: "type", Reason: "only core may send " + string(ev.Type) + " events"}}
	case ev.Forbidden() != nil:
		// The HTTP API answers this 403 (a platform changing another's
		// consent); here it is a rejected event.
		refused = []event.FieldError{*ev.Forbidden()}
	}
	if refused != nil {
		d.log.WarnContext(ctx, "inbound event refused", "task_id", taskID(ctx), "error", (&event.ValidationError{Errors: refused}).Error())
		b, _ := json.Marshal(rejectedTask{Errors: refused, Event: describeEvent(t.Payload())})
		q, _ := asynq.GetQueueName(ctx)
		rt := newTask(TypeRejected, b, d.cfg.Queues, taskArgs{id: "rejected:" + taskID(ctx), parent: q})
		return d.enqueue(ctx, rt) // nil: the original is done
	}
	p := d.cfg.Keyer.Pseudonymize(ev)
	if p.Contact != nil || p.Device != nil || p.Exemption != nil {
		// A registry event carries contact data: it is handed over at once
		// as a postbud:event with that data sealed, so no retry keeps it
		// in clear in the queue. (Letters carry none and are handled
		// here: the hot path makes no extra enqueue.)
		t, err := NewEventTask(d.sealEvent(p), d.cfg.Queues)
		if err != nil {
			return err
		}
		return d.enqueue(ctx, t)
	}
	return d.handle(ctx, p)
}

type rejectedTask struct {
	Errors []event.FieldError `json:"errors"`
	Event  string             `json:"event"`
}

// HandleRejected archives a rejected event with its reasons as the error.
func (d *Dispatcher) HandleRejected(ctx context.Context, t *asynq.Task) error {
	var p rejectedTask
	_ = json.Unmarshal(t.Payload(), &p)
	return fmt.Errorf("%w: %w", &event.ValidationError{Errors: p.Errors}, asynq.SkipRetry)
}

// describeEvent keeps of a rejected event only what identifies it without
// personal data: its id, type, source and time (CPR-shaped runs masked),
// and the names of its data fields — no values.
func describeEvent(raw []byte) string {
	var w struct {
		ID, Type, Source, OccurredAt any
		Data                         map[string]json.RawMessage
	}
	_ = json.Unmarshal(raw, &w)
	var fields []string
	for k := range w.Data {
		fields = append(fields, k)
	}
	slices.Sort(fields)
	b, _ := json.Marshal(map[string]any{"id": w.ID, "type": w.Type, "source": w.Source, "occurred_at": w.OccurredAt,
		"data_fields": fields})
	return event.MaskCPRLike(string(b))
}

// HandleEvent handles an event accepted over HTTP.
func (d *Dispatcher) HandleEvent(ctx context.Context, t *asynq.Task) error {
	var ev event.Event
	if err := json.Unmarshal(t.Payload(), &ev); err != nil || ev.CitizenKey == "" {
		return fmt.Errorf("event task payload: %w", errors.Join(err, asynq.SkipRetry))
	}
	if err := d.openEvent(&ev); err != nil {
		// Not SkipRetry: the key that opens it may be restored.
		return fmt.Errorf("event task payload: %w", err)
	}
	return d.handle(ctx, &ev)
}

func (d *Dispatcher) handle(ctx context.Context, ev *event.Event) error {
	st := d.cfg.Store
	switch {
	case ev.Message != nil:
		return d.receive(ctx, ev)
	case ev.Read != nil:
		return d.readState(ctx, ev)
	case ev.Exemption != nil:
		return d.exemption(ctx, ev)
	case ev.Consent != nil:
		return d.consent(ctx, ev)
	case ev.Access != nil:
		return d.access(ctx, ev)
	case ev.Contact != nil:
		return d.contact(ctx, ev)
	case ev.Device != nil:
		dev := Device{App: ev.Device.App, Provider: ev.Device.Provider, Token: ev.Device.Token,
			Environment: ev.Device.Environment, RegisteredAt: ev.OccurredAt}
		_, err := st.SetDevice(ctx, DeviceWrite{Citizen: ev.CitizenKey, Device: dev, Remove: ev.Type == event.DeviceUnregistered,
			Mark: EventRef{Citizen: ev.CitizenKey, ID: ev.ID}})
		return err
	}
	d.log.WarnContext(ctx, "event type not handled yet", "event_id", ev.ID, "type", ev.Type)
	return nil
}

// ErrUnavailable wraps failures to reach the store or queue while accepting
// an event: the caller should answer 503 so the platform retries.
var ErrUnavailable = errors.New("postbud is unavailable")

// ErrNoConsent refuses a message.read or message.unread from a platform
// the citizen gave no consent to show the letter (a letter from a public
// sender on e-Boks or mit.dk): that platform cannot have shown it.
var ErrNoConsent = errors.New("no consent")

// consentPlatforms returns the platforms of a read or unread that need the
// citizen's consent: where it was read (data.platform) and who sends it
// (source), so e-Boks cannot pass its own read off as borger.dk's.
func consentPlatforms(ev *event.Event) []event.Platform {
	if ev.Read == nil {
		return nil
	}
	var out []event.Platform
	for _, p := range []event.Platform{ev.Read.Platform, ev.Source} {
		if event.NeedsConsent(p) && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// noConsentRead says why a read or unread from platform p was refused.
func noConsentRead(p event.Platform, why string) string {
	return fmt.Sprintf("%s: the citizen has not given %s consent to show letters from public senders, so %s cannot have shown this letter",
		why, p, p)
}

// Accept pseudonymises a validated event and enqueues it for processing;
// ev itself is not changed. It reports duplicate when the event id was
// seen before (processed, or still queued). The same event accepted twice
// is processed once. A message.read or message.unread from e-Boks or
// mit.dk about a known letter from a public sender, without the citizen's
// consent to that platform, is refused with ErrNoConsent; about a letter
// not known yet it is accepted, and the worker judges it again.
func (d *Dispatcher) Accept(ctx context.Context, platformEvent *event.Event) (duplicate bool, err error) {
	ev := d.cfg.Keyer.Pseudonymize(platformEvent)
	ref := eventRef(ev)
	if d.cfg.Queues.EventQueue(ev) == d.cfg.Queues.Urgent {
		ctx = WithUrgent(ctx)
	}
	if d.cfg.GroupAccepts && batchable(ev) {
		return d.acceptGrouped(ctx, ev)
	}
	seen, err := d.cfg.Store.Seen(ctx, ref)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if seen {
		return true, nil
	}
	if err := d.refuseRead(ctx, ev, ref.MessageID); err != nil {
		return false, err
	}
	t, err := NewEventTask(d.sealEvent(ev), d.cfg.Queues)
	if err != nil {
		return false, err
	}
	_, err = d.cfg.Enqueuer.EnqueueContext(ctx, t)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict), errors.Is(err, asynq.ErrDuplicateTask):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return false, nil
}

// eventRef names ev for its processed mark: a letter's events are marked
// in the letter's hash.
func eventRef(ev *event.Event) EventRef {
	ref := EventRef{Citizen: ev.CitizenKey, ID: ev.ID}
	switch {
	case ev.Message != nil:
		ref.MessageID = ev.Message.MessageID
	case ev.Read != nil:
		ref.MessageID = ev.Read.MessageID
	}
	return ref
}

// refuseRead refuses (ErrNoConsent) a read or unread that a platform
// reports about a stored public letter it has no consent to show: judged
// at accept, where the letter is known, so the platform hears why at once;
// the worker judges again (readState). Other events pass.
func (d *Dispatcher) refuseRead(ctx context.Context, ev *event.Event, msgID string) error {
	ps := consentPlatforms(ev)
	if len(ps) == 0 {
		return nil
	}
	v, err := d.cfg.Store.Load(ctx, ev.CitizenKey, msgID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, p := range ps {
		if why := platformNoConsent(v.Citizen, v.Letter, p); v.Stored && why != "" {
			return fmt.Errorf("%w: %s", ErrNoConsent, noConsentRead(p, why))
		}
	}
	return nil
}

// Trail returns a letter's delivery trail, for ops.
func (d *Dispatcher) Trail(ctx context.Context, messageID string) ([]Outcome, error) {
	return d.cfg.Store.Trail(ctx, messageID)
}

// Ready checks the store answers.
func (d *Dispatcher) Ready(ctx context.Context) error { return d.cfg.Store.Ping(ctx) }

// delivery is one planned send.
type delivery struct {
	id string
	to channels.Address
	// holder is the access holder's key for a holder's delivery of the
	// owner's letter ("" for the owner's own).
	holder string
}

// addresses returns the citizen's addresses on configured channels that
// may get alerts: an email or mobile only once confirmed.
func (d *Dispatcher) addresses(c *Citizen, messageID string) []delivery {
	out, _ := d.contacts(c, messageID)
	return out
}

// contacts returns the citizen's addresses on configured channels: those
// that may get alerts, and the email and mobile that may not until they
// are confirmed.
func (d *Dispatcher) contacts(c *Citizen, messageID string) (ok, unconfirmed []delivery) {
	return d.contactsAs(c, messageID, "")
}

// contactsAs is contacts for the deliveries of letter messageID to c: the
// letter's recipient (holder ""), or the access holder c whose key is
// holder, whose deliveries have ids of their own (from the letter, the
// holder key, the channel and the address).
func (d *Dispatcher) contactsAs(c *Citizen, messageID, holder string) (ok, unconfirmed []delivery) {
	base := messageID
	if holder != "" {
		base = "holder|" + holder + "|" + messageID
	}
	add := func(ch channels.Name, to channels.Address, confirmed bool) {
		if _, ok := d.cfg.Senders[ch]; !ok {
			return
		}
		to.Channel = ch
		dl := delivery{id: d.cfg.Keyer.DeliveryID(base, ch, to.Value), to: to, holder: holder}
		if confirmed {
			ok = append(ok, dl)
		} else {
			unconfirmed = append(unconfirmed, dl)
		}
	}
	if c.Email != "" {
		add(channels.Email, channels.Address{Value: c.Email}, c.EmailConfirmed)
	}
	if c.Mobile != "" {
		add(channels.SMS, channels.Address{Value: c.Mobile}, c.MobileConfirmed)
	}
	for _, dev := range c.Devices {
		add(channels.Name(dev.Provider), channels.Address{Value: dev.Token, App: dev.App, Environment: dev.Environment}, true)
	}
	return ok, unconfirmed
}

// receive handles message.received: store the letter, then attempt every
// delivery inside this task. Only deliveries that fail get tasks of their
// own, so a retry never re-sends a channel that succeeded.
//
// The letter is written before any send: its metadata and unread filing
// (so an alert's badge counts every letter filed so far, this one too),
// and each delivery about to be sent marked in flight. Each outcome is
// written the moment its provider answers; the event's mark comes last.
func (d *Dispatcher) receive(ctx context.Context, ev *event.Event) error {
	m := ev.Message
	v, err := d.cfg.Store.Lookup(ctx, EventRef{Citizen: ev.CitizenKey, MessageID: m.MessageID, ID: ev.ID})
	if err != nil || v.Seen {
		return err
	}
	r, err := d.prepare(ctx, ev, v)
	if err != nil {
		return err
	}
	h := sendHooks{ready: r.filed, decorate: d.decorateRun(r)}
	if d.settled(r) {
		// Nothing but the mark follows the sends: it goes in their last
		// write (the letter's usual case: one write fewer).
		h.last = r.markLast
	}
	results, err := d.sendRecorded(ctx, r.c, r.stored, r.w, r.todo, 1, h)
	if err != nil {
		return err
	}
	if err := d.finish(ctx, r, results); err != nil {
		return err
	}
	if r.marked {
		return nil
	}
	return d.write(ctx, r.markWrite())
}

// letterRun is one message.received between its reads and its writes:
// what the rules decided, what is to be sent now, and what waits.
type letterRun struct {
	ev      *event.Event
	c       *Citizen
	stored  *Letter
	w       LetterWrite // the write before any send
	plan    plan
	todo    []delivery
	pending []result
	holders []Access // the owner's access relations, as looked up
	now     time.Time
	marked  bool // the mark went in the sends' last write (markLast)
}

// prepare applies the rules to a letter not processed yet (v not Seen):
// the write before any send (its metadata if new, notes, held
// deliveries), the deliveries to send now and those that wait.
func (d *Dispatcher) prepare(ctx context.Context, ev *event.Event, v LetterView) (*letterRun, error) {
	m := ev.Message
	c, stored := v.Citizen, v.Letter
	now := d.cfg.Now()
	r := &letterRun{ev: ev, c: c, stored: stored, now: now, holders: v.Holders,
		w: LetterWrite{Citizen: ev.CitizenKey, MessageID: m.MessageID, Run: ev.ID}}
	w := &r.w
	if !v.Stored { // new: read state may have arrived first
		stored.SenderID, stored.SenderName, stored.SenderKind = m.SenderID, m.SenderName, m.SenderKind
		stored.Priority, stored.ReceivedAt, stored.Legal = m.Priority, ev.OccurredAt, m.LegalNotification
		stored.NotBefore, stored.ReplyBy = m.DoNotDeliverUntil, m.ReplyBy
		w.Arrive = &Arrival{Meta: stored}
		if m.Notification != "" {
			if ok, why := rules.CheckNotification(m.Notification); ok {
				stored.Notification = gsm7.Normalize(m.Notification)
				w.Trail = append(w.Trail, Outcome{At: now, Result: ResultNote, Reason: "sender's alert text used"})
			} else {
				w.Trail = append(w.Trail, Outcome{At: now, Result: ResultNote, Reason: "sender's alert text refused (" + why + "): generic text used"})
			}
		}
	}
	r.plan = d.plan(c, stored, ev.Birth, now)
	w.Done = append(w.Done, r.plan.done...)
	w.Trail = append(w.Trail, r.plan.outs...)
	for _, dl := range r.plan.todo {
		if stored.Done[dl.id] {
			continue
		}
		if _, ok := stored.InFlight[dl.id]; ok {
			if othersClaim(stored, dl.id, ev.ID, now) {
				continue
			}
			// An earlier run died while this delivery's provider call was
			// in flight: the provider may have taken it. Its own task
			// decides (waits for a delivery report, or re-sends marked).
			r.pending = append(r.pending, result{dl: dl})
			continue
		}
		// A held alert (scheduled, quiet hours) waits on its own: it is
		// never folded into a coalesced alert that would go out earlier.
		if until, why := d.hold(stored, dl.to.Channel, now); !until.IsZero() {
			o := deferredOutcome(now, dl, until, why)
			w.Trail = append(w.Trail, o)
			r.pending = append(r.pending, result{dl: dl, out: o, until: until})
			continue
		}
		if o, held, err := d.holdForWindow(ctx, c, stored, dl, now); err != nil {
			return nil, err
		} else if held {
			w.Trail = append(w.Trail, o)
			continue
		}
		r.todo = append(r.todo, dl)
	}
	if v.Stored && len(r.todo) > 0 {
		// A later run of a stored letter: the look-up read no unread
		// count, and the alerts' badge needs one. Filing the letter again
		// (its metadata is kept, a read letter stays unfiled) returns it.
		w.Arrive = &Arrival{Meta: stored}
	}
	return r, nil
}

// othersClaim reports whether a delivery in flight was claimed by the run
// of another event of the letter (two event ids for one message id, run at
// once): that run sends it, or its task, run again after a crash, hands
// it to the delivery's own task. A run of this event (run again after a
// crash), a mark without a claim (from before claims, or a delivery
// task's) or a claim abandoned (claimAbandoned) is this run's to hand on.
func othersClaim(l *Letter, deliveryID, run string, now time.Time) bool {
	by := l.ClaimedBy[deliveryID]
	return by != "" && by != run && now.Sub(l.InFlight[deliveryID]) < claimAbandoned
}

// claimAbandoned is the age from which a claim is no longer left to the
// run that made it: longer than any run can hold one (asynq ends a task at
// its deadline, 30 minutes for the longest, asynq's default; the send on
// its way then ends within its own timeout). Such a claim's run is gone:
// crashed, and its task not yet run again, or archived (a letters task
// past its retries), where its deliveries would otherwise stay in flight
// until ops re-ran it. Their own tasks decide them, as an interrupted
// attempt's (a delivery report, or a re-send marked as one).
const claimAbandoned = time.Hour

// filed takes the unread count of the letter's arrival for its alerts.
func (r *letterRun) filed(res WriteResult) {
	if r.w.Arrive != nil {
		r.c.Unread = res.Unread // includes this letter unless it was read
	}
}

// decorateRun opens the channel's coalescing window with a sent alert.
func (d *Dispatcher) decorateRun(r *letterRun) func(*result, *LetterWrite) {
	return func(res *result, out *LetterWrite) {
		if win := d.coalesceWindow(r.stored, res.dl.to.Channel); win > 0 && res.out.Result == ResultSent {
			out.Windows = map[channels.Name]time.Time{res.dl.to.Channel: r.now.Add(win)}
		}
	}
}

// finish gives every delivery that failed or waits a task of its own, and
// schedules the reminder. Every outcome is written by then; the event's
// mark (markWrite) goes after: a crash in between re-runs the event,
// which skips the deliveries already done.
func (d *Dispatcher) finish(ctx context.Context, r *letterRun, results []result) error {
	for _, res := range results {
		if !res.final {
			r.pending = append(r.pending, res)
		}
	}
	for _, res := range r.pending {
		if err := d.enqueueDelivery(ctx, r.ev.CitizenKey, r.stored, res); err != nil {
			return err
		}
	}
	if err := d.remind(ctx, r.ev.CitizenKey, r.stored, r.plan.digital, r.now); err != nil {
		return err
	}
	if r.plan.digital { // an exempt owner's letter on paper alerts no holder
		return d.alertHolders(ctx, r.ev.CitizenKey, r.ev.ID, r.holders, r.stored, r.now)
	}
	return nil
}

// settled reports whether nothing follows a letter's sends but its mark:
// no delivery waits for a task of its own, no reminder is to be
// scheduled and no holder is to be alerted. A send that fails still
// unsettles it (markLast sees every result).
func (d *Dispatcher) settled(r *letterRun) bool {
	if len(r.pending) > 0 {
		return false
	}
	if _, ok := d.reminderAt(r.stored, r.plan.digital, r.now); ok {
		return false
	}
	return !r.plan.digital || len(alerted(r.ev.CitizenKey, r.holders, r.now)) == 0
}

// markLast adds the event's mark to the last write of a settled letter's
// sends if every send came to a final outcome (a delivery that failed or
// waits gets its task before the mark, in finish).
func (r *letterRun) markLast(results []result, w *LetterWrite) {
	for _, res := range results {
		if !res.final {
			return
		}
	}
	w.Mark, r.marked = r.markWrite().Mark, true
}

// markWrite marks the letter's event processed.
func (r *letterRun) markWrite() LetterWrite {
	m := r.ev.Message.MessageID
	return LetterWrite{Citizen: r.ev.CitizenKey, MessageID: m, Mark: EventRef{Citizen: r.ev.CitizenKey, MessageID: m, ID: r.ev.ID}}
}

// add puts a send's outcome in the write: a final one as a done mark, any
// other as a trail entry.
func (w *LetterWrite) add(r result) {
	if r.final {
		w.Done = append(w.Done, r.out)
		return
	}
	w.Trail = append(w.Trail, r.out)
	if r.pin != "" {
		// The provider may have taken it: the delivery stays in flight,
		// pinned to that provider.
		if w.Handed == nil {
			w.Handed = map[string]string{}
		}
		w.Handed[r.dl.id] = r.pin
	}
}

// empty reports whether w writes nothing.
func (w *LetterWrite) empty() bool {
	return w.Arrive == nil && len(w.Done) == 0 && len(w.Trail) == 0 && len(w.InFlight) == 0 && len(w.Handed) == 0 &&
		len(w.Track) == 0 && len(w.Windows) == 0 && w.Mark.IsZero()
}

// write applies one letter write.
func (d *Dispatcher) write(ctx context.Context, w LetterWrite) error {
	_, err := d.cfg.Store.Write(ctx, w)
	return err
}

// record writes a provider's answer. A send the provider took must not
// become a re-send because the store hiccuped: a transient store error is
// retried with backoff for up to RecordRetry, even past the task's
// context (the answer is in hand; losing it costs a duplicate).
func (d *Dispatcher) record(ctx context.Context, w LetterWrite) error {
	ctx = context.WithoutCancel(ctx)
	// Wall time, not the configured clock: this bounds real waiting.
	deadline := time.Now().Add(d.cfg.RecordRetry)
	wait := 50 * time.Millisecond
	for {
		_, err := d.cfg.Store.Write(ctx, w)
		if err == nil || !errors.Is(err, ErrTransient) || time.Now().Add(wait).After(deadline) {
			return err
		}
		d.log.WarnContext(ctx, "recording a provider's answer failed: retrying", "message_id", w.MessageID, "error", err)
		t := time.NewTimer(wait)
		<-t.C
		wait = min(2*wait, 2*time.Second)
	}
}

// tracked reports whether a channel's provider sends delivery reports.
func (d *Dispatcher) tracked(ch channels.Name) bool { return slices.Contains(d.cfg.TrackReports, ch) }

// sendHooks let a caller of sendRecorded take part in its writes; each
// may be nil.
type sendHooks struct {
	// ready gets the result of the write before any send.
	ready func(WriteResult)
	// decorate may adjust a result and its write before it is written.
	decorate func(*result, *LetterWrite)
	// last may add to the last write, made once every send has its
	// result (with nothing to send, the write before the sends).
	last func([]result, *LetterWrite)
}

// sendRecorded makes one attempt at each delivery of todo, concurrently,
// and records around every provider call: first one write, pre, with each
// delivery marked in flight (and tracked where its provider reports, so
// a report can find the letter) — h.ready gets its result before any
// send; then each outcome the moment its provider answered. One recorder
// writes the outcomes: it takes the first answer, adds every other answer
// already in, and writes them together in one write (the letter's group
// commit: providers that answer at once cost one HSET, not one each); an
// answer that comes later waits for no sibling, only for the write in
// progress.
func (d *Dispatcher) sendRecorded(ctx context.Context, c *Citizen, l *Letter, pre LetterWrite, todo []delivery, attempt int,
	h sendHooks, adjust ...func(*channels.Alert)) ([]result, error) {
	pre = d.withInFlight(pre, todo)
	if len(todo) == 0 && h.last != nil {
		h.last(nil, &pre)
	}
	if !pre.empty() {
		res, err := d.cfg.Store.Write(ctx, pre)
		if err != nil {
			return nil, err
		}
		if h.ready != nil {
			h.ready(res)
		}
		todo = d.untaken(ctx, pre.MessageID, todo, res.Taken)
	}
	return d.sendAll(ctx, c, l, pre, todo, attempt, h, adjust...)
}

// untaken drops from todo the deliveries another run of the letter
// claimed between this run's look-up and its write before the sends
// (WriteResult.Taken): that run sends them.
func (d *Dispatcher) untaken(ctx context.Context, messageID string, todo []delivery, taken []string) []delivery {
	if len(taken) == 0 {
		return todo
	}
	d.log.InfoContext(ctx, "another run of the letter is sending some of its alerts: left to it", "message_id", messageID,
		"deliveries", len(taken))
	return slices.DeleteFunc(slices.Clone(todo), func(dl delivery) bool { return slices.Contains(taken, dl.id) })
}

// withInFlight adds to pre the in-flight marks of todo's deliveries (and
// their tracking where the provider reports).
func (d *Dispatcher) withInFlight(pre LetterWrite, todo []delivery) LetterWrite {
	for _, dl := range todo {
		pre.InFlight = append(pre.InFlight, dl.id)
		if d.tracked(dl.to.Channel) {
			pre.Track = append(pre.Track, dl.id)
		}
	}
	return pre
}

// sendAll is sendRecorded after its first write: the sends, each outcome
// recorded as its provider answers (the letter's group commit).
func (d *Dispatcher) sendAll(ctx context.Context, c *Citizen, l *Letter, pre LetterWrite, todo []delivery, attempt int,
	h sendHooks, adjust ...func(*channels.Alert)) ([]result, error) {
	citizen, messageID := pre.Citizen, pre.MessageID
	res := make([]result, len(todo))
	writes := make([]LetterWrite, len(todo))
	answered := make(chan int, len(todo)) // never blocks a sender
	one := func(i int, dl delivery) {
		// A channel of several providers names each provider before it
		// hands the alert over: recorded first, so that a run that dies
		// mid-call re-sends through that provider only.
		hctx := channels.WithHandoff(ctx, func(provider string) error {
			// The pin keeps the run's claim (pre.Run): another event's
			// run still leaves the delivery to this one.
			return d.write(ctx, LetterWrite{Citizen: citizen, MessageID: messageID, Handed: map[string]string{dl.id: provider},
				Follows: true, Run: pre.Run})
		})
		r := d.send(hctx, c, l, dl, attempt, adjust...)
		// The write before the sends put the letter's hash in place.
		w := LetterWrite{Citizen: citizen, MessageID: messageID, Follows: true}
		if h.decorate != nil {
			h.decorate(&r, &w)
		}
		w.add(r)
		res[i], writes[i] = r, w
		answered <- i
	}
	if len(todo) == 1 {
		one(0, todo[0])
	} else {
		for i, dl := range todo {
			go one(i, dl)
		}
	}
	var errs []error
	for left := len(todo); left > 0; {
		w := writes[<-answered]
		left--
		// Let senders that have their answer hand it in: one yield, no
		// waiting for a provider.
		runtime.Gosched()
	drain:
		for left > 0 {
			select {
			case i := <-answered:
				w.merge(writes[i])
				left--
			default:
				break drain
			}
		}
		if left == 0 && h.last != nil && len(errs) == 0 {
			h.last(res, &w)
		}
		if err := d.record(ctx, w); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("record outcomes: %w", err)
	}
	return res, nil
}

// merge adds the effects of x, a write to the same letter, to w.
func (w *LetterWrite) merge(x LetterWrite) {
	w.Done = append(w.Done, x.Done...)
	w.Trail = append(w.Trail, x.Trail...)
	w.InFlight = append(w.InFlight, x.InFlight...)
	for id, p := range x.Handed {
		if w.Handed == nil {
			w.Handed = map[string]string{}
		}
		w.Handed[id] = p
	}
	w.Track = append(w.Track, x.Track...)
	for ch, until := range x.Windows {
		if w.Windows == nil {
			w.Windows = make(map[channels.Name]time.Time)
		}
		if until.After(w.Windows[ch]) {
			w.Windows[ch] = until
		}
	}
}

// expires is when a letter's alerts are no longer worth sending: AlertTTL
// after the letter arrived, or after it was released (do_not_deliver_until).
func (d *Dispatcher) expires(l *Letter) time.Time {
	from := l.ReceivedAt
	if l.NotBefore.After(from) {
		from = l.NotBefore
	}
	return from.Add(d.cfg.AlertTTL)
}

type result struct {
	dl    delivery
	out   Outcome
	err   error
	until time.Time // deferred until
	// final marks the delivery done: it is not attempted again.
	final bool
	// track remembers the delivery for its provider's reports.
	track bool
	// pin is the provider of a channel of several that may have taken the
	// alert: the delivery stays in flight, pinned to it.
	pin string
}

// alert builds the content of a letter's alert for one citizen.
func (d *Dispatcher) alert(c *Citizen, l *Letter, dl delivery) channels.Alert {
	lang := c.Language
	if lang == "" {
		lang = "da"
	}
	return channels.Alert{
		DeliveryID:   dl.id,
		MessageID:    l.MessageID,
		Language:     lang,
		Senders:      []string{l.SenderName},
		Count:        1,
		Notification: l.Notification,
		MailboxURL:   d.cfg.MailboxURL,
		Badge:        c.Unread,
		Urgent:       l.Priority == event.Urgent,
		Expires:      d.expires(l),
	}
}

// deferredOutcome records a delivery held until a time.
func deferredOutcome(now time.Time, dl delivery, until time.Time, why string) Outcome {
	return Outcome{At: now, DeliveryID: dl.id, Channel: dl.to.Channel, App: dl.to.App, Holder: HolderRef(dl.holder), Result: ResultDeferred,
		Reason: why + " until " + rules.LocalTime(until, "2006-01-02 15:04 MST")}
}

// send makes one attempt at one delivery and classifies its outcome.
func (d *Dispatcher) send(ctx context.Context, c *Citizen, l *Letter, dl delivery, attempt int, adjust ...func(*channels.Alert)) result {
	if d.cfg.Limiter != nil {
		wait, err := d.cfg.Limiter.Reserve(ctx, dl.to.Channel)
		if err == nil && wait > 0 {
			// Over the channel's rate: wait as a throttled send does,
			// without spending a retry.
			err = channels.Throttle(wait, "rate limit", errors.New("over the channel's configured send rate"))
		}
		if err != nil {
			return result{dl: dl, err: err, out: Outcome{At: d.cfg.Now(), DeliveryID: dl.id, Channel: dl.to.Channel,
				App: dl.to.App, Holder: HolderRef(dl.holder), Result: ResultRetrying, Kind: channels.KindOf(err).String(), Code: channels.CodeOf(err), Attempt: attempt}}
		}
	}
	s := d.cfg.Senders[dl.to.Channel]
	sctx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
	start := d.cfg.Now()
	a := d.alert(c, l, dl)
	for _, f := range adjust {
		f(&a)
	}
	// An earlier attempt handed to one of the channel's providers may
	// have been taken: this one goes there only.
	a.Provider = l.Handed[dl.id]
	rc, err := s.Send(sctx, dl.to, a)
	cancel()
	took := d.cfg.Now().Sub(start)
	out := Outcome{At: d.cfg.Now(), DeliveryID: dl.id, Channel: dl.to.Channel, App: dl.to.App,
		Holder: HolderRef(dl.holder), Attempt: attempt, DurationMS: took.Milliseconds()}
	// The send's attributes, built only for a line that is logged (a
	// With per send cost a bulk letter's four sends ≈ 5 % of the drain's
	// CPU, logged or not).
	logProvider := "" // named in the line: the one that took it, or may have
	log := func(level slog.Level, msg string, args ...any) {
		if !d.log.Enabled(ctx, level) {
			return
		}
		attrs := []any{"message_id", l.MessageID, "channel", dl.to.Channel, "delivery_id", dl.id,
			"attempt", attempt, "duration_ms", out.DurationMS, "access_holder", dl.holder != ""}
		if logProvider != "" {
			attrs = append(attrs, "provider", logProvider)
		}
		d.log.Log(ctx, level, msg, append(attrs, args...)...)
	}
	if err == nil {
		out.Result, out.ProviderID, out.Provider = ResultSent, rc.ProviderID, rc.Provider
		logProvider = rc.Provider
		track := slices.Contains(d.cfg.TrackReports, dl.to.Channel)
		d.obs.Delivered(dl.to.Channel, ResultSent, "", took)
		if !l.ReceivedAt.IsZero() && !a.Silent { // a silent badge update is no alert
			d.obs.EventToAlert(dl.to.Channel, d.cfg.Now().Sub(l.ReceivedAt))
		}
		log(slog.LevelInfo, "alert sent", "provider_id", rc.ProviderID)
		return result{dl: dl, out: out, final: true, track: track}
	}
	kind := channels.KindOf(err)
	out.Kind, out.Code = kind.String(), channels.CodeOf(err)
	out.Result = ResultFailed
	final := false
	provider, unsure := channels.ProviderOf(err)
	out.Provider = provider
	pin := ""
	if unsure {
		pin, logProvider = provider, provider
	}
	switch kind {
	case channels.Gone:
		out.Result, final = ResultGone, true
		goneAt := d.cfg.Now()
		if t, ok := channels.GoneAt(err); ok {
			goneAt = wholeSecond(t)
		}
		removed, rerr := d.cfg.Store.RemoveAddress(ctx, c.Key, dl.to, goneAt)
		if rerr != nil {
			log(slog.LevelError, "removing a gone address failed", "error", rerr)
		} else if removed {
			d.obs.AddressRemoved(dl.to.Channel)
			out.Reason = "address removed"
		} else {
			out.Reason = "address kept: registered after the provider's report"
		}
		log(slog.LevelWarn, "alert address gone", "kind", kind.String(), "code", out.Code, "removed", removed)
	case channels.Permanent:
		// Not final: the delivery's task is archived, and ops may re-run it.
		log(slog.LevelError, "alert failed permanently: archived for ops", "kind", kind.String(), "code", out.Code, "error", err)
	case channels.Misconfigured:
		out.Result = ResultRetrying
		log(slog.LevelError, "channel misconfigured: alert will be retried", "kind", kind.String(), "code", out.Code, "error", err)
	default:
		out.Result = ResultRetrying
		log(slog.LevelWarn, "alert failed: will be retried", "kind", kind.String(), "code", out.Code, "error", err)
	}
	d.obs.Delivered(dl.to.Channel, out.Result, out.Kind, took)
	return result{dl: dl, out: out, err: err, final: final, pin: pin}
}

// enqueueDelivery gives a delivery that failed, or is held, a task of its
// own, its id the delivery id so it exists once however often this runs.
func (d *Dispatcher) enqueueDelivery(ctx context.Context, citizen string, l *Letter, r result) error {
	p := deliveryTask{Citizen: citizen, MessageID: l.MessageID, DeliveryID: r.dl.id,
		Channel: string(r.dl.to.Channel), Expires: d.expires(l).Unix(), Holder: r.dl.holder}
	if r.dl.to.Channel == channels.Paper {
		p.Expires = 0 // paper is owed, however late
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	a := taskArgs{id: "dl:" + r.dl.id, priority: l.Priority, sendTimeout: d.cfg.SendTimeout}
	switch {
	case !r.until.IsZero():
		a.at = []asynq.Option{asynq.ProcessAt(r.until)}
	case channels.KindOf(r.err) == channels.Permanent:
		// Runs once more at once and, refused again, is archived for ops.
	default:
		a.at = []asynq.Option{asynq.ProcessIn(d.cfg.FirstRetryDelay(r.err))}
	}
	return d.enqueue(ctx, newTask(TypeDelivery, b, d.cfg.Queues, a))
}

// HandleDelivery retries one delivery.
func (d *Dispatcher) HandleDelivery(ctx context.Context, t *asynq.Task) error {
	var p deliveryTask
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.DeliveryID == "" {
		return fmt.Errorf("delivery task payload: %w", errors.Join(err, asynq.SkipRetry))
	}
	now := d.cfg.Now()
	v, err := d.cfg.Store.Load(ctx, p.Citizen, p.MessageID)
	if err != nil {
		return err
	}
	c, l := v.Citizen, v.Letter
	if !v.Stored {
		// The letter's first processing may not have recorded it yet (this
		// task was enqueued on its way): try again, until the alert expires.
		if p.Expires > 0 && now.Unix() > p.Expires {
			d.log.WarnContext(ctx, "delivery for an unknown letter dropped", "message_id", p.MessageID, "delivery_id", p.DeliveryID)
			return nil
		}
		return fmt.Errorf("delivery %s: letter not recorded yet", p.DeliveryID)
	}
	if l.Done[p.DeliveryID] {
		return nil
	}
	attempt := retryCount(ctx) + 2
	skip := func(reason string) error {
		return d.write(ctx, LetterWrite{Citizen: p.Citizen, MessageID: p.MessageID, Done: []Outcome{{At: now,
			DeliveryID: p.DeliveryID, Channel: channels.Name(p.Channel), Holder: HolderRef(p.Holder), Result: ResultSkipped,
			Reason: reason, Attempt: attempt}}})
	}
	if p.Expires > 0 && now.Unix() > p.Expires {
		return skip("expired")
	}
	var candidates []delivery
	if p.Holder == "" {
		candidates = append(d.addresses(c, p.MessageID), d.paperAddresses(c, p.MessageID)...)
	} else {
		// A holder's delivery that was held or failed: the relation may
		// have ended since.
		a, found, err := d.holderAccess(ctx, p.Citizen, p.Holder)
		if err != nil {
			return err
		}
		if why := holderEnded(a, found, now); why != "" {
			return skip(why)
		}
		hv, err := d.cfg.Store.Load(ctx, p.Holder, p.MessageID)
		if err != nil {
			return err
		}
		c = hv.Citizen
		candidates, _ = d.contactsAs(c, p.MessageID, p.Holder)
		l = holderLetter(c, l)
	}
	var dl *delivery
	for _, x := range candidates {
		if x.id == p.DeliveryID {
			dl = &x
			break
		}
	}
	if dl == nil {
		return skip("address no longer registered")
	}
	if why := noConsent(c, l, dl.to); why != "" {
		return skip(why) // consent revoked since the letter arrived
	}
	if l.Read && dl.to.Channel != channels.Paper {
		return skip("read")
	}
	if until, why := d.hold(l, dl.to.Channel, now); !until.IsZero() {
		// Still held (a retry that fell into quiet hours): wait without
		// spending a retry.
		return channels.Throttle(until.Sub(now), why, errors.New("delivery held: "+why))
	}
	reason := ""
	if since, ok := l.InFlight[p.DeliveryID]; ok {
		// An attempt died while its provider call was in flight. A provider
		// that reports gets the time to say it took the send (Report then
		// records it); the wait spends no retry.
		if wait := since.Add(d.cfg.ReportWait).Sub(now); d.tracked(dl.to.Channel) && wait > 0 {
			return channels.Throttle(min(wait, reportPoll), "awaiting delivery report",
				errors.New("an interrupted attempt may have been sent: waiting for its delivery report"))
		}
		reason = ReasonResent
	}
	results, err := d.sendRecorded(ctx, c, l, LetterWrite{Citizen: p.Citizen, MessageID: p.MessageID}, []delivery{*dl}, attempt,
		sendHooks{decorate: func(r *result, _ *LetterWrite) {
			if reason != "" {
				r.out.Reason = joinReason(reason, r.out.Reason)
			}
		}})
	if err != nil {
		return err
	}
	return taskError(results[0].err)
}

// ReasonResent marks in the trail every send that may repeat one a
// provider already took; ReasonConfirmed a send an interrupted attempt
// made, confirmed by its provider's delivery report.
const (
	ReasonResent    = "re-sent after an interrupted attempt"
	ReasonConfirmed = "confirmed by the delivery report after an interrupted attempt"
)

// reportPoll is how often a delivery awaiting its report looks again.
const reportPoll = 15 * time.Second

func joinReason(a, b string) string {
	if b == "" {
		return a
	}
	return a + "; " + b
}

func retryCount(ctx context.Context) int {
	n, _ := asynq.GetRetryCount(ctx)
	return n
}

func taskID(ctx context.Context) string {
	id, _ := asynq.GetTaskID(ctx)
	return id
}

// DeliveryReport is a provider's word on a delivery after it accepted it
// (an SMS gateway's delivery report).
type DeliveryReport struct {
	Channel    channels.Name
	DeliveryID string
	ProviderID string
	Status     string // the provider's status: DELIVERED, UNDELIVERABLE, ...
	Code       string // the provider's error code, if any
	Final      bool   // no later status will follow
	// Dead says the address cannot receive on this channel: it is
	// removed until the citizen registers it again.
	Dead bool
	At   time.Time
}

// Report applies a delivery report to its letter's trail. Reports may
// repeat and arrive out of order: a final state is never replaced. An
// unknown or expired delivery is ErrNotFound.
func (d *Dispatcher) Report(ctx context.Context, r DeliveryReport) error {
	citizen, msgID, err := d.cfg.Store.DeliveryRef(ctx, r.DeliveryID)
	if err != nil {
		return err
	}
	v, err := d.cfg.Store.Load(ctx, citizen, msgID)
	if err != nil {
		return err
	}
	if _, inFlight := v.Letter.InFlight[r.DeliveryID]; inFlight && !v.Letter.Done[r.DeliveryID] {
		// A report proves the provider took a send whose attempt died
		// before its outcome was written: it is sent, and not sent again.
		sent := Outcome{At: d.cfg.Now(), DeliveryID: r.DeliveryID, Channel: r.Channel, Result: ResultSent,
			Reason: ReasonConfirmed, ProviderID: r.ProviderID}
		if err := d.record(ctx, LetterWrite{Citizen: citizen, MessageID: msgID, Done: []Outcome{sent}}); err != nil {
			return err
		}
		d.log.InfoContext(ctx, "interrupted send confirmed by its delivery report", "message_id", msgID,
			"channel", r.Channel, "delivery_id", r.DeliveryID)
	}
	entry := Outcome{At: r.At, DeliveryID: r.DeliveryID, Channel: r.Channel, Result: ResultReport,
		Reason: r.Status, Code: r.Code, ProviderID: r.ProviderID}
	applied, err := d.cfg.Store.ApplyReport(ctx, ReportWrite{Citizen: citizen, MessageID: msgID, DeliveryID: r.DeliveryID,
		Status: r.Status, Final: r.Final, Entry: entry})
	if err != nil || !applied {
		return err
	}
	d.log.InfoContext(ctx, "delivery report", "message_id", msgID, "channel", r.Channel, "delivery_id", r.DeliveryID,
		"status", r.Status, "code", r.Code)
	if !r.Dead {
		return nil
	}
	owner, candidates := citizen, d.addresses(v.Citizen, msgID)
	if !slices.ContainsFunc(candidates, func(dl delivery) bool { return dl.id == r.DeliveryID }) {
		// An access holder's delivery of the letter: the address is the
		// holder's.
		if owner, candidates, err = d.holderDelivery(ctx, citizen, msgID, r.DeliveryID); err != nil {
			return err
		}
	}
	for _, dl := range candidates {
		if dl.id == r.DeliveryID {
			removed, err := d.cfg.Store.RemoveAddress(ctx, owner, dl.to, wholeSecond(r.At))
			if removed {
				d.obs.AddressRemoved(r.Channel)
				d.log.WarnContext(ctx, "address removed after a delivery report", "message_id", msgID,
					"channel", r.Channel, "status", r.Status)
			}
			return err
		}
	}
	return nil
}

// wholeSecond reads a provider's time given in whole seconds (APNs 410
// timestamps, gateway reports) as the end of that second, so a registration
// in the same second counts as before the provider's word.
func wholeSecond(t time.Time) time.Time {
	if t.Nanosecond() == 0 {
		return t.Add(time.Second - time.Nanosecond)
	}
	return t
}
