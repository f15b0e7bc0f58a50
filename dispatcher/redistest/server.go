package redistest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server of one test's own on a free loopback port, for
// the tests that must configure Redis, or kill and restart it. It keeps
// its directory across restarts (a SAVE before Kill comes back).
type Server struct {
	// Addr is 127.0.0.1:port; URL is redis://Addr/0.
	Addr, URL string

	t    testing.TB
	bin  string
	args []string
	cmd  *exec.Cmd
}

// StartServer starts redis-server (--bind 127.0.0.1, a free port, a
// temporary --dir, no RDB saves, no AOF, then extra) and waits until it
// answers; the test's cleanup stops it. Without redis-server on PATH the
// test is skipped, or fails under POSTBUD_TEST_REQUIRE_REDIS=1.
func StartServer(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin, port := serverBin(t)
	s := &Server{Addr: "127.0.0.1:" + port, URL: "redis://127.0.0.1:" + port + "/0", t: t, bin: bin,
		args: append([]string{"--bind", "127.0.0.1", "--port", port, "--dir", t.TempDir(), "--save", "",
			"--appendonly", "no"}, extra...)}
	t.Cleanup(s.Kill)
	s.Start()
	return s
}

// StartSentinel starts a sentinel (redis-server --sentinel) on a free
// loopback port that monitors the primary at addr as master, with a quorum
// of quorum and a down-after of one second; the test's cleanup stops it.
func StartSentinel(t testing.TB, master, addr string, quorum int) *Server {
	t.Helper()
	bin, port := serverBin(t)
	host, pport, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	text := "bind 127.0.0.1\nport " + port + "\ndir " + dir + "\nprotected-mode no\n" +
		"sentinel monitor " + master + " " + host + " " + pport + " " + strconv.Itoa(quorum) + "\n" +
		"sentinel down-after-milliseconds " + master + " 1000\n" +
		"sentinel failover-timeout " + master + " 10000\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: "127.0.0.1:" + port, URL: "redis://127.0.0.1:" + port + "/0", t: t, bin: bin,
		args: []string{conf, "--sentinel"}}
	t.Cleanup(s.Kill)
	s.Start()
	return s
}

// serverBin finds redis-server (skipping the test without it) and a free
// loopback port.
func serverBin(t testing.TB) (bin, port string) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("POSTBUD_TEST_REQUIRE_REDIS") == "1" {
			t.Fatal("POSTBUD_TEST_REQUIRE_REDIS=1 but redis-server is not on PATH")
		}
		t.Skip("redis-server is not on PATH: this test needs a Redis of its own")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return bin, port
}

// Start (re)starts the server on its port and waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not answer within 10 s", s.Addr)
		}
		<-tick.C
	}
}

// Kill ends the server at once (SIGKILL) and waits for it; a server
// already stopped is left alone.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}
