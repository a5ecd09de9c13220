package node

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/flowvault/flowvault/internal/logkey"
)

// EngineIDFileName is the file in the data directory that names the
// engine across its restarts: its system tasks' takes record it (with the
// process's own random id), and a restarted engine asks its earlier
// processes still present on NATS whether they run, taking back at once
// the tasks of those that do not (executor.Config.EngineID): without it,
// they wait for the dead process's presence to run out. A copy of the
// directory started while the original runs shares the id, and finds the
// original answering: it takes nothing back from it.
const EngineIDFileName = "engine.id"

// loadEngineID returns the engine id kept in dir, made (random, mode
// 0600) at the first start. A file that holds no id (edited, truncated)
// is replaced: a new id only leaves the tasks of the earlier process to
// its presence's end. dir must be locked (LockDataDir).
func loadEngineID(dir string, logger *slog.Logger) (string, error) {
	path := filepath.Join(dir, EngineIDFileName)
	b, err := os.ReadFile(path)
	switch {
	case err == nil && validEngineID(string(b)):
		return string(b), nil
	case err == nil:
		logger.Warn("the engine id file holds no engine id; writing a new one", logkey.Path, path)
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("engine id: %w", err)
	}
	id := rand.Text() // 26 base32 characters, 130 bits
	// Written aside and renamed: a crash mid-write leaves no half id.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id), 0o600); err != nil {
		return "", fmt.Errorf("engine id: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("engine id: %w", err)
	}
	return id, nil
}

// validEngineID reports whether s is an id loadEngineID makes.
func validEngineID(s string) bool {
	if len(s) != 26 {
		return false
	}
	for _, c := range s {
		if (c < 'A' || c > 'Z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}
