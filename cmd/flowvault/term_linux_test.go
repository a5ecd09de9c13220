package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/flowvault/flowvault/internal/testutil"
)

// openPTY opens a pseudo-terminal: what the test writes to master is what
// a user types or pastes on tty.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	var unlock int32
	var n uint32
	for _, c := range []struct {
		req uintptr
		arg unsafe.Pointer
	}{{syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)}, {syscall.TIOCGPTN, unsafe.Pointer(&n)}} {
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), c.req, uintptr(c.arg)); e != 0 {
			t.Fatalf("ioctl %#x on /dev/ptmx: %v", c.req, e)
		}
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return master, tty
}

func termios(t *testing.T, f *os.File) syscall.Termios {
	t.Helper()
	var tio syscall.Termios
	if err := ioctlTermios(f.Fd(), syscall.TCGETS, &tio); err != nil {
		t.Fatal(err)
	}
	return tio
}

// pendingInput returns what the terminal holds unread, complete line or
// not, and leaves the terminal as it was.
func pendingInput(t *testing.T, tty *os.File) []byte {
	t.Helper()
	old := termios(t, tty)
	raw := old
	raw.Lflag &^= syscall.ICANON
	raw.Cc[syscall.VMIN], raw.Cc[syscall.VTIME] = 0, 0
	if err := ioctlTermios(tty.Fd(), syscall.TCSETS, &raw); err != nil {
		t.Fatal(err)
	}
	defer ioctlTermios(tty.Fd(), syscall.TCSETS, &old)
	buf := make([]byte, 8192)
	n, _ := tty.Read(buf)
	return buf[:n]
}

// typeWhenHidden types input on master once echo is off on tty: as a user
// does, after the prompt.
func typeWhenHidden(t *testing.T, master, tty *os.File, input string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, time.Millisecond, func() error {
		if termios(t, tty).Lflag&syscall.ECHO != 0 {
			return errors.New("echo is still on")
		}
		return nil
	})
	if _, err := master.Write([]byte(input)); err != nil {
		t.Fatal(err)
	}
}

type readResult struct {
	value []byte
	err   error
}

func await(t *testing.T, done <-chan readResult) readResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the read did not return")
		return readResult{}
	}
}

// A value typed on a terminal is one line, read without echo. A pasted
// multi-line value (or a line that filled the terminal's buffer, which
// drops the excess) is refused, and whatever was not read is discarded:
// left in the terminal, the shell would echo it, run it and keep it in
// its history. The terminal is restored in every case.
func TestReadHiddenLine(t *testing.T) {
	long := strings.Repeat("x", ttyLineMax-1)
	// A PEM key is longer than what the read after the line takes.
	pem := "-----BEGIN PRIVATE KEY-----\n" + strings.Repeat(strings.Repeat("A", 64)+"\n", 40) + "-----END PRIVATE KEY-----\n"
	tests := []struct {
		name    string
		typed   string
		want    string
		wantErr error
	}{
		{"one line", "s3cret-value\n", "s3cret-value", nil},
		{"carriage return ends the line", "s3cret-value\r", "s3cret-value", nil},
		{"longest line", long + "\n", long, nil},
		{"pasted lines", "first\nsecond\n", "", errMultiLine},
		{"pasted PEM key", pem, "", errMultiLine},
		{"pasted lines, the last without newline", "first\nsecond", "", errMultiLine},
		{"line at the terminal's limit", long + "x\n", "", errLineLimit},
		{"line over the terminal's limit", long + strings.Repeat("y", 1000) + "\n", "", errLineLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			master, tty := openPTY(t)
			before := termios(t, tty)
			done := make(chan readResult, 1)
			go func() {
				v, err := readHiddenLine(context.Background(), tty)
				done <- readResult{v, err}
			}()
			typeWhenHidden(t, master, tty, tt.typed)
			r := await(t, done)
			if !errors.Is(r.err, tt.wantErr) || string(r.value) != tt.want {
				t.Errorf("got %.40q (%d bytes), %v; want %.40q, %v", r.value, len(r.value), r.err, tt.want, tt.wantErr)
			}
			if left := pendingInput(t, tty); len(left) > 0 {
				t.Errorf("%d bytes left on the terminal for the shell: %.40q", len(left), left)
			}
			if after := termios(t, tty); after != before {
				t.Errorf("terminal not restored: lflag %#x, want %#x", after.Lflag, before.Lflag)
			}
		})
	}
}

