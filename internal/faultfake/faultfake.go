// Package faultfake is an API server that misbehaves on demand, for
// tests of tollgate's outbound clients: it hangs, resets the connection,
// answers 5xx or 429 (with Retry-After), answers 200 with garbage or
// truncated JSON, trickles its body, or fails the first K requests and
// then answers as the healthy handler the test gives it. It counts and
// timestamps every request. RunTable and RunCircuit run every fault
// against one client call and check what the caller sees.
package faultfake

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is how the server misbehaves.
type Fault int

// The faults.
const (
	Healthy   Fault = iota // answer as the healthy handler
	Hang                   // never answer; hold the connection until the client gives up
	Reset                  // read the request, then reset the connection (RST)
	Status                 // answer Mode.Status (500, 502, 503, 429 …) with Mode.RetryAfter
	Garbage                // answer 200 with a body that is not JSON
	Truncated              // answer 200 with JSON cut off mid-way
	Trickle                // answer 200 and send the body one byte at a time, too slowly
	ActReset               // let the healthy handler act on the request, then reset instead of answering
)

func (f Fault) String() string {
	switch f {
	case Healthy:
		return "healthy"
	case Hang:
		return "hang"
	case Reset:
		return "reset"
	case Status:
		return "status"
	case Garbage:
		return "garbage"
	case Truncated:
		return "truncated"
	case Trickle:
		return "trickle"
	case ActReset:
		return "act-reset"
	}
	return "fault" + strconv.Itoa(int(f))
}

// Mode is the server's behaviour: Fault for the first Failures requests
// (every request when Failures is 0), the healthy handler after.
type Mode struct {
	Fault      Fault
	Status     int    // for Status
	RetryAfter string // for Status: the Retry-After header, when set
	Failures   int    // 0: always fail
	// Match, when set, limits the fault to requests whose path contains
	// it; the others are answered healthy and not counted.
	Match string
}

// Server is the fault server.
type Server struct {
	*httptest.Server
	healthy http.Handler
	done    chan struct{} // closed by Close: hanging and trickling handlers return
	closeMu sync.Mutex
	closed  bool

	mu    sync.Mutex
	mode  Mode
	times []time.Time
}

// TrickleEvery is the pause between two bytes of a trickled body.
const TrickleEvery = 50 * time.Millisecond

// New starts a server answering as healthy (nil: 200 with {}) until Set
// changes its mode. Keep-alives are off, so every attempt of a client is
// a new connection (Go's transport replays some failed requests on a
// reused connection by itself, which would blur the counts).
func New(healthy http.Handler) *Server {
	if healthy == nil {
		healthy = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("{}"))
		})
	}
	s := &Server{healthy: healthy, done: make(chan struct{})}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Config.SetKeepAlivesEnabled(false)
	s.Start()
	return s
}

// Close releases hanging handlers, then stops the server.
func (s *Server) Close() {
	s.closeMu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.closeMu.Unlock()
	s.Server.Close()
}

// Set changes the mode and forgets the requests counted so far.
func (s *Server) Set(m Mode) {
	s.mu.Lock()
	s.mode, s.times = m, nil
	s.mu.Unlock()
}

// Requests is how many requests arrived since the last Set.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.times)
}

// Times are the arrival times of the requests since the last Set.
func (s *Server) Times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.times...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	m := s.mode
	if m.Match != "" && !strings.Contains(r.URL.Path, m.Match) {
		s.mu.Unlock()
		s.healthy.ServeHTTP(w, r)
		return
	}
	s.times = append(s.times, time.Now())
	n := len(s.times)
	s.mu.Unlock()
	if m.Fault == Healthy || (m.Failures > 0 && n > m.Failures) {
		s.healthy.ServeHTTP(w, r)
		return
	}
	switch m.Fault {
	case Hang:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
	case Reset:
		// The whole request is read first: the instance may have acted
		// on it, which is what makes a write's outcome unknown.
		_, _ = io.Copy(io.Discard, r.Body)
		reset(w)
	case ActReset:
		s.healthy.ServeHTTP(httptest.NewRecorder(), r)
		reset(w)
	case Status:
		if m.RetryAfter != "" {
			w.Header().Set("Retry-After", m.RetryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(m.Status)
		_, _ = w.Write([]byte(`{"message":"fault injected","error":{"message":"fault injected"}}`))
	case Garbage:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("<html><body>Service temporarily unavailable</body></html>"))
	case Truncated:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"result":[{"number":{"value":"CHG`))
	case Trickle:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		for {
			if _, err := w.Write([]byte(" ")); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-s.done:
				return
			case <-time.After(TrickleEvery):
			}
		}
	}
}

// reset closes the request's connection with an RST, not a FIN.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("faultfake: the response writer cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
