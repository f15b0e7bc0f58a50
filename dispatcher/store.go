package dispatcher

import (
	"context"
	"errors"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/dispatcher/event"
)

// Citizen is what postbud knows of one citizen, under the pseudonymous key.
// Its addresses are personal data and never logged.
type Citizen struct {
	Key      string
	Email    string
	Mobile   string
	Language string // "da" (default) or "en"
	Address  string // registered postal address, for paper
	// EmailConfirmed and MobileConfirmed say the citizen confirmed the
	// address with the code postbud sent to it (or core migrated it as
	// confirmed): alerts go only to a confirmed email or mobile.
	EmailConfirmed  bool
	MobileConfirmed bool
	Devices         []Device
	// Exempt is set while the citizen is exempt from Digital Post.
	Exempt bool
	// ExemptSince is when the exemption began (the occurred_at of the
	// exemption.granted that made the citizen exempt); zero when not
	// exempt.
	ExemptSince time.Time
	// Forward is the address the citizen gave for the paper forwarding of
	// unopened letters on exemption (else Address).
	Forward string
	// Unread is the number of the citizen's unread letters (the badge).
	Unread int
	// Windows are the ends of the channels' open coalescing windows.
	Windows map[channels.Name]time.Time
	// Consents are the platforms the citizen allowed to show letters from
	// public senders (consent.granted), with the time of that event. A
	// platform absent has no consent: it was revoked, or never given.
	Consents map[event.Platform]time.Time
}

// Consented reports whether the citizen gave platform p consent to show
// letters from public senders.
func (c *Citizen) Consented(p event.Platform) bool {
	_, ok := c.Consents[p]
	return ok
}

// ReadState is a letter's read state as every platform should show it.
type ReadState struct {
	MessageID string
	Read      bool
	// Version grows by one each time Read changes; receivers drop a state
	// whose version is not above the last they applied.
	Version   int64
	ChangedAt time.Time
	ChangedBy event.Platform
	// Unread is the citizen's unread count after the change.
	Unread int
	// Received says the letter itself has arrived.
	Received bool
	// Acked is the last version each platform acknowledged (State only).
	Acked map[event.Platform]int64
}

// Device is one registered push token.
type Device struct {
	App          string
	Provider     string // "apns" | "fcm"
	Token        string
	Environment  string
	RegisteredAt time.Time
}

// Letter is what postbud keeps of one letter: who sent it and how it
// stands. Never its subject or content.
type Letter struct {
	MessageID    string
	SenderID     string
	SenderName   string
	SenderKind   event.SenderKind
	Priority     event.Priority
	Notification string // the sender's own alert text, if any
	ReceivedAt   time.Time
	Legal        bool
	// NotBefore holds alerts until then (do_not_deliver_until).
	NotBefore time.Time
	// ReplyBy is the sender's deadline; a reminder goes out before it.
	ReplyBy time.Time

	// Read state (see ReadState).
	Read     bool
	Version  int64
	ChangeAt time.Time
	ChangeBy event.Platform

	// Done holds the ids of deliveries that reached a final outcome (sent,
	// skipped, gone, archived): they are never attempted again.
	Done map[string]bool
	// InFlight holds the deliveries whose provider call was started (the
	// time it was) and has no outcome recorded yet: a run that finds one
	// was interrupted mid-send and must not re-send blindly.
	InFlight map[string]time.Time
	// Handed holds, for deliveries in flight on a channel of several
	// providers (channels/failover), the provider last handed the alert:
	// it may have taken it, so a re-send goes to that provider only.
	Handed map[string]string
	// ClaimedBy holds, for deliveries in flight that a letter's run
	// claimed (LetterWrite.Run), the id of the event whose run it was:
	// that event's task sends it, or, run again after a crash, hands it
	// to its own task; a run of another event leaves it alone.
	ClaimedBy map[string]string
}

