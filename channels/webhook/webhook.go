// Package webhook keeps a letter's read state the same on the four
// mailbox platforms (borger.dk, digital-post-app, e-boks, mit.dk): when the
// state changes on one platform, postbud POSTs a signed webhook to each of
// the others.
//
// The webhooks follow the Standard Webhooks specification
// (https://www.standardwebhooks.com, version 1.0.0). Each request carries
//
//	webhook-id         the change's id; the same on every retry, so the
//	                   receiver can drop duplicates
//	webhook-timestamp  when this attempt was made, in unix seconds
//	webhook-signature  "v1," + base64(HMAC-SHA256(key, id "." timestamp "." body)),
//	                   space-separated when there are several
//
// and a small JSON body (see StateChange and Body) with the message id, the
// new state and its version, and nothing about the citizen. The signature
// scheme lives on its own in package channels/signature, which the
// receiving side of postbud and the test fakes use too.
//
// Sender is not a channels.Sender: it carries state, not alerts. Its
// failures are classified into the kinds of package channels:
//
//	2xx                         delivered
//	410 Gone                    gone: the platform asked for the endpoint to be disabled
//	429                         throttled (Retry-After, default 5 s)
//	401, 403, 3xx               misconfigured (secret refused, URL moved)
//	5xx, 408, network, timeout  transient
//	other 4xx                   permanent
//
// Errors and logs name the platform and the HTTP status, never the
// endpoint's URL (its query may hold a token) nor the secret.
package webhook

import "github.com/digitalpost/postbud/channels/signature"

// FormatSecret serializes key as a Standard Webhooks secret; it is
// signature.FormatSecret, kept here for callers outside channels.
func FormatSecret(key []byte) string { return signature.FormatSecret(key) }
