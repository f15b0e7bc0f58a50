package storetest

import (
	"reflect"
	"testing"

	"github.com/digitalpost/postbud/dispatcher"
)

// TestSuiteCoversEveryMethod fails when a Store method has no case: a
// method added to the interface needs its conformance cases too.
func TestSuiteCoversEveryMethod(t *testing.T) {
	if missing := Uncovered(); len(missing) > 0 {
		t.Errorf("Store methods without a conformance case: %v", missing)
	}
	st := reflect.TypeFor[dispatcher.Store]()
	names := map[string]bool{}
	for _, c := range Cases() {
		if _, ok := st.MethodByName(c.Method); !ok {
			t.Errorf("case %q is about %s, which is no Store method", c.Name, c.Method)
		}
		if c.Name == "" || c.Test == nil {
			t.Errorf("case of %s without a name or a test", c.Method)
		}
		if key := c.Method + "/" + c.Name; names[key] {
			t.Errorf("two cases named %q", key)
		} else {
			names[key] = true
		}
	}
}
