package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// ttyLineMax is the longest line a Linux terminal passes on in canonical
// mode (N_TTY_BUF_SIZE less the newline): what is typed or pasted beyond
// it is dropped without a word, so a line this long may have been cut.
const ttyLineMax = 4095

// pasteWaitDeciseconds is how long (in tenths of a second, the
// terminal's unit) input arriving after the line still counts as more of
// it: the rest of a paste normally comes at once. What comes later is the
// shell's, as with any typing ahead.
const pasteWaitDeciseconds = 2

// drainMax bounds the draining of input after the line (a key held down
// never lets it go quiet). A variable for tests.
var drainMax = 5 * time.Second

// tcsetsf is TCSETSF, which package syscall lacks: on every Linux
// architecture the requests run TCSETS, TCSETSW, TCSETSF.
const tcsetsf = syscall.TCSETS + 2

var (
	errMultiLine = errors.New("more than one line was typed or pasted: nothing was stored and the rest was discarded; " +
		"a multi-line value must come from --file or a pipe")
	errLineLimit = fmt.Errorf("the line reached the terminal's limit of %d bytes and may have been cut: "+
		"nothing was stored; a value this long must come from --file or a pipe", ttyLineMax)
)

func ioctlTermios(fd uintptr, req uintptr, t *syscall.Termios) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(unsafe.Pointer(t))); e != 0 {
		return e
	}
	return nil
}

// readHiddenLine reads one line from the terminal f with echo off, and
// restores the terminal whatever happens (Ctrl-C cancels ctx). It refuses
// a line followed by more input (a pasted multi-line value, of which the
// terminal would give one line) and a line as long as the terminal's
// limit (maybe cut).
func readHiddenLine(ctx context.Context, f *os.File) ([]byte, error) {
	fd := f.Fd()
	var old syscall.Termios
	if err := ioctlTermios(fd, syscall.TCGETS, &old); err != nil {
		return nil, err
	}
	hidden := old
	hidden.Lflag &^= syscall.ECHO
	hidden.Lflag |= syscall.ICANON | syscall.ISIG
	hidden.Iflag |= syscall.ICRNL
	if err := ioctlTermios(fd, syscall.TCSETS, &hidden); err != nil {
		return nil, err
	}
	// TCSETSF discards the input not read: with TCSETS it would stay for
	// the shell, which would echo the rest of a pasted value, run it as
	// commands and keep it in its history.
	defer ioctlTermios(fd, tcsetsf, &old)
	type result struct {
		line []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// Capacity for the longest line: growing would leave copies of
		// the value behind.
		line := make([]byte, 0, ttyLineMax+1)
		buf := make([]byte, 1)
		for {
			n, err := f.Read(buf)
			if n == 1 {
				if buf[0] == '\n' {
					done <- result{line, nil}
					return
				}
				line = append(line, buf[0])
				if len(line) > ttyLineMax {
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
	var line []byte
	select {
	case r := <-done:
		if r.err != nil && len(r.line) == 0 {
			return nil, r.err
		}
		line = r.line
	case <-ctx.Done():
		return nil, errors.New("interrupted")
	}
	more, err := drainInput(ctx, f, hidden)
	switch {
	case err != nil:
	case len(line) >= ttyLineMax:
		err = errLineLimit
	case more:
		err = errMultiLine
	default:
		return line, nil
	}
	clear(line)
	return nil, err
}

// drainInput reads and wipes the input that follows the line until none
// has come for pasteWaitDeciseconds (at most drainMax), and reports
// whether there was any. A paste reaches the terminal in pieces (of 2 KiB
// from a pseudo-terminal's writer, say): the discarding of input when the
// terminal is restored would miss the pieces still on their way, which
// the shell would then run. It reads non-canonically, so that a last line
// without a newline counts too.
func drainInput(ctx context.Context, f *os.File, hidden syscall.Termios) (bool, error) {
	peek := hidden
	peek.Lflag &^= syscall.ICANON
	peek.Cc[syscall.VMIN] = 0
	peek.Cc[syscall.VTIME] = pasteWaitDeciseconds
	if err := ioctlTermios(f.Fd(), syscall.TCSETS, &peek); err != nil {
		return false, fmt.Errorf("set the terminal: %w", err)
	}
	buf := make([]byte, 4096)
	defer clear(buf)
	more := false
	for deadline := time.Now().Add(drainMax); time.Now().Before(deadline) && ctx.Err() == nil; {
		n, err := f.Read(buf)
		clear(buf[:n])
		if errors.Is(err, io.EOF) || (n == 0 && err == nil) {
			return more, nil
		}
		if err != nil {
			return more, fmt.Errorf("read the terminal: %w", err)
		}
		more = true
	}
	return more, nil
}
