package paper

// Hooks for the external tests.
var (
	ClassifyFS = classifyFS
	RetryAfter = retryAfter
)
