package paper_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels"
	"github.com/digitalpost/postbud/channels/channeltest"
	"github.com/digitalpost/postbud/channels/paper"
	"github.com/digitalpost/postbud/channels/paper/papertest"
	"github.com/google/go-cmp/cmp"
)

func newSpoolSender(t *testing.T, dir string, now func() time.Time) *paper.Sender {
	t.Helper()
	if now == nil {
		now = func() time.Time { return fixedNow }
	}
	s, err := paper.New(paper.Config{SpoolDir: dir, NowFunc: now}, newLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// dirNames lists every entry of dir, hidden ones included.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read dir: %v", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func alertN(i int) channels.Alert {
	a := channeltest.Alert()
	a.DeliveryID = fmt.Sprintf("delivery-%03d", i)
	a.MessageID = fmt.Sprintf("message-%03d", i)
	return a
}

func wantJob(a channels.Alert) paper.Job {
	return paper.Job{
		JobID:     a.DeliveryID,
		MessageID: a.MessageID,
		Sender:    a.Senders[0],
		Address:   address,
		Language:  "da",
		CreatedAt: fixedNow.UTC(),
	}
}

func TestSpoolOneFilePerJob(t *testing.T) {
	dir := t.TempDir()
	s := newSpoolSender(t, dir, nil)
	var want []paper.Job
	var wantNames []string
	for i := range 3 {
		a := alertN(i)
		rc, err := s.Send(t.Context(), to(), a)
		if err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		if rc.ProviderID != a.DeliveryID+".json" {
			t.Errorf("ProviderID = %q, want the file name %q", rc.ProviderID, a.DeliveryID+".json")
		}
		want = append(want, wantJob(a))
		wantNames = append(wantNames, a.DeliveryID+".json")
	}
	if diff := cmp.Diff(want, papertest.ReadSpool(t, dir)); diff != "" {
		t.Errorf("spooled jobs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantNames, dirNames(t, dir)); diff != "" {
		t.Errorf("spool entries (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(filepath.Join(dir, wantNames[0]))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o640 {
		t.Errorf("job file mode = %v, want 0640", perm)
	}
}

// The same delivery sent again, even made at another time, leaves the one
// file as it was.
func TestSpoolSameJobTwice(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	now := fixedNow
	s := newSpoolSender(t, dir, func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Hour)
		return now
	})
	a := channeltest.Alert()
	file := filepath.Join(dir, a.DeliveryID+".json")

	rc1, err := s.Send(t.Context(), to(), a)
	if err != nil {
		t.Fatalf("first Send: %v", err)
	}
	first, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	rc2, err := s.Send(t.Context(), to(), a)
	if err != nil {
		t.Fatalf("second Send: %v", err)
	}
	second, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(first), string(second)); diff != "" {
		t.Errorf("job file changed on the second send (-first +second):\n%s", diff)
	}
	if rc1 != rc2 {
		t.Errorf("receipts differ: %+v, %+v", rc1, rc2)
	}
	if diff := cmp.Diff([]string{a.DeliveryID + ".json"}, dirNames(t, dir)); diff != "" {
		t.Errorf("spool entries (-want +got):\n%s", diff)
	}
}

func TestSpoolConcurrent(t *testing.T) {
	t.Run("distinct jobs all land", func(t *testing.T) {
		dir := t.TempDir()
		s := newSpoolSender(t, dir, nil)
		const n = 32
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { _, errs[i] = s.Send(t.Context(), to(), alertN(i)) })
		}
		wg.Wait()
		var want []paper.Job
		for i := range n {
			if errs[i] != nil {
				t.Errorf("Send %d: %v", i, errs[i])
			}
			want = append(want, wantJob(alertN(i)))
		}
		if diff := cmp.Diff(want, papertest.ReadSpool(t, dir)); diff != "" {
			t.Errorf("spooled jobs (-want +got):\n%s", diff)
		}
		if got := len(dirNames(t, dir)); got != n {
			t.Errorf("spool holds %d entries, want %d", got, n)
		}
	})
	t.Run("one job sent at once", func(t *testing.T) {
		dir := t.TempDir()
		s := newSpoolSender(t, dir, nil)
		const n = 16
		rcs := make([]channels.Receipt, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { rcs[i], errs[i] = s.Send(t.Context(), to(), channeltest.Alert()) })
		}
		wg.Wait()
		name := channeltest.Alert().DeliveryID + ".json"
		for i := range n {
			if errs[i] != nil || rcs[i].ProviderID != name {
				t.Errorf("Send %d = %+v, %v; want %s", i, rcs[i], errs[i], name)
			}
		}
		if diff := cmp.Diff([]string{name}, dirNames(t, dir)); diff != "" {
			t.Errorf("spool entries (-want +got):\n%s", diff)
		}
	})
}

func TestSpoolCancelledContext(t *testing.T) {
	dir := t.TempDir()
	s := newSpoolSender(t, dir, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Send(ctx, to(), channeltest.Alert())
	if !errors.Is(err, context.Canceled) || channels.KindOf(err) != channels.Transient {
		t.Errorf("Send err = %v, want a transient context.Canceled", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("spool holds %q after a cancelled send", names)
	}
}

func TestSpoolCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "spool", "paper")
	s := newSpoolSender(t, dir, nil)
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("New did not create the spool directory: %v", err)
	}
	if extra := fi.Mode().Perm() &^ 0o750; extra != 0 {
		t.Errorf("spool directory mode = %v, want at most 0750", fi.Mode().Perm())
	}
	// Removed behind the sender's back, it is made again.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(t.Context(), to(), channeltest.Alert()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := len(papertest.ReadSpool(t, dir)); got != 1 {
		t.Errorf("spool holds %d jobs, want 1", got)
	}
}

