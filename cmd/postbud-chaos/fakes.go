package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digitalpost/postbud/channels/email/emailtest"
	"github.com/digitalpost/postbud/channels/sms/smstest"
)

// tb lets the protocol fakes, written for tests, run in this command:
// their cleanups run at Close and a fatal error panics (only setup calls
// it, before any process starts).
type tb struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
}

func (t *tb) Helper()                   {}
func (t *tb) Cleanup(f func())          { t.mu.Lock(); t.cleanups = append(t.cleanups, f); t.mu.Unlock() }
func (t *tb) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (t *tb) Errorf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (t *tb) Logf(string, ...any)       {}
func (t *tb) Name() string              { return "postbud-chaos" }

func (t *tb) close() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// Mode is how the providers answer now.
type Mode int32

// Provider modes.
const (
	ModeOK Mode = iota
	// Mode5xx answers every send with a transient server error: HTTP 503
	// from the SMS gateway, 421 from the SMTP server.
	Mode5xx
	// Mode429 throttles: HTTP 429 with Retry-After, SMTP 421 4.7.0 (SMTP
	// has no Retry-After).
	Mode429
	// ModeHang accepts the connection or request and never answers, until
	// the client gives up.
	ModeHang
)

func (m Mode) String() string {
	return [...]string{"ok", "5xx", "429", "hang"}[m]
}

// Fakes are the providers, hosted in this process: the SMTP and SMS fakes
// behind proxies that add the answer time and the injected faults.
type Fakes struct {
	t      *tb
	SMTP   *emailtest.Server
	SMS    *smstest.Gateway
	answer time.Duration
	mode   atomic.Int32
	closed chan struct{}

	smtpLn  net.Listener
	smsSrv  *httptest.Server
	lbSrv   *httptest.Server
	lbMu    sync.Mutex
	lbBases []string
	wg      sync.WaitGroup
}

// startFakes starts the fakes and their proxies. answer is how long a
// provider takes to answer a send it has accepted: the message is recorded
// when it arrives and the answer reaches postbud answer later, which is the
// window in which a killed worker never learns of a send that happened.
func startFakes(answer time.Duration) (*Fakes, error) {
	f := &Fakes{t: &tb{}, answer: answer, closed: make(chan struct{})}
	f.SMTP = emailtest.New(f.t)
	f.SMS = smstest.New(f.t, smstest.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Close()
		return nil, err
	}
	f.smtpLn = ln
	f.wg.Add(1)
	go f.serveSMTP()
	target, _ := url.Parse(f.SMS.URL())
	rp := httputil.NewSingleHostReverseProxy(target)
	f.smsSrv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.serveSMS(rp, w, r)
	}))
	f.lbSrv = httptest.NewServer(http.HandlerFunc(f.serveLB))
	return f, nil
}

// SetMode switches how the providers answer.
func (f *Fakes) SetMode(m Mode) { f.mode.Store(int32(m)) }

func (f *Fakes) getMode() Mode { return Mode(f.mode.Load()) }

// SMTPPort and SMSURL are where postbud sends.
func (f *Fakes) SMTPPort() int  { return f.smtpLn.Addr().(*net.TCPAddr).Port }
func (f *Fakes) SMSURL() string { return f.smsSrv.URL }

// ReportURL is the SMS callback URL: a balancer over the live replicas.
func (f *Fakes) ReportURL() string { return f.lbSrv.URL + "/v1/sms/reports" }

// SetReplicas tells the balancer the replicas' base URLs.
func (f *Fakes) SetReplicas(bases []string) {
	f.lbMu.Lock()
	f.lbBases = bases
	f.lbMu.Unlock()
}

// Close stops the proxies and the fakes.
func (f *Fakes) Close() {
	select {
	case <-f.closed:
		return
	default:
	}
	close(f.closed)
	if f.smtpLn != nil {
		f.smtpLn.Close()
	}
	if f.smsSrv != nil {
		f.smsSrv.CloseClientConnections()
		f.smsSrv.Close()
	}
	if f.lbSrv != nil {
		f.lbSrv.Close()
	}
	f.wg.Wait()
	f.t.close()
}

// serveSMTP proxies SMTP connections to the fake. In 5xx/429 modes it
// answers the greeting with 421 itself; in hang mode it never answers.
// Otherwise it delays the server's answer to the end of DATA by the
// answer time.
func (f *Fakes) serveSMTP() {
	defer f.wg.Done()
	for {
		c, err := f.smtpLn.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer c.Close()
			switch f.getMode() {
			case Mode5xx:
				fmt.Fprint(c, "421 4.3.2 Service not available, closing transmission channel\r\n")
				return
			case Mode429:
				fmt.Fprint(c, "421 4.7.0 Too many connections, try again later\r\n")
				return
			case ModeHang:
				stop := make(chan struct{})
				go func() {
					select {
					case <-f.closed:
						c.Close()
					case <-stop:
					}
				}()
				_, _ = io.Copy(io.Discard, c)
				close(stop)
				return
			}
			s, err := net.Dial("tcp", f.SMTP.Addr())
			if err != nil {
				return
			}
			defer s.Close()
			var dataEnded atomic.Bool
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if bytes.HasSuffix(buf[:n], []byte("\r\n.\r\n")) {
							dataEnded.Store(true)
						}
						if _, werr := s.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				s.Close()
			}()
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 {
					if dataEnded.Swap(false) && f.answer > 0 {
						select {
						case <-time.After(f.answer):
						case <-f.closed:
							return
						}
					}
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// serveSMS proxies a gateway request: faults per mode, else the fake
// accepts it at once and the answer goes back after the answer time.
func (f *Fakes) serveSMS(rp *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request) {
	switch f.getMode() {
	case Mode5xx:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"message":"Service unavailable","incident_uuid":"00000000-0000-4000-8000-000000000503"}`)
		return
	case Mode429:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"code":"0x0905","message":"Too many requests","incident_uuid":"00000000-0000-4000-8000-000000000429"}`)
		return
	case ModeHang:
		select {
		case <-r.Context().Done():
		case <-f.closed:
		}
		return
	}
	rec := httptest.NewRecorder()
	rp.ServeHTTP(rec, r)
	if f.answer > 0 {
		select {
		case <-time.After(f.answer):
		case <-r.Context().Done():
			return
		case <-f.closed:
			return
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// serveLB forwards a delivery report to the first replica that answers.
func (f *Fakes) serveLB(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	f.lbMu.Lock()
	bases := append([]string(nil), f.lbBases...)
	f.lbMu.Unlock()
	for _, b := range bases {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, b+r.URL.Path, bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	w.WriteHeader(http.StatusBadGateway)
}

// sendReports posts a DELIVERED report for every SMS not yet reported and
// returns how many posts postbud did not answer 200.
func (f *Fakes) sendReports(ctx context.Context, done map[int64]bool) (failed int) {
	for _, m := range f.SMS.Messages() {
		if done[m.ID] || ctx.Err() != nil {
			continue
		}
		code, err := f.SMS.SendReport(ctx, m.ID, "DELIVERED")
		if err != nil || code != http.StatusOK {
			failed++
			continue
		}
		done[m.ID] = true
	}
	return failed
}
