package apnstest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine they started
// outlives them: a server, client or worker a test did not stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
