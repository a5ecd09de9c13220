package projections_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
)

var noteSpecs = []projections.Spec{{Stream: eventlog.Workflows.Name, Poison: projections.Park,
	New: func() projections.Projection { return noteProjection{} }}}

// liveStore folds the log into a new store up to its last record, stops
// the runner and closes the store: a stopped node's read models.
func liveStore(t *testing.T, l *eventlog.Log, last uint64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pebble")
	s := openStore(t, dir)
	r, stop := run(t, l, s, projections.RunnerConfig{})
	if err := r.WaitFor(testutil.Context(t, 30*time.Second), last); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tamper edits a closed store behind the projections' back.
func tamper(t *testing.T, dir string, edit func(db *pebble.DB) error) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := edit(db); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func verify(t *testing.T, l *eventlog.Log, dir string) []projections.VerifyResult {
	t.Helper()
	s := openStore(t, dir)
	defer s.Close()
	res, err := projections.Verify(testutil.Context(t, 30*time.Second), l, s, noteSpecs, projections.VerifyOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestVerify(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	last, _ := appendNotes(t, l, 3, 40)
	// Records appended after the read model's checkpoint are not drift:
	// the rebuild stops where the live model is.
	live := liveStore(t, l, last)
	appendNotes(t, l, 1, 5)

	set := func(key, value string) func(*pebble.DB) error {
		return func(db *pebble.DB) error { return db.Set([]byte(key), []byte(value), pebble.Sync) }
	}
	del := func(key string) func(*pebble.DB) error {
		return func(db *pebble.DB) error { return db.Delete([]byte(key), pebble.Sync) }
	}
	tests := []struct {
		name   string
		edit   func(*pebble.DB) error
		result string // the result that shows the drift
		kind   string
		key    string
		err    string
	}{
		{"untouched", nil, "", "", "", ""},
		{"changed value", set("p/notes/count", "\x00\x00\x00\x00\x00\x00\x00\x01"), "notes", "changed", `"p/notes/count"`, ""},
		{"extra key", set("p/notes/note/planted", "x"), "notes", "extra", `"p/notes/note/planted"`, ""},
		{"deleted key", del("p/notes/note/s1-7-a"), "notes", "missing", `"p/notes/note/s1-7-a"`, ""},
		{"parked record invented", set("x/notes/\x00\x00\x00\x00\x00\x00\x00\x05", "x"), "notes", "extra", `"x/notes/\x00\x00\x00\x00\x00\x00\x00\x05"`, ""},
		{"key of no projection", set("p/ghost/k", "v"), projections.Unowned, "extra", `"p/ghost/k"`, ""},
		{"checkpoint of no projection", set("c/ghost", "12345678"), projections.Unowned, "extra", `"c/ghost"`, ""},
		{"checkpoint ahead of the log", set("c/notes", string(binary.BigEndian.AppendUint64(nil, 1<<40))), "notes", "", "", "ahead of the log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "pebble")
			if err := os.CopyFS(dir, os.DirFS(live)); err != nil {
				t.Fatal(err)
			}
			if tt.edit != nil {
				tamper(t, dir, tt.edit)
			}
			var drifted []projections.VerifyResult
			for _, r := range verify(t, l, dir) {
				if r.Name == "notes" && r.Checkpoint != last && tt.err == "" {
					t.Errorf("notes verified at checkpoint %d, want %d", r.Checkpoint, last)
				}
				if r.Drifted() {
					drifted = append(drifted, r)
				}
			}
			if tt.result == "" {
				if len(drifted) > 0 {
					t.Fatalf("drift in an untouched store: %+v", drifted)
				}
				return
			}
			if len(drifted) != 1 || drifted[0].Name != tt.result {
				t.Fatalf("drifted = %+v, want only %s", drifted, tt.result)
			}
			d := drifted[0]
			if tt.err != "" {
				if !strings.Contains(d.Error, tt.err) {
					t.Fatalf("error = %q, want %q", d.Error, tt.err)
				}
				return
			}
			if d.Differences != 1 || len(d.Sample) != 1 || d.Sample[0].Kind != tt.kind || d.Sample[0].Key != tt.key {
				t.Fatalf("differences = %d %+v, want one %s %s", d.Differences, d.Sample, tt.kind, tt.key)
			}
			if s := d.Sample[0]; (tt.kind != "missing") != strings.HasPrefix(s.Live, "sha256:") ||
				(tt.kind != "extra") != strings.HasPrefix(s.Rebuilt, "sha256:") {
				t.Fatalf("value hashes of a %s key: %+v", tt.kind, s)
			}
		})
	}
}

// Verify's store is removed when it returns; one a crash left behind is
// removed by RemoveVerifyLeftovers, and nothing else is.
func TestVerifyLeavesNothing(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	last, _ := appendNotes(t, l, 1, 3)
	live := liveStore(t, l, last)
	dir := t.TempDir()
	s := openStore(t, live)
	defer s.Close()
	if _, err := projections.Verify(testutil.Context(t, 30*time.Second), l, s, noteSpecs, projections.VerifyOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	for _, d := range []string{"verify-123", "verify-456/sub", "pebble", "verified"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := projections.RemoveVerifyLeftovers(dir); err != nil {
		t.Fatal(err)
	}
	var names []string
	left, _ := os.ReadDir(dir)
	for _, e := range left {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "pebble,verified" {
		t.Fatalf("left: %v, want pebble and verified", names)
	}
}

// The number of differences listed is bounded; all are counted.
func TestVerifySampleBound(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	last, _ := appendNotes(t, l, 1, 30)
	dir := liveStore(t, l, last)
	tamper(t, dir, func(db *pebble.DB) error {
		for i := range 50 {
			if err := db.Set([]byte("p/notes/zz/"+strconv.Itoa(i)), nil, pebble.Sync); err != nil {
				return err
			}
		}
		return nil
	})
	res := verify(t, l, dir)
	if len(res) != 1 || res[0].Differences != 50 || len(res[0].Sample) != 20 {
		t.Fatalf("results = %d, differences %d, sample %d; want 1, 50, 20", len(res), res[0].Differences, len(res[0].Sample))
	}
}

// A read model whose stream is still empty (a fresh node's secrets,
// metadata and executions) is no drift: its start recorded its layout and
// its stream's creation, and so does the rebuild.
func TestVerifyEmptyStream(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "") // its streams made, empty
	dir := filepath.Join(t.TempDir(), "pebble")
	s := openStore(t, dir)
	r := projections.NewRunner(l, s, noteProjection{}, projections.RunnerConfig{Stream: eventlog.Workflows.Name})
	if err := r.Check(testutil.Context(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, res := range verify(t, l, dir) {
		if res.Drifted() {
			t.Errorf("drift in a read model of an empty stream: %+v", res)
		}
	}
}
