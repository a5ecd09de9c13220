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
  status   print the keyring's terms and how many data keys each wraps

Both run against a stopped server's data directory (--data; the server
holds a lock on it while it runs), or against an external NATS cluster
(--nats), where running servers pick up the new keyring by themselves.
The master key comes from $FLOWVAULT_MASTER_KEY or --master-key-file; a
dev-mode data directory's own master.key is used when neither is set.

flags:
`

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := subcommand(args, keysUsage, stderr)
	if err != nil {
		return err
	}
	if sub != "rotate" && sub != "status" {
		fmt.Fprintf(stderr, "flowvault keys: unknown command %q\n\n%s", sub, keysUsage)
		return errUsage
	}
	cfg := node.DefaultConfig()
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, keysUsage); fs.PrintDefaults() }
	str := func(p *string, name, usage string) {
		if v, ok := os.LookupEnv(envName(name)); ok {
			*p = v
		}
		fs.StringVar(p, name, *p, usage+" ($"+envName(name)+")")
	}
	str(&cfg.DataDir, "data", "the (stopped) server's data directory")
	str(&cfg.NATSURL, "nats", "external NATS server URL(s) instead of the data directory's embedded store")
	str(&cfg.NATSCreds, "nats-creds", "credentials file for --nats")
	str(&cfg.MasterKeyFile, "master-key-file", "file holding the master key; or set $"+secrets.MasterKeyEnv)
	if v, set, err := masterKeyFromEnv(); err != nil {
		return err
	} else if set {
		cfg.MasterKey = v
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "flowvault keys %s: unexpected argument %q\n", sub, pos[0])
		return errUsage
	}
	if err := checkMasterKeyFile(fs, cfg.MasterKeyFile); err != nil {
		return err
	}
	if err := cfg.MasterKeySource().Validate(); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	keys, log, closeAll, err := openOfflineKeys(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeAll()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	if sub == "rotate" {
		res, err := keys.Rotate(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rotated the keyring to term %d (was %d); re-wrapped %d data keys\n", res.Term, res.Previous, res.Rewrapped)
		by := osUser()
		if err := audit.NewRecorder(log, audit.RecorderConfig{Logger: logger}).Record(ctx, by, &schemas.KeyringRotated{
			Term: int(res.Term), Previous: int(res.Previous), Rewrapped: res.Rewrapped, By: by, Time: time.Now().UnixMilli()}); err != nil {
			return fmt.Errorf("the keyring is rotated, but the audit trail does not say so: %w", err)
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
		Logger: logger, Replicas: ec.Replicas, DevKeyFile: devKeyFile, RequireKeyring: true,
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