// Input the drain after the line misses (it came later, or a key held
// down outlasted drainMax) is discarded when the terminal is restored, not
// left for the shell.
func TestReadHiddenLineDiscardsTheRest(t *testing.T) {
	saved := drainMax
	drainMax = 0 // no drain: the second line is still there at the restore
	t.Cleanup(func() { drainMax = saved })
	master, tty := openPTY(t)
	done := make(chan readResult, 1)
	go func() {
		v, err := readHiddenLine(context.Background(), tty)
		done <- readResult{v, err}
	}()
	typeWhenHidden(t, master, tty, "first\nsecond\n")
	if r := await(t, done); r.err != nil || string(r.value) != "first" {
		t.Fatalf("got %q, %v; want the first line", r.value, r.err)
	}
	if left := pendingInput(t, tty); len(left) > 0 {
		t.Errorf("%q left on the terminal for the shell", left)
	}
}

// Enter alone on a terminal is refused before anything is sent, and the
// prompt says where a multi-line value must come from.
func TestReadValueFromTerminal(t *testing.T) {
	master, tty := openPTY(t)
	saved := stdin
	stdin = tty
	t.Cleanup(func() { stdin = saved })
	tests := []struct {
		name    string
		typed   string
		want    string
		wantErr error
	}{
		{"a line", "v4lue\n", "v4lue", nil},
		{"Enter alone", "\n", "", errEmptyValue},
		{"Ctrl-D", "\x04", "", errNoValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var prompt bytes.Buffer
			done := make(chan readResult, 1)
			go func() {
				v, err := readValue(context.Background(), "db", "", &prompt)
				done <- readResult{v, err}
			}()
			typeWhenHidden(t, master, tty, tt.typed)
			r := await(t, done)
			if !errors.Is(r.err, tt.wantErr) || string(r.value) != tt.want {
				t.Errorf("got %q, %v; want %q, %v", r.value, r.err, tt.want, tt.wantErr)
			}
			if p := prompt.String(); !strings.Contains(p, "secret db, one line") || !strings.Contains(p, "--file or a pipe") {
				t.Errorf("prompt %q does not say a multi-line value needs --file or a pipe", p)
			}
		})
	}
}

// isTerminal tells a terminal from a character device that is none
// (/dev/null) and from a pipe.
func TestIsTerminal(t *testing.T) {
	_, tty := openPTY(t)
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, tt := range []struct {
		f    *os.File
		want bool
	}{{tty, true}, {null, false}, {r, false}} {
		if got := isTerminal(tt.f); got != tt.want {
			t.Errorf("isTerminal(%s) = %v, want %v", tt.f.Name(), got, tt.want)
		}
	}
}

// readPassword, the prompt of the builds other than Linux (x/term), reads
// a line without echo and restores the terminal when it returns and when
// Ctrl-C cancels it. (x/term ignores Ctrl-D on Unix: the prompt waits for
// Enter.)
func TestReadPassword(t *testing.T) {
	for _, tt := range []struct {
		name    string
		typed   string // "" to cancel instead
		want    string
		wantErr string
	}{
		{"a line", "s3cret-value\n", "s3cret-value", ""},
		{"carriage return ends the line", "s3cret-value\r", "s3cret-value", ""},
		{"Ctrl-C", "", "", "interrupted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			master, tty := openPTY(t)
			before := termios(t, tty)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan readResult, 1)
			go func() {
				v, err := readPassword(ctx, tty)
				done <- readResult{v, err}
			}()
			if tt.typed == "" {
				typeWhenHidden(t, master, tty, "")
				cancel()
			} else {
				typeWhenHidden(t, master, tty, tt.typed)
			}
			r := await(t, done)
			if string(r.value) != tt.want || (r.err == nil) != (tt.wantErr == "") || r.err != nil && !strings.Contains(r.err.Error(), tt.wantErr) {
				t.Errorf("got %q, %v; want %q, %q", r.value, r.err, tt.want, tt.wantErr)
			}
			if after := termios(t, tty); after != before {
				t.Errorf("terminal not restored: lflag %#x, want %#x", after.Lflag, before.Lflag)
			}
		})
	}
}