// Outcome is one entry of a letter's delivery trail.
type Outcome struct {
	At         time.Time     `json:"at"`
	DeliveryID string        `json:"delivery_id,omitempty"`
	Channel    channels.Name `json:"channel,omitempty"`
	App        string        `json:"app,omitempty"`
	// Holder names the access holder (HolderRef) of a holder's delivery
	// of the letter, or of a read by one; "" for the recipient's own.
	Holder string `json:"holder,omitempty"`
	// Result is sent, skipped, failed, retrying, gone, paper or deferred.
	Result     string `json:"result"`
	Reason     string `json:"reason,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Code       string `json:"code,omitempty"`
	ProviderID string `json:"provider_id,omitempty"`
	// Provider names which of the channel's several providers the
	// attempt went to ("sms-2"); empty for a channel of one provider.
	Provider   string `json:"provider,omitempty"`
	Attempt    int    `json:"attempt,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`
}

// Trail results.
const (
	ResultSent     = "sent"
	ResultSkipped  = "skipped"
	ResultFailed   = "failed"
	ResultRetrying = "retrying"
	ResultGone     = "gone"
	ResultPaper    = "paper"
	ResultReport   = "report"
	ResultDeferred = "deferred"
	ResultNote     = "note"
)

// ErrNotFound is returned for an unknown letter.
var ErrNotFound = errors.New("not found")

// ErrTransient wraps a store error that may pass when the call is made
// again: Redis loading after a restart, a replica read-only during a
// failover, a connection refused or reset, a timeout. A Store wraps such
// errors with it (errors.Is); the dispatcher retries the write of a
// provider's answer on it rather than re-running the task.
var ErrTransient = errors.New("store temporarily unavailable")

// The store, split by role. Each role says what it writes atomically and
// what a re-run sees; Store embeds them all, so wiring takes one value.
// The Redis implementation is in dispatcher/redisstore, and
// dispatcher/storetest is the conformance suite every implementation runs.

// EventRef names one event for its processed mark. MessageID is the letter
// a letter event is about ("" for citizen-level events); the store decides
// where the mark lives, callers never do.
type EventRef struct {
	Citizen   string
	MessageID string
	ID        string
}

// IsZero reports whether no event is named (a write that marks nothing).
func (e EventRef) IsZero() bool { return e.ID == "" }

// Events is the processed marks of events. A mark is set only by Mark or by
// a write whose Mark field names the event, in the same atomic step as the
// write's guarded part (see each write). Marks expire after the store's
// event retention (letter events: with the letter).
type Events interface {
	// Seen reports whether ev was marked processed.
	Seen(ctx context.Context, ev EventRef) (bool, error)
	// Mark marks ev processed. It creates nothing else: a letter event's
	// mark does not make a letter (State stays ErrNotFound, Load not
	// Stored).
	Mark(ctx context.Context, ev EventRef) error
	// SeenAll is Seen for many events in one round trip, in the order of
	// evs (ingest: a batch, a group of single letters), that also counts
	// a letter event marked by Queue as seen.
	SeenAll(ctx context.Context, evs []EventRef) ([]bool, error)
	// Queue marks letter events queued in a task they share with other
	// letters (a group of single letters, Config.GroupAccepts), whose task
	// id cannot answer for each of them: SeenAll, not Seen, counts them
	// for ttl, so a copy sent while the task waits is answered duplicate.
	// The mark is not the letter's: it makes no letter and expires on its
	// own (a letter whose task was deleted unprocessed is accepted again
	// once it has). An event without a MessageID is left alone.
	Queue(ctx context.Context, evs []EventRef, ttl time.Duration) error
}

// ContactWrite is one contact.updated event.
type ContactWrite struct {
	Citizen string
	Contact *event.ContactData // nil field: unchanged; "": deleted
	At      time.Time          // last writer wins, one time for the whole record
	Mark    EventRef           // marked in the same atomic step, applied or stale
	// EmailFingerprint and MobileFingerprint are the fingerprints
	// (Keyer.AddressFingerprint) of the email and mobile Contact sets. An
	// address set with a fingerprint other than the stored one, or
	// without one, or removed, loses its confirmation in the same atomic
	// step: changing an address starts its confirmation over.
	EmailFingerprint, MobileFingerprint string
	// Confirmed marks the email and mobile Contact sets confirmed (core's
	// migration of addresses confirmed in an earlier system); only when
	// the write applies.
	Confirmed bool
}

