package pgconn

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDialerSetsTheTimeouts reads back the socket options a dialled TCP
// connection has: keepalives on, their idle time and interval, and the
// user timeout.
func TestDialerSetsTheTimeouts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dials := []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"Dial", func() (net.Conn, error) { return Dialer{}.Dial("tcp", ln.Addr().String()) }},
		{"DialTimeout", func() (net.Conn, error) { return Dialer{}.DialTimeout("tcp", ln.Addr().String(), time.Second) }},
		{"DialContext", func() (net.Conn, error) {
			return Dialer{}.DialContext(context.Background(), "tcp", ln.Addr().String())
		}},
	}
	for _, d := range dials {
		t.Run(d.name, func(t *testing.T) {
			c, err := d.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			raw, err := c.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]struct{ level, opt, val int }{
				"SO_KEEPALIVE":     {unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
				"TCP_KEEPIDLE":     {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(keepAliveIdle / time.Second)},
				"TCP_KEEPINTVL":    {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(keepAliveInterval / time.Second)},
				"TCP_KEEPCNT":      {unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
				"TCP_USER_TIMEOUT": {unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout / time.Millisecond)},
			}
			for name, o := range want {
				var got int
				var gerr error
				if err := raw.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), o.level, o.opt) }); err != nil {
					t.Fatal(err)
				}
				if gerr != nil {
					t.Fatalf("%s: %v", name, gerr)
				}
				if got != o.val {
					t.Errorf("%s = %d, want %d", name, got, o.val)
				}
			}
		})
	}
	// A Unix socket has no TCP options to set, and dials.
	sock := t.TempDir() + "/s"
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	c, err := Dialer{}.Dial("unix", sock)
	if err != nil {
		t.Fatalf("unix socket: %v", err)
	}
	c.Close()
}
