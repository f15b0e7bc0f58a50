package paper

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/digitalpost/postbud/channels"
)

// spool writes job to <dir>/<job_id>.json unless it is already there. The
// file appears whole or not at all: written to a hidden temporary file,
// fsynced, then hard-linked into place (which never replaces an existing
// file), and the directory fsynced.
func (s *Sender) spool(ctx context.Context, job Job, body []byte) (channels.Receipt, error) {
	name := job.JobID + ".json"
	final := filepath.Join(s.dir, name)
	rc := channels.Receipt{ProviderID: name}

	switch _, err := os.Lstat(final); {
	case err == nil:
		s.log.DebugContext(ctx, "print job already spooled", "message_id", job.MessageID, "job_id", job.JobID)
		return rc, nil
	case !errors.Is(err, fs.ErrNotExist):
		return channels.Receipt{}, classifyFS(err)
	}
	if err := makeSpoolDir(s.dir); err != nil {
		return channels.Receipt{}, err
	}

	f, err := os.CreateTemp(s.dir, "."+job.JobID+".*.tmp")
	if err != nil {
		return channels.Receipt{}, classifyFS(err)
	}
	tmp := f.Name()
	// After the link the temporary name is a second link to the job: it
	// goes in every case.
	defer os.Remove(tmp)
	if err := writeSync(f, body); err != nil {
		return channels.Receipt{}, classifyFS(err)
	}
	if err := ctx.Err(); err != nil {
		return channels.Receipt{}, channels.Interrupted(err)
	}
	switch err := os.Link(tmp, final); {
	case errors.Is(err, fs.ErrExist):
		// A concurrent send of the same delivery won the race.
		s.log.DebugContext(ctx, "print job already spooled", "message_id", job.MessageID, "job_id", job.JobID)
		return rc, nil
	case err != nil:
		return channels.Receipt{}, classifyFS(err)
	}
	if err := syncDir(s.dir); err != nil {
		// The job is in place but may not survive a crash; a retry finds
		// it and succeeds.
		return channels.Receipt{}, classifyFS(err)
	}
	s.log.DebugContext(ctx, "print job spooled", "message_id", job.MessageID, "job_id", job.JobID)
	return rc, nil
}

// writeSync writes body to f, makes it readable by the group (the print
// provider's collector), fsyncs and closes it.
func writeSync(f *os.File, body []byte) error {
	_, err := f.Write(body)
	if err == nil {
		err = f.Chmod(0o640)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// makeSpoolDir creates dir (0750) when missing.
func makeSpoolDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return classifyFS(err)
	}
	return nil
}

// pingSpool writes and removes a probe file in the spool directory.
func (s *Sender) pingSpool() error {
	if err := makeSpoolDir(s.dir); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, ".ping-*.tmp")
	if err != nil {
		return classifyFS(err)
	}
	defer os.Remove(f.Name())
	if err := writeSync(f, []byte("ping\n")); err != nil {
		return classifyFS(err)
	}
	return nil
}

// classifyFS says what kind of failure a file system error is. What ops
// must fix on the host (permissions, a read-only mount, a full disk, a spool
// path that is not a directory) is Misconfigured: retried, and loud.
// Anything else is Transient. The error names paths under the spool
// directory only, never the address.
func classifyFS(err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return channels.Fail(channels.Misconfigured, "permission_denied", err)
	case errors.Is(err, syscall.EROFS):
		return channels.Fail(channels.Misconfigured, "read_only", err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return channels.Fail(channels.Misconfigured, "disk_full", err)
	case errors.Is(err, syscall.ENOTDIR):
		return channels.Fail(channels.Misconfigured, "not_a_directory", err)
	}
	return channels.Fail(channels.Transient, "io", err)
}
