package eventlog_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A store that lost part of an event stream (a power cut under relaxed
// fsync, a damaged disk, a truncated file) keeps counting where it was:
// the stream's last sequence stays, the lost records read as deleted.
// CheckKept tells such a stream apart from one that holds every record.
func TestCheckKeptFindsLostRecords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		size int64 // what is left of the last block; negative: half
	}{
		{"tail of the last block", -1},
		{"the whole block", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ctx := testutil.Context(t, 60*time.Second)
			l := testutil.OpenLog(t, dir)
			for i := 0; i < 200; i++ {
				if _, err := l.Append(ctx, fmt.Sprintf("fv.wf.kept-%d", i), notes(t, fmt.Sprintf("e%d", i), 1), 0); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.CheckKept(ctx, eventlog.Workflows.Name); err != nil {
				t.Fatalf("an intact stream: %v", err)
			}
			l.Close()

			testutil.CutLastBlock(t, testutil.StreamDir(t, testutil.LogConfig(dir).StoreDir, eventlog.Workflows.Name), tc.size)

			l = testutil.OpenLog(t, dir)
			err := l.CheckKept(ctx, eventlog.Workflows.Name)
			if !errors.Is(err, eventlog.ErrLogLost) {
				t.Fatalf("a stream that lost records: %v, want ErrLogLost", err)
			}
			if err := l.CheckKept(ctx, eventlog.Metadata.Name); err != nil {
				t.Fatalf("a stream that lost nothing: %v", err)
			}
		})
	}
}
