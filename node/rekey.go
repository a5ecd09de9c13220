package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/flowvault/flowvault/audit"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/secrets"
)

// RekeyMarkerFile, in the data directory, marks a master key change
// (`flowvault keys rekey`) that has begun and not finished. While it is
// there no server starts and no other offline command runs: the keyring
// and the embedded store may be half-way between the two keys, which
// only the rekey, given both, finishes.
const RekeyMarkerFile = "rekey-in-progress"

// NewDevKeyFileName holds, while a rekey of a dev-mode data directory to
// a newly generated dev key runs, the new key: it is written before
// anything is sealed under it and renamed over master.key at the end.
const NewDevKeyFileName = secrets.DevKeyFileName + ".new"

// ErrRekeyPending reports a data directory whose master key change was
// interrupted.
var ErrRekeyPending = errors.New("a master key change (flowvault keys rekey) was interrupted")

// CheckRekeyPending refuses a data directory whose rekey has not
// finished.
func CheckRekeyPending(dataDir string) error {
	_, err := os.Stat(filepath.Join(dataDir, RekeyMarkerFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	return fmt.Errorf("%w in %s: run `flowvault keys rekey` again with the current and the new master key to finish it "+
		"(until then neither key alone opens the data); nothing was changed", ErrRekeyPending, dataDir)
}

// DevKeyChange says what a rekey does with dev mode's <data>/master.key.
type DevKeyChange int

const (
	// DevKeyKeep leaves it alone: the current key is a configured one.
	DevKeyKeep DevKeyChange = iota
	// DevKeyRemove removes it at the end: the data moves from the dev key
	// to a configured one, and the file would open nothing.
	DevKeyRemove
	// DevKeyReplace replaces it with the new key (written first to
	// NewDevKeyFileName): a dev-mode data dir gets a fresh dev key.
	DevKeyReplace
)

// RekeyOptions configures Rekey.
type RekeyOptions struct {
	Logger *slog.Logger
	// By names who runs it, for the audit trail ("os:<user>").
	By     string
	DevKey DevKeyChange
	// Step, when set, is called after each durable step, with its name
	// (tests stop the process there).
	Step func(string)
}

// RekeyResult reports a Rekey.
type RekeyResult struct {
	// ActiveTerm and Terms describe the keyring, which a rekey keeps.
	ActiveTerm uint32
	Terms      int
	// Resumed says that an earlier, interrupted run had sealed the
	// keyring under the new key already.
	Resumed bool
	// Moved says that the embedded store moved to the new key's NATS
	// account.
	Moved bool
	// Done says that the data was under the new key already, with no
	// rekey under way: nothing was changed.
	Done bool
}

// Rekey moves the data of cfg from master key oldMK to newMK, Vault's
// `operator rekey`: the keyring is sealed under newMK (its KEK terms, the
// data keys and the events stay as they are) and the keyring sealed under
// oldMK is erased securely. On the embedded store, whose NATS operator and
// accounts derive from the master key and whose JetStream data lives in a
// directory named by the account, the directory moves to the new key's
// account, so every NATS credential derived from or signed under the old
// key (workers' too) stops working. The caller holds the data directory's
// lock (LockDataDir); with an external NATS server (cfg.NATSURL) only the
// keyring changes, and processes still holding oldMK keep serving with
// the keyring they hold until they restart (secrets.Keys.WatchKeyring
// logs an error).
//
// It is crash-safe and idempotent: a marker file (RekeyMarkerFile) is
// written before the first change and removed after the last, every step
// is durable before the next, and a run given the same two keys finishes
// whatever an interrupted one left. oldMK may equal newMK only to finish
// such a run. The keys stay the caller's.
func Rekey(ctx context.Context, cfg Config, oldMK, newMK *secrets.MasterKey, o RekeyOptions) (RekeyResult, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	step := o.Step
	if step == nil {
		step = func(string) {}
	}
	ec := cfg.Eventlog()
	marker := filepath.Join(cfg.DataDir, RekeyMarkerFile)
	pending := exists(marker)
	if oldMK.Equal(newMK) && (!pending || !ec.Embedded()) {
		return RekeyResult{}, errors.New("the new master key is the current one: nothing to do")
	}
	openWith := oldMK
	var moveFrom, moveTo string
	if ec.Embedded() {
		oldAcc, err := accountOf(oldMK)
		if err != nil {
			return RekeyResult{}, err
		}
		newAcc, err := accountOf(newMK)
		if err != nil {
			return RekeyResult{}, err
		}
		js := filepath.Join(ec.StoreDir, "jetstream")
		oldThere, newThere := isDir(filepath.Join(js, oldAcc)), isDir(filepath.Join(js, newAcc))
		switch {
		case oldAcc == newAcc:
			openWith = newMK
		case oldThere && newThere:
			return RekeyResult{}, fmt.Errorf("%s holds JetStream data of both the current and the new master key's accounts (%s, %s): "+
				"a server was started with the new key on a half-rekeyed store? Inspect it; nothing was changed", js, oldAcc, newAcc)
		case newThere && !pending:
			// A rekey to newMK finished before (its marker goes last):
			// whatever oldMK is, there is nothing to do, and nothing to
			// record.
			return RekeyResult{Done: true}, nil
		case newThere:
			openWith = newMK // moved already: finish the rest
		case oldThere:
			moveFrom, moveTo = filepath.Join(js, oldAcc), filepath.Join(js, newAcc)
		default:
			return RekeyResult{}, fmt.Errorf("the embedded store in %s holds no data of the current master key's NATS account: "+
				"the current master key is not the one this data was written with; nothing was changed: %w", ec.StoreDir, secrets.ErrWrongMasterKey)
		}
		if o.DevKey == DevKeyReplace {
			// The new key is durable in the data dir before anything is
			// sealed under it.
			if err := writeNewDevKey(filepath.Join(cfg.DataDir, NewDevKeyFileName), newMK); err != nil {
				return RekeyResult{}, err
			}
		}
		if !pending {
			if err := WritePrivateFile(marker, []byte("flowvault keys rekey: from "+oldMK.CheckValue()+" to "+newMK.CheckValue()+"\n")); err != nil {
				return RekeyResult{}, err
			}
		}
		step("marked")
		cfg.NATSListen = "" // nothing but this process needs the server
	}
	log, _, _, err := OpenLog(ctx, cfg, openWith.Clone(), eventlog.Options{Logger: o.Logger})
	if err != nil {
		return RekeyResult{}, err
	}
	defer func() {
		if log != nil {
			log.Close()
		}
	}()
	rs, err := secrets.Reseal(ctx, log.JetStream(), oldMK, newMK, secrets.KeysOptions{Logger: o.Logger, Replicas: ec.Replicas, Guard: log, Forming: log}, step)
	if err != nil {
		return RekeyResult{}, err
	}
	res := RekeyResult{ActiveTerm: rs.ActiveTerm, Terms: rs.Terms, Resumed: !rs.Resealed}
	if !oldMK.Equal(newMK) {
		if err := recordRekey(ctx, log, o, rs, oldMK, newMK); err != nil {
			return res, fmt.Errorf("the keyring is sealed under the new master key, but the audit trail does not say so yet (run the command again to finish): %w", err)
		}
		step("recorded")
	}
	err = log.Close()
	log = nil
	if err != nil {
		return res, err
	}
	if !ec.Embedded() {
		return res, nil
	}
	step("closed")
	if moveFrom != "" {
		if err := os.Rename(moveFrom, moveTo); err != nil {
			return res, fmt.Errorf("move the embedded store to the new master key's NATS account: %w", err)
		}
		syncDir(filepath.Dir(moveTo))
		res.Moved = true
		step("moved")
	}
	devKey, newDevKey := cfg.DevKeyFile(), filepath.Join(cfg.DataDir, NewDevKeyFileName)
	switch o.DevKey {
	case DevKeyReplace:
		if exists(newDevKey) {
			if err := os.Rename(newDevKey, devKey); err != nil {
				return res, fmt.Errorf("replace the dev master key file: %w", err)
			}
			syncDir(cfg.DataDir)
		}
	case DevKeyRemove:
		if err := os.Remove(devKey); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("remove the old dev master key file: %w", err)
		}
		syncDir(cfg.DataDir)
	}
	step("dev-key")
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("data dir: %w", err)
	}
	syncDir(cfg.DataDir)
	return res, nil
}

