// Package dispatcher is postbud's core: the asynq task handlers that turn
// events (package event) into deliveries on the channels and keep read
// state in sync, applying the Digital Post rules (package rules). It holds
// the handlers (dispatcher.go: letters and deliveries; rules.go: routing,
// holds, reminders and exemption forwarding; coalesce.go: coalescing;
// readstate.go: read state, platform sync and badges), the table of task
// types and their options (tasks.go), the one mapping of channel errors to
// what asynq does (retry.go), the pseudonymisation key (keyer.go) and the
// Store interface it consumes (store.go, implemented in
// dispatcher/redisstore). It depends on the channels' neutral contract
// (package channels) and on interfaces it defines for the rest (Store,
// Syncer, Limiter, Observer, Enqueuer), never on a concrete channel.
//
// # Delivery guarantee
//
// asynq delivers tasks at least once; postbud makes alerts effectively
// once:
//
//   - A letter is one task. It looks up the citizen and the letter, writes
//     the letter (metadata, unread filing) with every delivery it is about
//     to send marked in flight, sends every delivery concurrently, and
//     writes each outcome the moment its provider answers (a final one is
//     the delivery's done mark). Each delivery has a deterministic id (an
//     HMAC of message × channel × address). The event is marked processed
//     only after every failed delivery has its own task. A re-run of the
//     event skips what is done.
//   - A transient store error while writing a provider's answer (Redis
//     loading, a failover, a refused or reset connection, a timeout) is
//     retried there for up to Config.RecordRetry (60 s); it never turns
//     into a re-run that re-sends.
//   - A re-run that finds a delivery in flight without an outcome (its
//     worker died mid-send) hands it to its own task, which does not
//     re-send blindly: a channel with delivery reports (SMS) waits up to
//     Config.ReportWait (3 min after the interrupted attempt began, no
//     retry spent); a report in that time records it "sent: confirmed by
//     the delivery report after an interrupted attempt" and nothing is
//     re-sent. Without a report, and on every other channel, it is sent
//     again with the same delivery id, and the trail says "re-sent after
//     an interrupted attempt".
//
// What can still repeat: only a send whose provider call was in flight at
// the instant its worker died (or whose outcome could not be written
// within RecordRetry). Email then repeats with the same Message-ID (mail
// clients thread or drop it), push with the same collapse id (it replaces
// the first), paper with the same Idempotency-Key (the print API drops
// it), SMS only if the gateway's report did not come within ReportWait.
//   - A delivery that failed gets a task of its own (postbud:delivery, task
//     id = delivery id), so a retry never re-sends the channels that
//     succeeded, and exists once however often it is enqueued.
//   - The provider references are derived from the delivery and the
//     letter (email Message-ID, apns-collapse-id and FCM tag/collapse_key =
//     message id), so the rare duplicate — a crash between a provider's
//     accept and our record — replaces rather than stacks.
//   - Right before a send, the letter is re-checked: read on any platform
//     means "skipped: read".
//
// # Error kinds
//
// A channel says what it met; retry.go alone decides what asynq does:
//
//	kind           examples                                   action
//	gone           APNs 410, FCM UNREGISTERED, SMTP 550 5.1.1  remove the address (unless registered
//	               undeliverable SMS number                    after the report), no retry
//	permanent      malformed request, payload too large        archive (SkipRetry) for ops
//	throttled      429, QUOTA_EXCEEDED, over the send rate     wait Retry-After, no retry spent (IsFailure)
//	transient      network, 5xx, SMTP 4xx                      exponential backoff with jitter
//	misconfigured  APNs 403, FCM auth, SMTP 535                backoff, logged at error
//
// An alert that could only go out later than AlertTTL after its letter (or
// its do_not_deliver_until) is dropped and recorded as "skipped: expired".
package dispatcher
