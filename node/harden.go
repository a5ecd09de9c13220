package node

import (
	"fmt"
	"log/slog"

	"github.com/flowvault/flowvault/internal/harden"
	"github.com/flowvault/flowvault/internal/logkey"
)

// mlockFix says how to let a server lock its memory.
const mlockFix = "run as root, grant CAP_IPC_LOCK (setcap cap_ipc_lock=+ep bin/flowvault) or raise the memlock limit to unlimited"

// hardenProcess locks the server's memory as cfg.Mlock says and makes the
// process undumpable (see package harden). Only a server process does
// this: tests and tools that start a node in their own process do not.
func hardenProcess(cfg Config, logger *slog.Logger) error {
	r, err := harden.Apply(harden.Mode(cfg.Mlock))
	if err != nil {
		return fmt.Errorf("--mlock %s: %w; %s", cfg.Mlock, err, mlockFix)
	}
	switch {
	case r.Locked:
		logger.Info("memory locked: secret values in memory are never written to swap")
	case cfg.Mlock != string(harden.Off):
		logger.Warn("memory is NOT locked: secret values in memory may be written to swap; "+mlockFix+
			"; --mlock require refuses to start without it, --mlock off silences this", logkey.Reason, r.NotLocked)
	}
	if !r.Undumpable {
		logger.Warn("the process could not be made undumpable: a core dump or a debugger may read secret values from its memory")
	}
	return nil
}
