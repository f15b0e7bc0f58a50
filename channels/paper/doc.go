// Package paper is the paper channel: it turns an alert into a print job
// for the print provider, which prints the letter and mails it to a postal
// address.
//
// A citizen exempt from Digital Post ("fritaget") gets letters from public
// senders on paper at their registered address (folkeregisteradresse), and on
// exemption may ask that the unopened letters of the last 6 months are sent
// on paper, possibly to another address. postbud does not print: it tells the
// print provider which letter (by MeMo message id) to print and where to mail
// it. One job is one letter: a coalesced alert (Count > 1) is refused.
//
// # The print-job contract
//
// A print job is one JSON object (see Job), UTF-8, with these fields:
//
//	{
//	  "job_id":     "<the delivery id: the idempotency key of the job>",
//	  "message_id": "<the letter to print: its MeMo messageUUID>",
//	  "sender":     "<the display name of the letter's sender>",
//	  "address":    "<the postal address, multi-line text, lines split by \n>",
//	  "language":   "da" | "en",
//	  "created_at": "<RFC 3339 time the job was made, UTC>"
//	}
//
// job_id is made of ASCII letters, digits, '.', '_' and '-' (at most 200,
// not starting with '.'), so it is also a safe file name. A retry of the
// same delivery carries the same job_id: the provider must print a job_id at
// most once. The address is personal data: the provider needs it to mail the
// letter, and postbud never writes it to an error or a log.
//
// The job reaches the provider in one of two ways (Config sets which).
//
// Spool mode writes the job to <SpoolDir>/<job_id>.json, for the provider to
// collect. The file is written to a hidden temporary file in the same
// directory (".<job_id>.*.tmp"; a collector must ignore names starting with
// '.'), fsynced, then linked into place without ever replacing an existing
// file, and the directory is fsynced. A job_id already spooled is a success
// that writes nothing, so a retry never makes two jobs while the file is
// there; once the provider has taken it away it must itself drop a job_id it
// has seen. Files are mode 0640; a missing spool directory is created with
// mode 0750. The spool directory must be on a local file system with hard
// links. Errors are classified so:
//
//   - permission denied, read-only file system, disk full or quota exceeded,
//     spool path not a directory: Misconfigured. Ops must fix the host; the
//     dispatcher keeps retrying and logs loudly, and no job is lost.
//   - any other file system error (I/O error, ...): Transient.
//   - a context cancelled before the job is in place: Transient, and no file
//     is left behind.
//
// URL mode POSTs the job to the provider's endpoint with the headers
// Content-Type: application/json, Idempotency-Key: <job_id> and, when a
// Token is configured, Authorization: Bearer <token>. The answer decides:
//
//   - 2xx: accepted. Receipt.ProviderID is the "id" of a JSON body
//     {"id": "..."} when there is one, else the job_id.
//   - 409 Conflict: the provider already has this job_id: a success.
//   - 401, 403, and any 3xx (redirects are not followed): Misconfigured.
//   - 429: Throttled, waiting Retry-After (seconds or an HTTP date;
//     5 s when absent).
//   - 5xx, network errors, timeouts: Transient. TLS certificate errors:
//     Misconfigured.
//   - any other 4xx: Permanent.
//
// Whatever the mode, a job without a postal address, with an address that is
// not printable text or longer than 1024 bytes, without a message id, or
// with a job_id that breaks the rule above is refused as Permanent before
// anything is written or sent.
package paper
