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
//   - A letter is one task. It looks up the citizen and the letter, sends
//     every delivery concurrently, and records the outcomes. Each delivery
//     has a deterministic id (an HMAC of message × channel × address); a
//     final outcome is written into the letter's hash as that delivery's
//     done mark in the same command as the letter's other state, and the
//     event is marked processed only after every failed delivery has its
//     own task. A re-run of the event skips what is done.
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
