package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/secrets"
)

// newMasterKeyEnv carries the new master key of `keys rekey` (base64 of
// 32 bytes). Like $FLOWVAULT_MASTER_KEY it has no flag.
const newMasterKeyEnv = "FLOWVAULT_NEW_MASTER_KEY"

// crashHooks, set at build time (-ldflags "-X main.crashHooks=on"), makes
// `keys rekey` exit at the step $FLOWVAULT_TEST_CRASH_AT names, as a crash
// would: tests of its recovery build such a binary. Release builds have
// no such hook.
var crashHooks string

// crashStep is the rekey's step hook.
func crashStep(stderr io.Writer) func(string) {
	if crashHooks != "on" {
		return nil
	}
	at := os.Getenv("FLOWVAULT_TEST_CRASH_AT")
	return func(step string) {
		if step == at {
			fmt.Fprintf(stderr, "crash hook: exiting after step %s\n", step)
			os.Exit(97)
		}
	}
}

// runRekey is `flowvault keys rekey`: it finds the current and the new
// master key and moves the data from one to the other (node.Rekey).
func runRekey(ctx context.Context, cfg node.Config, newKeyFile string, stdout io.Writer, logger *slog.Logger) error {
	newText, newSet := os.LookupEnv(newMasterKeyEnv)
	if newSet && strings.TrimSpace(newText) == "" {
		return fmt.Errorf("$%s is set but empty: want base64 of 32 random bytes (e.g. `openssl rand -base64 32`)", newMasterKeyEnv)
	}
	if newSet && newKeyFile != "" {
		return fmt.Errorf("set $%s or --new-master-key-file, not both", newMasterKeyEnv)
	}
	newSource := secrets.MasterKeySource{Text: secrets.Value(newText), File: newKeyFile}
	if newSet {
		newSource.File = ""
	}
	if err := newSource.Validate(); err != nil {
		return fmt.Errorf("new master key: %s", strings.ReplaceAll(err.Error(), secrets.MasterKeyEnv, newMasterKeyEnv))
	}
	ec := cfg.Eventlog()
	pending := false
	if ec.Embedded() {
		if _, err := os.Stat(ec.StoreDir); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s is not a flowvault data directory (it has no %s)", cfg.DataDir, filepath.Base(ec.StoreDir))
		}
		release, err := node.LockDataDir(cfg.DataDir)
		if err != nil {
			return fmt.Errorf("%w: stop the server first", err)
		}
		defer release()
		pending = node.CheckRekeyPending(cfg.DataDir) != nil
	}

	// The current key: configured, or dev mode's file.
	var oldMK, newMK *secrets.MasterKey
	defer func() {
		if oldMK != nil {
			oldMK.Wipe()
		}
		if newMK != nil {
			newMK.Wipe()
		}
	}()
	oldIsDev := false
	devFile := cfg.DevKeyFile()
	var err error
	switch {
	case cfg.MasterKeySource().Configured():
		if oldMK, err = secrets.LoadMasterKey(cfg.MasterKeySource(), logger); err != nil {
			return err
		}
	case !ec.Embedded():
		return fmt.Errorf("with --nats, set $%s or --master-key-file to the current master key", secrets.MasterKeyEnv)
	case exists(devFile):
		oldIsDev = true
		if oldMK, err = secrets.DevMasterKey(devFile, true, slog.New(slog.DiscardHandler)); err != nil {
			return err
		}
	case !pending || !newSource.Configured():
		return fmt.Errorf("%w: set $%s or --master-key-file to the current master key", secrets.ErrNoMasterKey, secrets.MasterKeyEnv)
	}
	// With no current key, an interrupted rekey out of dev mode removed
	// the dev key file already: the new key alone finishes it.

	// The new key: named, or in dev mode a new dev key.
	change := node.DevKeyKeep
	newDevFile := filepath.Join(cfg.DataDir, node.NewDevKeyFileName)
	switch {
	case newSource.Configured():
		if newMK, err = secrets.LoadMasterKey(newSource, logger); err != nil {
			return fmt.Errorf("new master key: %w", err)
		}
		if oldIsDev {
			change = node.DevKeyRemove
		}
	case oldIsDev:
		change = node.DevKeyReplace
		switch {
		case exists(newDevFile): // an interrupted run's
			if newMK, err = secrets.LoadMasterKey(secrets.MasterKeySource{File: newDevFile}, logger); err != nil {
				return fmt.Errorf("new master key: %w", err)
			}
		case pending: // renamed over master.key already: finish
			newMK = oldMK.Clone()
		default:
			newMK = secrets.GenerateMasterKey()
		}
	default:
		return fmt.Errorf("name the new master key: --new-master-key-file, or $%s (never on the command line)", newMasterKeyEnv)
	}
	if oldMK == nil {
		oldMK = newMK.Clone()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	res, err := node.Rekey(ctx, cfg, oldMK, newMK, node.RekeyOptions{Logger: logger, By: osUser(), DevKey: change, Step: crashStep(os.Stderr)})
	if err != nil {
		return err
	}
	if res.Done {
		fmt.Fprintf(stdout, "the data is under the new master key %s already, and no rekey is under way: nothing was changed\n", newMK.CheckValue())
		return nil
	}
	verb := "sealed"
	if res.Resumed {
		verb = "finished sealing"
	}
	fmt.Fprintf(stdout, "%s the keyring (%d terms, active term %d) under the new master key %s\n", verb, res.Terms, res.ActiveTerm, newMK.CheckValue())
	if res.Moved {
		fmt.Fprintf(stdout, "moved the embedded store to the new key's NATS account: worker credentials issued before no longer connect\n")
	}
	switch change {
	case node.DevKeyReplace:
		fmt.Fprintf(stdout, "the new dev master key is in %s\n", devFile)
	case node.DevKeyRemove:
		fmt.Fprintf(stdout, "removed the dev master key file %s: start the server with the new key\n", devFile)
	default:
		fmt.Fprintf(stdout, "start the server with the new master key; the old one opens nothing any more\n")
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
