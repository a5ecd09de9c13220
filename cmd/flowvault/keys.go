package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/flowvault/flowvault/audit"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/secrets"
)

const keysUsage = `usage: flowvault keys <command> [flags]

commands:
  rotate   add a new key encryption key (KEK) term to the keyring, make it
           the active one and re-wrap every data key under it; events are
           not touched. Old terms stay and only decrypt.
  rekey    change the master key: seal the keyring under a new master key
           and erase the form sealed under the current one. The new key
           comes from --new-master-key-file or $FLOWVAULT_NEW_MASTER_KEY
           (never the command line); in dev mode, with neither, a new dev
           key replaces <data>/master.key. On a data directory the
           embedded NATS store moves to the new key's account: NATS
           credentials issued before stop working. Interrupted, it leaves
           the data dir refusing to start until it is run again.
  status   print the keyring's terms and how many data keys each wraps

All run against a stopped server's data directory (--data; the server
holds a lock on it while it runs), or against an external NATS cluster
(--nats), where running servers pick up a rotated keyring by themselves
(after a rekey they must be restarted with the new key).
The master key comes from $FLOWVAULT_MASTER_KEY or --master-key-file; a
dev-mode data directory's own master.key is used when neither is set.
`

// keysCommandsUsage is keys' usage without a command, whose flags depend
// on the command.
const keysCommandsUsage = keysUsage + "\nRun 'flowvault keys <command> -h' for a command's flags.\n"

// offlineFlags parses the flags of a command that opens a stopped
// server's data directory or an external NATS server: --data, --nats,
// --nats-creds, --master-key-file (and $FLOWVAULT_MASTER_KEY), and the
// command's own, which extra declares.
func offlineFlags(name, usage string, args []string, stderr io.Writer, extra func(*flag.FlagSet, func(p *string, name, usage string))) (node.Config, error) {
	cfg := node.DefaultConfig()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage+"\nflags:\n"); fs.PrintDefaults() }
	envs := &envFlags{}
	str := func(p *string, name, usage string) {
		fs.StringVar(p, name, *p, usage+" ($"+envName(name)+")")
		envs.add(name, func() error { return fromEnv(p, name, func(s string) (string, error) { return s, nil }) })
	}
	str(&cfg.DataDir, "data", "the (stopped) server's data directory")
	str(&cfg.NATSURL, "nats", "external NATS server URL(s) instead of the data directory's embedded store")
	str(&cfg.NATSCreds, "nats-creds", "credentials file for --nats")
	// The command makes sure of the streams and buckets it opens, at the
	// server's replicas: at 1 it would scale a cluster's R3 ones down.
	replicas := strconv.Itoa(cfg.NATSReplicas)
	str(&replicas, "nats-replicas", "copies each stream and bucket keeps on the --nats cluster, as the servers' --nats-replicas")
	str(&cfg.MasterKeyFile, "master-key-file", "file holding the master key; or set $"+secrets.MasterKeyEnv)
	if extra != nil {
		extra(fs, str)
	}
	if v, set, err := masterKeyFromEnv(); err != nil {
		return cfg, err
	} else if set {
		cfg.MasterKey = v
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return cfg, err
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "flowvault %s: unexpected argument %q\n", name, pos[0])
		return cfg, errUsage
	}
	envs.apply(fs) // strings: none fails to parse
	if cfg.NATSReplicas, err = strconv.Atoi(replicas); err != nil || cfg.NATSReplicas < 1 || cfg.NATSReplicas > 5 {
		return cfg, fmt.Errorf("--nats-replicas %q: want 1..5", replicas)
	}
	if cfg.NATSURL == "" && cfg.NATSReplicas != 1 {
		return cfg, errors.New("--nats-replicas is for an external NATS cluster (--nats); the embedded server keeps one copy")
	}
	if err := checkMasterKeyFile(fs, cfg.MasterKeyFile); err != nil {
		return cfg, err
	}
	if err := cfg.MasterKeySource().Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := subcommand(args, keysCommandsUsage, stderr)
	if err != nil {
		return err
	}
	if sub != "rotate" && sub != "status" && sub != "rekey" {
		fmt.Fprintf(stderr, "flowvault keys: unknown command %q\n\n%s", sub, keysCommandsUsage)
		return errUsage
	}
	var newKeyFile string
	var flags *flag.FlagSet
	cfg, err := offlineFlags("keys "+sub, keysUsage, args, stderr, func(fs *flag.FlagSet, str func(*string, string, string)) {
		flags = fs
		if sub == "rekey" {
			str(&newKeyFile, "new-master-key-file", "file holding the new master key (rekey); or set $"+newMasterKeyEnv)
		}
	})
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if sub == "rekey" {
		// Left blank, the new key of a dev-mode data dir would be a new
		// dev key: the old one erased and every worker's credentials
		// voided for a key no one asked for.
		if err := checkKeyFile(flags, "new-master-key-file", newKeyFile, "the new master key", "a new dev key (dev mode only)"); err != nil {
			return err
		}
		return runRekey(ctx, cfg, newKeyFile, stdout, logger)
	}
	keys, log, closeAll, err := openOfflineKeys(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeAll()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	if sub == "rotate" {
		res, err := keys.Rotate(ctx)
		if err != nil && res.Term == 0 {
			return err
		}
		if err == nil {
			fmt.Fprintf(stdout, "rotated the keyring to term %d (was %d); re-wrapped %d data keys\n", res.Term, res.Previous, res.Rewrapped)
		}
		// A rotation stopped after it stored its keyring (interrupted, or
		// a key it could not re-wrap) made the new term all the same: it
		// is recorded, with the keys re-wrapped so far, on a context of
		// its own, since an interrupt cancelled ctx.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer rcancel()
		by := osUser()
		aerr := audit.NewRecorder(log, audit.RecorderConfig{Logger: logger}).Record(rctx, by, &schemas.KeyringRotated{
			Term: int(res.Term), Previous: int(res.Previous), Rewrapped: res.Rewrapped, By: by, Time: time.Now().UnixMilli()})
		if err != nil {
			recorded := "recorded in the audit trail"
			if aerr != nil {
				recorded = fmt.Sprintf("not recorded in the audit trail (%v)", aerr)
			}
			return fmt.Errorf("rotated the keyring to term %d (was %d), %s, but stopped after re-wrapping %d data keys: %w; "+
				"the keys not re-wrapped yet stay readable under their old term: run `flowvault keys rotate` again to finish", res.Term, res.Previous, recorded, res.Rewrapped, err)
		}
		if aerr != nil {
			return fmt.Errorf("the keyring is rotated, but the audit trail does not say so: %w", aerr)
		}
		return nil
	}
	st, err := keys.Status(ctx)
	if err != nil {
		return err
	}
	for _, t := range st.Terms {
		active := ""
		if t.Active {
			active = "  (active)"
		}
		fmt.Fprintf(stdout, "term %d  created %s  data keys %d%s\n", t.Term, t.Created.Format(time.RFC3339), st.DataKeys[t.Term], active)
	}
	return nil
}