// DeviceWrite registers (Remove false) or unregisters a push token.
type DeviceWrite struct {
	Citizen string
	Device  Device // RegisteredAt is the event time
	Remove  bool
	Mark    EventRef
}

// ExemptionWrite is exemption.granted (Exempt) or exemption.revoked.
type ExemptionWrite struct {
	Citizen string
	Exempt  bool
	Forward string // granted only; "" clears
	At      time.Time
	Mark    EventRef // zero when the caller marks after forwarding
}

// Exemption is a citizen's exemption from Digital Post as recorded.
type Exemption struct {
	Exempt bool
	// Since is when the exemption began: set in the same atomic step as
	// the grant that made the citizen exempt, kept by later grants while
	// the exemption lasts, cleared by the revoke. Zero when not exempt.
	Since time.Time
}

// ConsentWrite is consent.granted (Granted) or consent.revoked for one
// platform. Each platform's consent is its own record: last writer wins
// by At per platform; at the same At a revocation wins.
type ConsentWrite struct {
	Citizen  string
	Platform event.Platform
	Granted  bool
	At       time.Time
	Mark     EventRef
}

// Registry is the citizen's addresses, exemption and consents. Each write is one
// atomic step: a write whose Mark was already set changes nothing and
// reports applied false; otherwise it applies unless stale (by At; device
// writes have no staleness check) and sets Mark either way. A re-run of a
// marked write therefore changes nothing.
type Registry interface {
	UpdateContact(ctx context.Context, w ContactWrite) (applied bool, err error)
	SetDevice(ctx context.Context, w DeviceWrite) (applied bool, err error)
	SetExemption(ctx context.Context, w ExemptionWrite) (applied bool, err error)
	// ExemptionOf reads the citizen's exemption and since when: one read,
	// the same for an unknown citizen as for a known one that is not
	// exempt (the zero Exemption), so an answer built on it cannot tell
	// them apart.
	ExemptionOf(ctx context.Context, citizen string) (Exemption, error)
	SetConsent(ctx context.Context, w ConsentWrite) (applied bool, err error)
	// RemoveAddress forgets an address a provider said is gone, unless it
	// changed or was (re-)registered after goneAt (a registration at
	// goneAt is before it); an email or mobile loses its confirmation with
	// it. Channels without a registry entry are an error.
	RemoveAddress(ctx context.Context, citizen string, to channels.Address, goneAt time.Time) (removed bool, err error)
}

// LetterView is what the dispatcher reads of one letter and its citizen.
type LetterView struct {
	// Citizen is never nil unless Seen: an unknown citizen is empty.
	// Load reads its Unread, the citizen's unread count; Lookup and
	// LookupAll leave it 0 (not read): a letter's processing takes the
	// count from its arrival (WriteResult.Unread), a round trip's read
	// less per letter.
	Citizen *Citizen
	// Letter is never nil unless Seen: a letter not stored yet has its
	// MessageID and any read state that came first.
	Letter *Letter
	// Stored says the letter's metadata was written (an Arrive).
	Stored bool
	// Seen says the Lookup's event was marked; then Citizen and Letter
	// are nil.
	Seen bool
	// Holders are the citizen's granted access relations, as HoldersOf
	// returns them (read in the same round trip: a letter of a citizen
	// without holders costs no call of its own).
	Holders []Access
}

// Arrival is a letter's first processing, or a later run's filing of a
// stored letter (which stores no metadata, renews the letter's expiry and
// reads the unread count).
// Every 16th letter filed (by the citizen's count after it) also drops the
// citizen's letters past retention from the unread index.
type Arrival struct {
	// Meta carries the metadata (SenderID … ReplyBy); its read state,
	// Done and InFlight are not written.
	Meta *Letter
}

