package main

import (
	"context"
	"errors"
	"os"
	"syscall"
	"unsafe"
)

func ioctlTermios(fd uintptr, req uintptr, t *syscall.Termios) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(unsafe.Pointer(t))); e != 0 {
		return e
	}
	return nil
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	var t syscall.Termios
	return ioctlTermios(f.Fd(), syscall.TCGETS, &t) == nil
}

// readHiddenLine reads one line from the terminal f with echo off, and
// restores the terminal whatever happens (Ctrl-C cancels ctx).
func readHiddenLine(ctx context.Context, f *os.File) ([]byte, error) {
	var old syscall.Termios
	if err := ioctlTermios(f.Fd(), syscall.TCGETS, &old); err != nil {
		return nil, err
	}
	hidden := old
	hidden.Lflag &^= syscall.ECHO
	hidden.Lflag |= syscall.ICANON | syscall.ISIG
	hidden.Iflag |= syscall.ICRNL
	if err := ioctlTermios(f.Fd(), syscall.TCSETS, &hidden); err != nil {
		return nil, err
	}
	defer ioctlTermios(f.Fd(), syscall.TCSETS, &old)
	type result struct {
		line []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var line []byte
		buf := make([]byte, 1)
		for {
			n, err := f.Read(buf)
			if n == 1 {
				if buf[0] == '\n' {
					done <- result{line, nil}
					return
				}
				line = append(line, buf[0])
				if len(line) > 1<<20 {
					done <- result{line, nil}
					return
				}
			}
			if err != nil {
				done <- result{line, err}
				return
			}
		}
	}()
	select {
	case r := <-done:
		if r.err != nil && len(r.line) == 0 {
			return nil, r.err
		}
		return r.line, nil
	case <-ctx.Done():
		return nil, errors.New("interrupted")
	}
}