// recordRekey appends the rekey's audit fact, unless the last keyring
// fact already records this very rekey (an interrupted run got that far).
func recordRekey(ctx context.Context, log *eventlog.Log, o RekeyOptions, rs secrets.ResealResult, oldMK, newMK *secrets.MasterKey) error {
	recs, err := log.ReadSubject(ctx, audit.KeysSubject, 0)
	if err != nil {
		return err
	}
	if !rs.Resealed && len(recs) > 0 {
		last := recs[len(recs)-1]
		if len(last.Events) == 1 {
			if ev, err := schemas.Default.Decode(last.Events[0]); err == nil {
				if rk, ok := ev.(*schemas.KeyringRekeyed); ok && rk.Key == newMK.CheckValue() {
					return nil
				}
			}
		}
	}
	return audit.NewRecorder(log, audit.RecorderConfig{Logger: o.Logger}).Record(ctx, o.By, &schemas.KeyringRekeyed{
		Term: int(rs.ActiveTerm), Key: newMK.CheckValue(), Previous: oldMK.CheckValue(), By: o.By, Time: time.Now().UnixMilli()})
}

// accountOf is the NATS account the embedded store keeps its data under
// with master key mk.
func accountOf(mk *secrets.MasterKey) (string, error) {
	a, err := natsauth.New(mk)
	if err != nil {
		return "", err
	}
	return a.Account(), nil
}

// writeNewDevKey stores the new dev key, unless the file holds it
// already (a run that is finishing an interrupted one).
func writeNewDevKey(path string, mk *secrets.MasterKey) error {
	if exists(path) {
		return nil
	}
	text := mk.Text()
	defer text.Wipe()
	data := append([]byte(text), '\n')
	defer clear(data)
	return WritePrivateFile(path, data)
}

func isDir(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}