// LetterWrite is one write to one letter, every effect named.
type LetterWrite struct {
	Citizen   string
	MessageID string
	// Arrive stores the metadata (only if not stored yet) and files the
	// letter in the unread index unless it is read already.
	Arrive *Arrival
	// Done are final outcomes: each marks its DeliveryID done for good,
	// clears its in-flight mark, and is its trail entry.
	Done []Outcome
	// Trail are other trail entries (notes, retrying, deferred, failed);
	// an entry with a DeliveryID clears that delivery's in-flight mark
	// (its provider answered).
	Trail []Outcome
	// InFlight marks these deliveries as about to be handed to their
	// providers (at the write's time).
	InFlight []string
	// Claim makes the InFlight marks of a write without Arrive claims, as
	// an arrival's are (WriteResult.Taken): a run's first write of
	// deliveries another run of the same letter may be about to send (an
	// access holder's). A delivery's own task, which takes over an
	// interrupted attempt's mark, does not claim.
	Claim bool
	// Run is the (pseudonymised) id of the event whose run makes the
	// write's claims, kept with them and with its Handed pins
	// (Letter.ClaimedBy).
	Run string
	// Handed marks deliveries in flight as handed to the named provider
	// (Letter.Handed), at the write's time. It outranks a Trail entry of
	// the same delivery in the same write: the mark stays, because the
	// provider may have taken the alert.
	Handed map[string]string
	// Track remembers these deliveries for the providers' reports
	// (DeliveryRef).
	Track []string
	// Windows opens coalescing windows on the citizen, per channel, until.
	Windows map[channels.Name]time.Time
	// Mark marks the letter event processed.
	Mark EventRef
	// Follows says an earlier write of the same run put the letter's
	// hash in place moments before, with its expiry (the write before a
	// single letter's sends; a batch letter's arrival in the same task):
	// this write leaves the expiry alone instead of setting one where
	// there is none. A letter's hash is never deleted (Redis runs
	// noeviction; deploy/redis.conf), and a read letter's shorter expiry
	// (POSTBUD_READ_LETTER_TTL, at least 1h) outlasts a task, so it still
	// has one. A store may ignore it (it saves Redis a command, nothing
	// else).
	Follows bool
}

// WriteResult is what a LetterWrite did.
type WriteResult struct {
	// Unread is the citizen's unread count right after an Arrive (it
	// includes the letter unless it was read, and every letter filed
	// before); 0 for a write without Arrive.
	Unread int
	// Taken are the deliveries of an Arrive or Claim write's InFlight that another
	// run holds: their field held another write's in-flight mark or a
	// done mark, and was left as it was. That run sends them (or its
	// task's retry decides); this one must not.
	Taken []string
}

// Letters is letters, their delivery trail and the unread index.
type Letters interface {
	// Lookup reads a citizen and a letter for processing ev, or says ev
	// was processed; the citizen's unread count is not read. The reads go
	// in one round trip but are not one snapshot: the letter's own fields
	// (metadata, read state, marks) are read in one command and are
	// consistent with each other.
	Lookup(ctx context.Context, ev EventRef) (LetterView, error)
	// Load is Lookup without an event, with the citizen's unread count:
	// Stored says whether the letter is there; the view is always usable
	// (no ErrNotFound).
	Load(ctx context.Context, citizen, messageID string) (LetterView, error)
	// Write applies w. Atomic together, in one step: Arrive (metadata,
	// unread filing honouring a read that came first, the trim), the
	// done marks of Done, the in-flight marks set, and Mark — a reader
	// sees all of them or none, and a re-run that finds Mark seen finds
	// the rest. With Arrive, the in-flight marks are claims: a delivery
	// whose field holds another write's in-flight mark or a done mark is
	// not marked but listed in WriteResult.Taken (the same call run again,
	// by a client's retry, takes its own marks again). The clearing of answered in-flight marks (part of the
	// step with Arrive, else just after it; a done mark outranks an
	// in-flight mark), Trail, Track and Windows land before Write
	// returns. Concurrent Writes to one letter each land whole.
	Write(ctx context.Context, w LetterWrite) (WriteResult, error)
	// LookupAll is Lookup for many letters in one round trip (a batch of
	// letters), views in the order of evs. Each view is what Lookup would
	// return; a citizen named twice is read once and both views share
	// equal copies.
	LookupAll(ctx context.Context, evs []EventRef) ([]LetterView, error)
	// WriteAll applies many writes in one round trip, results in the
	// order of ws. Each write is what Write makes of it, atomic as Write
	// is; the writes are not atomic together (a crash may leave some
	// applied). Two writes to one letter apply in order.
	WriteAll(ctx context.Context, ws []LetterWrite) ([]WriteResult, error)
	// Trail returns a letter's trail, oldest first; ErrNotFound if unknown.
	Trail(ctx context.Context, messageID string) ([]Outcome, error)
	// CitizenOf returns the citizen of a letter that was written;
	// ErrNotFound if unknown.
	CitizenOf(ctx context.Context, messageID string) (string, error)
	// UnreadSince returns the unread letters received in [from, to],
	// oldest first.
	UnreadSince(ctx context.Context, citizen string, from, to time.Time) ([]string, error)
}

