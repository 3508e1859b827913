// Package blackhole is a TCP proxy for tests that can make the peer behind
// it vanish from the network. After Drop the kernel discards every segment
// arriving at the proxy's open connections — a socket filter that accepts
// nothing, attached to each — so the client's data is never acknowledged,
// its keepalive probes go unanswered and no reset is ever sent; and a new
// connection's SYN gets no answer (the listener stops accepting, its
// accept queue shrunk to one connection and filled, so the kernel drops
// further SYNs). That is what a cut link, a partitioned network or a host
// that died without closing its sockets looks like to the client. A proxy
// that merely stopped reading could not show it: its kernel would still
// acknowledge the data and answer the probes.
//
// Restore lets new connections through again; the connections that were
// open during the drop stay dead, as they would after a real partition
// whose peer reset them meanwhile.
//
// It needs Linux (SO_ATTACH_FILTER, listen(2) again to change the
// backlog); elsewhere Drop returns ErrUnsupported and tests skip.
package blackhole

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// ErrUnsupported is Drop on a system without socket filters.
var ErrUnsupported = errors.New("blackhole: socket filters are not supported on this system")

// Proxy forwards TCP connections from its own loopback address to a
// target until Drop.
type Proxy struct {
	ln     *net.TCPListener
	target string

	mu      sync.Mutex
	cond    *sync.Cond // on mu: dropped, paused or closed changed
	dropped bool
	paused  bool // the accept loop waits for Restore
	closed  bool
	filler  net.Conn // the connection filling the accept queue during a drop
	conns   map[*pair]struct{}
	wg      sync.WaitGroup
}

// pair is one proxied connection: client is the proxy's socket facing
// tollgate, server the one facing the target. Data from the server is
// written to the client under mu, so that nothing crosses once dropped.
type pair struct {
	client, server *net.TCPConn
	dead           bool // dropped: the client socket is filtered, the server closed
}

// Start listens on 127.0.0.1 and forwards every connection to target
// (host:port) until t ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("blackhole: listen: %v", err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[*pair]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		for p.dropped && !p.closed {
			p.paused = true
			p.cond.Broadcast()
			p.cond.Wait()
		}
		p.paused = false
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return
		}
		c, err := p.ln.AcceptTCP()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue // Drop woke the loop
			}
			return
		}
		p.mu.Lock()
		if p.dropped {
			// Accepted as the drop began: silent like the others.
			_ = filter(c, true)
			p.conns[&pair{client: c, dead: true}] = struct{}{}
			p.mu.Unlock()
			continue
		}
		p.mu.Unlock()
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pr := &pair{client: c, server: s.(*net.TCPConn)}
		p.mu.Lock()
		if p.dropped {
			_ = filter(c, true)
			pr.dead = true
			s.Close()
		}
		p.conns[pr] = struct{}{}
		p.mu.Unlock()
		if !pr.dead {
			p.wg.Add(2)
			go p.toServer(pr)
			go p.toClient(pr)
		}
	}
}

// toServer copies the client's bytes to the server; after Drop none
// arrive (the kernel discards them), and the server side is closed.
func (p *Proxy) toServer(pr *pair) {
	defer p.wg.Done()
	_, _ = io.Copy(pr.server, pr.client)
	p.mu.Lock()
	if !pr.dead {
		_ = pr.server.CloseWrite()
	}
	p.mu.Unlock()
}

// toClient copies the server's bytes to the client, each write under mu
// so that none is sent after Drop.
func (p *Proxy) toClient(pr *pair) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := pr.server.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if pr.dead {
				p.mu.Unlock()
				return
			}
			_, werr := pr.client.Write(buf[:n])
			p.mu.Unlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			p.mu.Lock()
			if !pr.dead {
				_ = pr.client.CloseWrite()
			}
			p.mu.Unlock()
			return
		}
	}
}

// Drop makes the peer vanish: from now on every segment arriving at an
// open connection is discarded by the kernel, nothing more is sent to the
// clients, the connections to the target are closed (its sessions end, as
// a partitioned server's would), and a new connection is not answered.
func (p *Proxy) Drop() error {
	if err := supported(); err != nil {
		return err
	}
	p.mu.Lock()
	if p.dropped {
		p.mu.Unlock()
		return nil
	}
	p.dropped = true
	for pr := range p.conns {
		if pr.dead {
			continue
		}
		if err := filter(pr.client, true); err != nil {
			p.mu.Unlock()
			return err
		}
		pr.dead = true
		pr.server.Close()
	}
	// Stop the accept loop, then shrink the accept queue to one
	// connection and fill it: the kernel drops every SYN after that.
	_ = p.ln.SetDeadline(time.Now())
	for !p.paused && !p.closed {
		p.cond.Wait()
	}
	p.mu.Unlock()
	if err := backlog(p.ln, 0); err != nil {
		return err
	}
	f, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err != nil {
		return fmt.Errorf("blackhole: fill the accept queue: %w", err)
	}
	p.mu.Lock()
	p.filler = f
	p.mu.Unlock()
	return nil
}

// Restore lets new connections through again. Connections open during
// the drop stay silent until Close.
func (p *Proxy) Restore() error {
	if err := backlog(p.ln, maxBacklog); err != nil {
		return err
	}
	_ = p.ln.SetDeadline(time.Time{})
	p.mu.Lock()
	p.dropped = false
	if p.filler != nil {
		p.filler.Close() // accepted next, and closed at once by the target's side
		p.filler = nil
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	return nil
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	if p.filler != nil {
		p.filler.Close()
	}
	for pr := range p.conns {
		pr.dead = true
		pr.client.Close()
		if pr.server != nil {
			pr.server.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}
