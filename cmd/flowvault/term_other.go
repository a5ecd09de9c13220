//go:build !linux

package main

import (
	"context"
	"os"
)

// readHiddenLine reads one line typed on the terminal f without echo.
// Unlike the Linux build it cannot tell a pasted multi-line value from a
// line: the lines after the first stay on the terminal.
func readHiddenLine(ctx context.Context, f *os.File) ([]byte, error) {
	return readPassword(ctx, f)
}