// LookupWriter is a Letters that can make a batch's look-up and the
// writes planned from it one optimistic step (the batch path's hot spot:
// no conditional script where the look-up already knows the letter). A
// store without it is used as LookupAll, then WriteAll (lookupWriteAll).
type LookupWriter interface {
	// LookupWriteAll looks evs up as LookupAll does, calls plan once with
	// the views and applies the writes plan returns as WriteAll does,
	// results in their order: each write atomic as Write is, with the
	// effects (claims, Taken, the unread count) WriteAll would give it.
	// A letter read that changed before the writes (another run's claim,
	// a read) makes no difference but cost: the writes are then decided
	// on the letter as it is, as WriteAll's are.
	LookupWriteAll(ctx context.Context, evs []EventRef, plan func([]LetterView) ([]LetterWrite, error)) ([]WriteResult, error)
}

// lookupWriteAll is s's LookupWriteAll, or LookupThenWriteAll.
func lookupWriteAll(ctx context.Context, s Letters, evs []EventRef, plan func([]LetterView) ([]LetterWrite, error)) ([]WriteResult, error) {
	if lw, ok := s.(LookupWriter); ok {
		return lw.LookupWriteAll(ctx, evs, plan)
	}
	return LookupThenWriteAll(ctx, s, evs, plan)
}

// LookupThenWriteAll is LookupWriteAll made of LookupAll, plan and
// WriteAll: the way of a store without LookupWriter, and of a
// LookupWriter where it cannot do better.
func LookupThenWriteAll(ctx context.Context, s Letters, evs []EventRef, plan func([]LetterView) ([]LetterWrite, error)) ([]WriteResult, error) {
	views, err := s.LookupAll(ctx, evs)
	if err != nil {
		return nil, err
	}
	ws, err := plan(views)
	if err != nil || len(ws) == 0 {
		return nil, err
	}
	return s.WriteAll(ctx, ws)
}

// StateWrite is one platform's read or unread.
type StateWrite struct {
	Citizen, MessageID string
	Read               bool
	At                 time.Time
	Platform           event.Platform
	// Guard is checked, never set: the caller marks it (Events.Mark)
	// after its fan-out. A re-run before that (a store call run again
	// after a lost connection, a task retried) changes nothing and gets
	// the first run's answer: Changed or Correct as then, so the fan-out
	// is not lost.
	Guard EventRef
}

// StateResult is what applying one StateWrite did.
type StateResult struct {
	State   ReadState // as stored after the write (no Acked)
	Seen    bool      // Guard was marked: nothing applied, State zero
	Changed bool      // Read changed: tell the other platforms
	Correct bool      // lost to a newer, different state: tell Platform
}

// ReadStates is letters' read state. ApplyState is one atomic step: last
// writer wins by At (ties: read over unread, then the greater platform
// name), version +1 per change of Read and per correction, the unread
// index follows; a state for a letter not arrived yet is kept and shows on
// the letter.
type ReadStates interface {
	ApplyState(ctx context.Context, w StateWrite) (StateResult, error)
	// State returns the stored state with Acked; ErrNotFound if neither
	// the letter nor a read state exists.
	State(ctx context.Context, citizen, messageID string) (ReadState, error)
}

// ReportWrite is one provider delivery report.
type ReportWrite struct {
	Citizen, MessageID, DeliveryID string
	Status                         string
	Final                          bool // no later status replaces it
	Entry                          Outcome
}

