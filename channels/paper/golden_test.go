package paper_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/channeltest"
	"github.com/digitalpost/postbud/channels/paper/papertest"
	"github.com/google/go-cmp/cmp"
)

// The job JSON is the print-job contract: both modes emit the same bytes,
// pinned by golden files (go test -update rewrites them).
func TestGoldenJob(t *testing.T) {
	tests := []struct {
		name  string
		alert func(*channels.Alert)
	}{
		{name: "job_da"},
		{name: "job_en", alert: func(a *channels.Alert) {
			a.Language = "en"
			a.Senders = []string{"Københavns Kommune, Børne- & Ungdomsforvaltningen <BUF>"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := channeltest.Alert()
			if tt.alert != nil {
				tt.alert(&a)
			}
			dir := t.TempDir()
			if _, err := newSpoolSender(t, dir, nil).Send(t.Context(), to(), a); err != nil {
				t.Fatalf("spool Send: %v", err)
			}
			spooled, err := os.ReadFile(filepath.Join(dir, a.DeliveryID+".json"))
			if err != nil {
				t.Fatal(err)
			}

			fake := papertest.New(t, token)
			if _, err := newURLSender(t, fake, nil).Send(t.Context(), to(), a); err != nil {
				t.Fatalf("URL Send: %v", err)
			}
			posted := fake.Payloads()
			if len(posted) != 1 {
				t.Fatalf("fake accepted %d payloads, want 1", len(posted))
			}
			if diff := cmp.Diff(string(spooled), string(posted[0])); diff != "" {
				t.Errorf("spooled and posted jobs differ (-spool +url):\n%s", diff)
			}

			golden := filepath.Join("testdata", tt.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, spooled, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run with -update to create it): %v", err)
			}
			if diff := cmp.Diff(string(want), string(spooled)); diff != "" {
				t.Errorf("job JSON (-golden +got):\n%s", diff)
			}
		})
	}
}
