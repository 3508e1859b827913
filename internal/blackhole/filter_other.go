//go:build !linux

package blackhole

import "syscall"

const maxBacklog = 4096

func supported() error                { return ErrUnsupported }
func filter(syscall.Conn, bool) error { return ErrUnsupported }
func backlog(syscall.Conn, int) error { return ErrUnsupported }