// Reports is providers' delivery reports. ApplyReport is atomic: a final
// state is never replaced, the same status twice applies once, an unknown
// letter applies nothing.
type Reports interface {
	// DeliveryRef returns the citizen and letter of a tracked delivery
	// (LetterWrite.Track); ErrNotFound when unknown or expired.
	DeliveryRef(ctx context.Context, deliveryID string) (citizen, messageID string, err error)
	ApplyReport(ctx context.Context, w ReportWrite) (applied bool, err error)
}

// SyncKey names one letter's webhooks to one platform.
type SyncKey struct {
	Citizen, MessageID string
	Platform           event.Platform
}

// SyncLock is a held sync lock.
type SyncLock interface {
	// Unlock frees the lock only while it is still this holder's
	// (token-checked), so a holder whose lock lapsed cannot free its
	// successor's.
	Unlock(ctx context.Context) error
}

// Sync serialises and acknowledges the webhooks of one letter to one
// platform.
type Sync interface {
	// LockSync returns nil, nil when another holder has the lock.
	LockSync(ctx context.Context, k SyncKey, ttl time.Duration) (SyncLock, error)
	// AckSync raises the platform's acknowledged version, never lowers
	// it; an unknown letter is left alone.
	AckSync(ctx context.Context, k SyncKey, version int64) error
	// PlatformDisabled and SetPlatformDisabled keep the platforms whose
	// webhook endpoint answered 410.
	PlatformDisabled(ctx context.Context, p event.Platform) (bool, error)
	SetPlatformDisabled(ctx context.Context, p event.Platform, disabled bool) error
}

// Coalescing is the letters held while a channel's window is open. Hold
// reports whether the letter is the first held; a letter held again (a
// re-run, a second device on the channel) is held once, where it was, and
// gets the same answer. Held is oldest first; Release forgets the first n
// (letters held after the caller's Held stay).
type Coalescing interface {
	Hold(ctx context.Context, citizen string, ch channels.Name, messageID string) (first bool, err error)
	Held(ctx context.Context, citizen string, ch channels.Name) ([]string, error)
	Release(ctx context.Context, citizen string, ch channels.Name, n int) error
}

// Replay remembers webhook ids (replay protection).
type Replay interface {
	// Remember records key for ttl and reports whether it was new.
	Remember(ctx context.Context, key string, ttl time.Duration) (fresh bool, err error)
}

// CodeWrite issues one confirmation code for a citizen's email or mobile.
type CodeWrite struct {
	Citizen string
	Channel channels.Name // Email or SMS
	// Fingerprint is the fingerprint of the address the code goes to;
	// it must be the registered one's.
	Fingerprint string
	// MAC is the code in the form it is kept (Keyer.CodeMAC).
	MAC string
	// Issuer names the request the code answers (its task id): the rate
	// counts requests, so a retry of one whose send failed replaces its
	// code without spending another.
	Issuer string
	At     time.Time
	// Replace replaces a pending code (a resend); without it a valid code
	// another request issued for the address stands (CodePending).
	Replace bool
}

// CodeIssue is what IssueCode did.
type CodeIssue int

// The answers of IssueCode.
const (
	CodeIssued    CodeIssue = iota + 1
	CodePending             // a valid code of another request is pending: none issued
	CodeLimited             // CodesPerHour requests for the address in the last hour
	CodeStale               // the address is not the registered one (changed or removed)
	CodeConfirmed           // the address is confirmed already
)

// CodeCheck is one submitted code.
type CodeCheck struct {
	Citizen string
	Channel channels.Name
	MAC     string // Keyer.CodeMAC of what the citizen typed
	At      time.Time
}

// CodeAnswer is what a submitted code did.
type CodeAnswer int

// The answers of CheckCode.
const (
	// AnswerConfirmed: the code was right; the address is confirmed and
	// the code used up.
	AnswerConfirmed CodeAnswer = iota + 1
	// AnswerWrong: the code was wrong; Left attempts remain.
	AnswerWrong
	// AnswerExpired: the code is past CodeTTL.
	AnswerExpired
	// AnswerTooMany: CodeAttempts attempts were made; even the right code
	// is refused now.
	AnswerTooMany
	// AnswerNone: no code is pending for the registered address (none
	// was sent, it was used, or the address changed since).
	AnswerNone
)

