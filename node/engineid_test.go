package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flowvault/flowvault/internal/testutil"
)

// The engine id names the engine across its restarts (a restarted
// engine takes back the system tasks its dead process held): made at the
// first start, owner-only, the same at every start after; a file that
// holds no id is replaced rather than stopping the server.
func TestEngineIDIsKeptAcrossStarts(t *testing.T) {
	tests := []struct {
		name    string
		before  *string // the file's content before the first load; nil: none
		keepsIt bool
	}{
		{name: "first start"},
		{name: "an id from an earlier start", before: ptr("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), keepsIt: true},
		{name: "an empty file", before: ptr("")},
		{name: "an edited file", before: ptr("my-engine\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, EngineIDFileName)
			if tt.before != nil {
				if err := os.WriteFile(path, []byte(*tt.before), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			id, err := loadEngineID(dir, testutil.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			if !validEngineID(id) || tt.keepsIt != (tt.before != nil && id == *tt.before) {
				t.Fatalf("id %q from %v", id, tt.before)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 && !tt.keepsIt {
				t.Fatalf("engine id file mode %v, want 0600", fi.Mode().Perm())
			}
			again, err := loadEngineID(dir, testutil.Logger(t))
			if err != nil || again != id {
				t.Fatalf("next start: id %q (%v), want %q", again, err, id)
			}
			if _, err := os.Stat(path + ".tmp"); err == nil {
				t.Fatal("the temporary file was left")
			}
		})
	}
}

func ptr(s string) *string { return &s }
