// Package event is contract v1 of postbud's events (docs/events.md): the
// Event a platform sends, Parse and its field-naming ValidationError, the
// CPR number and the contact normalisers, and the one list of platforms,
// reading platforms, apps and event types. It imports neither asynq nor the
// channels.
package event