// Confirmations is the confirmation codes of citizens' email addresses and
// mobile numbers (their MACs, never the codes), kept per citizen and
// channel. Each method is one atomic step.
type Confirmations interface {
	// ReserveCode takes one of the address's CodesPerHour requests for
	// issuer ahead of its IssueCode (a resend, answered at once);
	// false when none is left. Reserving again for the same issuer
	// takes none.
	ReserveCode(ctx context.Context, citizen string, ch channels.Name, fingerprint, issuer string, at time.Time) (bool, error)
	// IssueCode stores a new code for the registered address, valid for
	// CodeTTL with CodeAttempts attempts, replacing any earlier one,
	// unless the answer says why not.
	IssueCode(ctx context.Context, w CodeWrite) (CodeIssue, error)
	// CheckCode counts one attempt at the pending code and, when it is
	// right, confirms the address. Attempts are counted before the
	// comparison, so concurrent guesses never make more than
	// CodeAttempts. left is the attempts remaining after a wrong code.
	CheckCode(ctx context.Context, c CodeCheck) (a CodeAnswer, left int, err error)
}

// AccessChange says what an AccessWrite does.
type AccessChange int

// The access changes.
const (
	AccessGrant  AccessChange = iota + 1 // access.granted: grant (again), with Notify and Expires
	AccessUpdate                         // access.updated: Notify only
	AccessRevoke                         // access.revoked
)

// AccessWrite is one access.granted, access.updated or access.revoked.
type AccessWrite struct {
	Owner, Holder string // citizen keys
	Change        AccessChange
	Notify        bool      // grant, update
	Expires       time.Time // grant; zero: until revoked
	At            time.Time // last writer wins: the grant state and notify each by their own last time
	Mark          EventRef  // marked in the same atomic step, applied or stale
}

// Access is one recorded access relation, owner to holder.
type Access struct {
	Owner, Holder string
	Granted       bool      // false once revoked
	Notify        bool      // the holder wants alerts for the owner's letters
	Expires       time.Time // zero: until revoked
	Since         time.Time // the time of the grant or revoke in force
}

// Active reports whether the access is granted and not expired at now.
func (a Access) Active(now time.Time) bool {
	return a.Granted && (a.Expires.IsZero() || now.Before(a.Expires))
}

// Holders is the access relations between citizens (læseadgang), kept
// under the citizen keys only: per owner its holders, per holder the
// mailboxes it holds. SetAccess is one atomic step on the owner's side
// (the mark with it, as Registry writes: a marked write changes nothing
// again); the holder's side follows it and is last-writer-wins on its own.
type Holders interface {
	SetAccess(ctx context.Context, w AccessWrite) (applied bool, err error)
	// HoldersOf returns the owner's granted relations (expired ones too:
	// the caller checks Active with its clock), by holder key.
	HoldersOf(ctx context.Context, owner string) ([]Access, error)
	// HeldBy returns the granted relations whose holder is holder, by
	// owner key.
	HeldBy(ctx context.Context, holder string) ([]Access, error)
}

type urgentKey struct{}

// WithUrgent marks ctx as the work of the urgent lane (an urgent letter, a
// read-state change and what follows it): a Store that groups calls from
// many workers into shared round trips (redisstore's group commit) runs
// such a call at once, on its own, so the bulk work queued ahead of it
// cannot delay it.
func WithUrgent(ctx context.Context) context.Context {
	return context.WithValue(ctx, urgentKey{}, true)
}

// Urgent reports whether ctx was marked by WithUrgent.
func Urgent(ctx context.Context) bool { v, _ := ctx.Value(urgentKey{}).(bool); return v }

// Store is all of the roles; Config.Store takes this type.
type Store interface {
	Events
	Registry
	Letters
	ReadStates
	Reports
	Sync
	Coalescing
	Replay
	Confirmations
	Holders
	// Ping checks the store is reachable.
	Ping(ctx context.Context) error
}
