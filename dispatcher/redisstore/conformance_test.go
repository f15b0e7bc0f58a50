package redisstore_test

import (
	"testing"

	"github.com/digitalpost/postbud/dispatcher"
	"github.com/digitalpost/postbud/dispatcher/redisstore"
	"github.com/digitalpost/postbud/dispatcher/redistest"
	"github.com/digitalpost/postbud/dispatcher/seal"
	"github.com/digitalpost/postbud/dispatcher/storetest"
)

// TestConformance runs the dispatcher.Store conformance suite on Redis,
// each case under a key prefix of its own.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) dispatcher.Store {
		env := redistest.New(t)
		s := redisstore.New(env.Client, redisstore.Options{Prefix: env.Prefix, Sealer: seal.Ephemeral()})
		t.Cleanup(func() { s.Close() })
		return s
	})
}
