package blackhole

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/store/pgconn"
)

// echo serves an echo server on loopback until t ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// dial connects to addr with a TCP user timeout of d (pgconn's dialer,
// keepalives off: the test is about unacknowledged data).
func dial(addr string, d time.Duration) (net.Conn, error) {
	return pgconn.Dialer{TCP: &pgconn.TCP{UserTimeout: d}}.DialTimeout("tcp", addr, 5*time.Second)
}

func roundTrip(c net.Conn, msg string) error {
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	if err == nil && string(buf) != msg {
		err = errors.New("echo mismatch: " + string(buf))
	}
	return err
}

// TestDropSilencesThePeer: through the proxy an echo answers; after Drop
// the client's write is never acknowledged, so its kernel gives the
// connection up after the user timeout (ETIMEDOUT, no reset), and a new
// connection is not answered; after Restore a new connection works.
func TestDropSilencesThePeer(t *testing.T) {
	p := Start(t, echo(t))
	c, err := dial(p.Addr(), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, "before"); err != nil {
		t.Fatalf("before the drop: %v", err)
	}
	if err := p.Drop(); errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	err = roundTrip(c, "during")
	took := time.Since(start)
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("during the drop: err = %v after %v, want ETIMEDOUT (the kernel giving the connection up)", err, took)
	}
	t.Logf("the dropped connection failed after %v", took.Round(time.Millisecond))

	if _, err := net.DialTimeout("tcp", p.Addr(), 300*time.Millisecond); err == nil {
		t.Fatal("a new connection was answered during the drop")
	}

	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	c2, err := dial(p.Addr(), 500*time.Millisecond)
	if err != nil {
		t.Fatalf("after Restore: %v", err)
	}
	defer c2.Close()
	_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
	if err := roundTrip(c2, "after"); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
}
