package main

import (
	"io"
	"os"
	"syscall"
	"testing"
)

// captureFD points file descriptor fd (1 or 2) at a pipe until the
// returned function is called (or the test ends), and returns what was
// written to it meanwhile: output that bypasses run's stdout and stderr
// (a library's default logger writing to os.Stderr) is caught too. What it
// catches is also passed on to the original descriptor, so a test failure
// reported meanwhile is not lost.
func captureFD(t *testing.T, fd int) (*syncBuffer, func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(w.Fd()), fd, 0); err != nil {
		t.Fatal(err)
	}
	w.Close()
	buf := &syncBuffer{}
	orig := os.NewFile(uintptr(saved), "saved")
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(io.MultiWriter(buf, orig), r)
	}()
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		_ = syscall.Dup3(saved, fd, 0) // closes the pipe's last write end
		<-copied
		r.Close()
		orig.Close()
	}
	t.Cleanup(restore)
	return buf, restore
}
