//go:build !linux

package main

import (
	"context"
	"errors"
	"os"
)

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// readHiddenLine refuses: this platform's build cannot turn echo off, and
// a typed secret must not appear on the screen.
func readHiddenLine(context.Context, *os.File) ([]byte, error) {
	return nil, errors.New("cannot read a secret from a terminal without echo on this platform: pipe it in or use --file")
}