// Every path through Send and Ping leaves only whole job files behind.
func TestSpoolNoTempFiles(t *testing.T) {
	dir := t.TempDir()
	s := newSpoolSender(t, dir, nil)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	steps := []struct {
		name string
		run  func() error
	}{
		{"send", func() error { _, err := s.Send(t.Context(), to(), alertN(1)); return err }},
		{"send again", func() error { _, err := s.Send(t.Context(), to(), alertN(1)); return err }},
		{"cancelled", func() error { _, err := s.Send(cancelled, to(), alertN(2)); return nilIf(err, channels.Transient) }},
		{"invalid", func() error {
			_, err := s.Send(t.Context(), channels.Address{Channel: channels.Paper}, alertN(3))
			return nilIf(err, channels.Permanent)
		}},
		{"ping", func() error { return s.Ping(t.Context()) }},
	}
	for _, st := range steps {
		if err := st.run(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if diff := cmp.Diff([]string{"delivery-001.json"}, dirNames(t, dir)); diff != "" {
			t.Errorf("after %s, spool entries (-want +got):\n%s", st.name, diff)
		}
	}
}

// nilIf returns nil when err is of kind k, else an error saying so.
func nilIf(err error, k channels.Kind) error {
	if err != nil && channels.KindOf(err) == k {
		return nil
	}
	return fmt.Errorf("err = %v, want %s", err, k)
}

// A spool directory the daemon may not write to is Misconfigured: ops must
// fix the host, and the job waits in the retries.
func TestSpoolReadOnlyDirectory(t *testing.T) {
	dir := t.TempDir()
	s := newSpoolSender(t, dir, nil)
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	if f, err := os.CreateTemp(dir, "probe"); err == nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		t.Skip("permission bits are not enforced for this user (root); TestSpoolNotADirectory and TestClassifyFS cover the classification")
	}
	_, err := s.Send(t.Context(), to(), channeltest.Alert())
	if k, code := channels.KindOf(err), channels.CodeOf(err); err == nil || k != channels.Misconfigured || code != "permission_denied" {
		t.Errorf("Send err = %v: kind %s code %q, want misconfigured permission_denied", err, k, code)
	}
	assertNoAddress(t, err)
	if err := s.Ping(t.Context()); channels.KindOf(err) != channels.Misconfigured {
		t.Errorf("Ping err = %v, want misconfigured", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("spool holds %q", names)
	}
}

func TestSpoolNotADirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s := newSpoolSender(t, dir, nil)
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Send(t.Context(), to(), channeltest.Alert())
	if k, code := channels.KindOf(err), channels.CodeOf(err); err == nil || k != channels.Misconfigured || code != "not_a_directory" {
		t.Errorf("Send err = %v: kind %s code %q, want misconfigured not_a_directory", err, k, code)
	}
	if err := s.Ping(t.Context()); channels.KindOf(err) != channels.Misconfigured {
		t.Errorf("Ping err = %v, want misconfigured", err)
	}
	if _, err := paper.New(paper.Config{SpoolDir: filepath.Join(dir, "sub")}, nil); err == nil {
		t.Errorf("New under a file succeeded")
	}
}

func TestClassifyFS(t *testing.T) {
	pathErr := func(errno syscall.Errno) error {
		return &fs.PathError{Op: "open", Path: "/var/spool/paper/.x.tmp", Err: errno}
	}
	tests := []struct {
		err  error
		kind channels.Kind
		code string
	}{
		{pathErr(syscall.EACCES), channels.Misconfigured, "permission_denied"},
		{pathErr(syscall.EPERM), channels.Misconfigured, "permission_denied"},
		{&os.LinkError{Op: "link", Old: "a", New: "b", Err: syscall.EROFS}, channels.Misconfigured, "read_only"},
		{pathErr(syscall.ENOSPC), channels.Misconfigured, "disk_full"},
		{pathErr(syscall.EDQUOT), channels.Misconfigured, "disk_full"},
		{pathErr(syscall.ENOTDIR), channels.Misconfigured, "not_a_directory"},
		{pathErr(syscall.EIO), channels.Transient, "io"},
		{errors.New("something else"), channels.Transient, "io"},
	}
	for _, tt := range tests {
		err := paper.ClassifyFS(tt.err)
		if k, code := channels.KindOf(err), channels.CodeOf(err); k != tt.kind || code != tt.code {
			t.Errorf("classify(%v) = %s %q, want %s %q", tt.err, k, code, tt.kind, tt.code)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("classify(%v) lost the cause", tt.err)
		}
	}
}

func TestSpoolPing(t *testing.T) {
	dir := t.TempDir()
	s := newSpoolSender(t, dir, nil)
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	names := dirNames(t, dir)
	sort.Strings(names)
	if len(names) != 0 {
		t.Errorf("Ping left %q", names)
	}
}
