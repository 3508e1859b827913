package blackhole

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// dropAll is a classic BPF program of one instruction: accept 0 bytes of
// the packet, that is, discard it. On a TCP socket the kernel runs the
// filter before TCP sees the segment, so nothing is acknowledged.
var dropAll = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}

// filter attaches (on) or detaches the drop-all filter on c's socket.
func filter(c syscall.Conn, on bool) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		if on {
			serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
				&unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]})
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
	}); err != nil {
		return err
	}
	return serr
}

// maxBacklog is the accept queue Restore gives back (the kernel caps it
// at net.core.somaxconn).
const maxBacklog = 4096

func supported() error { return nil }

// backlog calls listen(2) again on ln's socket, which changes the length
// of its accept queue.
func backlog(ln syscall.Conn, n int) error {
	raw, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Listen(int(fd), n) }); err != nil {
		return err
	}
	return serr
}
