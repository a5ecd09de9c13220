package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/term"
)

// isTerminal reports whether f is a terminal: not merely a character
// device, which /dev/null is too.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// readPassword reads one line from the terminal f with echo off, and
// restores the terminal whatever happens (Ctrl-C cancels ctx). It is the
// prompt of the platforms without the Linux build's guard against pasted
// lines (term_linux.go); it is built everywhere so that the Linux tests
// cover it.
func readPassword(ctx context.Context, f *os.File) ([]byte, error) {
	fd := int(f.Fd())
	old, err := term.GetState(fd)
	if err != nil {
		return nil, fmt.Errorf("read the terminal: %w", err)
	}
	type result struct {
		line []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := term.ReadPassword(fd)
		done <- result{line, err}
	}()
	select {
	case r := <-done:
		return r.line, r.err
	case <-ctx.Done():
		// ReadPassword turns echo back on only when its read returns,
		// and the process exits first: the shell would get a terminal
		// that echoes nothing.
		if err := term.Restore(fd, old); err != nil {
			return nil, fmt.Errorf("interrupted; restore the terminal: %w", err)
		}
		return nil, errors.New("interrupted")
	}
}