// openOfflineKeys opens the key store of a data directory (holding its
// lock, so that a running server and this command never share the files)
// or of an external NATS server.
func openOfflineKeys(ctx context.Context, cfg node.Config, logger *slog.Logger) (*secrets.Keys, *eventlog.Log, func(), error) {
	mk, err := secrets.LoadMasterKey(cfg.MasterKeySource(), logger)
	if err != nil {
		return nil, nil, nil, err
	}
	ec := cfg.Eventlog()
	devKeyFile := ""
	release := func() {}
	if ec.Embedded() {
		if _, err := os.Stat(ec.StoreDir); errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil, fmt.Errorf("%s is not a flowvault data directory (it has no %s)", cfg.DataDir, filepath.Base(ec.StoreDir))
		}
		if release, err = node.LockDataDir(cfg.DataDir); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: stop the server first", err)
		}
		if err := node.CheckRekeyPending(cfg.DataDir); err != nil {
			release()
			return nil, nil, nil, err
		}
		// Nothing but this process needs the server: no listener.
		cfg.NATSListen = ""
		devKeyFile = cfg.DevKeyFile()
	} else if mk == nil {
		return nil, nil, nil, fmt.Errorf("with --nats, set $%s or --master-key-file", secrets.MasterKeyEnv)
	}
	log, mk, _, err := node.OpenLog(ctx, cfg, mk, eventlog.Options{Logger: logger})
	if err != nil {
		release()
		return nil, nil, nil, err
	}
	keys, err := secrets.OpenKeys(ctx, log.JetStream(), mk, secrets.KeysOptions{
		Logger: logger, Replicas: ec.Replicas, DevKeyFile: devKeyFile, RequireKeyring: true, Guard: log, Forming: log,
	})
	if err != nil {
		log.Close()
		release()
		return nil, nil, nil, err
	}
	return keys, log, func() { log.Close(); release() }, nil
}

// osUser names who ran an offline command, for the audit trail: the
// operating system's user, as "os:<name>".
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "os:" + u.Username
	}
	return "os:uid " + strconv.Itoa(os.Getuid())
}
