package harden

import (
	"errors"
	"testing"
)

func TestApplyPolicy(t *testing.T) {
	t.Parallel()
	errLock := errors.New("cannot allocate memory")
	tests := []struct {
		name      string
		mode      Mode
		may       bool
		lockErr   error
		want      Report
		wantErr   error
		wantLocks int
	}{
		{name: "auto, allowed", mode: Auto, may: true, want: Report{Locked: true, Undumpable: true}, wantLocks: 1},
		{name: "auto, not allowed", mode: Auto, want: Report{NotLocked: "no CAP_IPC_LOCK", Undumpable: true}},
		{name: "auto, allowed but refused", mode: Auto, may: true, lockErr: errLock,
			want: Report{NotLocked: "mlockall: cannot allocate memory", Undumpable: true}, wantLocks: 1},
		{name: "require, allowed", mode: Require, may: true, want: Report{Locked: true, Undumpable: true}, wantLocks: 1},
		{name: "require, not allowed", mode: Require, want: Report{NotLocked: "no CAP_IPC_LOCK", Undumpable: true}, wantErr: ErrNotLocked},
		{name: "require, refused", mode: Require, may: true, lockErr: errLock,
			want: Report{NotLocked: "mlockall: cannot allocate memory", Undumpable: true}, wantErr: ErrNotLocked, wantLocks: 1},
		// Never tried without the right to lock everything: a partial lock
		// would make the heap fail to grow past the limit later.
		{name: "off", mode: Off, may: true, want: Report{Undumpable: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			locks := 0
			got, err := apply(tt.mode, calls{
				mayLockAll: func() (bool, string) {
					if tt.may {
						return true, ""
					}
					return false, "no CAP_IPC_LOCK"
				},
				lockAll:    func() error { locks++; return tt.lockErr },
				undumpable: func() error { return nil },
			})
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want || locks != tt.wantLocks {
				t.Fatalf("report %+v after %d locks, want %+v after %d", got, locks, tt.want, tt.wantLocks)
			}
		})
	}
}

func TestApplyRefusesUnknownMode(t *testing.T) {
	t.Parallel()
	called := false
	_, err := apply("sometimes", calls{
		mayLockAll: func() (bool, string) { called = true; return true, "" },
		lockAll:    func() error { called = true; return nil },
		undumpable: func() error { called = true; return nil },
	})
	if err == nil || called {
		t.Fatalf("err %v, system called %v: want an error before any call", err, called)
	}
}

func TestApplyReportsAProcessLeftDumpable(t *testing.T) {
	t.Parallel()
	got, err := apply(Auto, calls{
		mayLockAll: func() (bool, string) { return true, "" },
		lockAll:    func() error { return nil },
		undumpable: func() error { return errors.ErrUnsupported },
	})
	if err != nil || got != (Report{Locked: true}) {
		t.Fatalf("report %+v, err %v", got, err)
	}
}
