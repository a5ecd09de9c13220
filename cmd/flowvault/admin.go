package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/flowvault/flowvault/auth"
)

const adminUsage = `usage: flowvault admin recover --out FILE [flags]

commands:
  recover  create a new admin application with one access key, when every
           admin key is lost. It runs against a stopped server's data
           directory (--data, holding its lock) or an external NATS cluster
           (--nats), and needs the master key: it opens the keyring with it
           first, and refuses without it. The key ({"keyId","keySecret"},
           as bootstrap-admin.json holds it) is written to --out, created
           with mode 0600 (an existing file is not replaced; --out - prints
           it). The application's events name the operating system's user
           who ran it ("os:<user>"), so the audit trail shows the recovery.
`

// adminCommandsUsage is admin's usage without a command, whose flags
// recover -h lists.
const adminCommandsUsage = adminUsage + "\nRun 'flowvault admin recover -h' for its flags.\n"

func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := subcommand(args, adminCommandsUsage, stderr)
	if err != nil {
		return err
	}
	if sub != "recover" {
		fmt.Fprintf(stderr, "flowvault admin: unknown command %q\n\n%s", sub, adminCommandsUsage)
		return errUsage
	}
	var out string
	cfg, err := offlineFlags("admin recover", adminUsage, args, stderr, func(fs *flag.FlagSet, _ func(*string, string, string)) {
		fs.StringVar(&out, "out", "", "file to write the new admin key to (mode 0600; - for standard output)")
	})
	if err != nil {
		return err
	}
	if out == "" {
		fmt.Fprintln(stderr, "flowvault admin recover: --out is required: the file to write the new admin key to (- for standard output)")
		return errUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// The keyring opens with the master key, or nothing happens.
	_, log, closeAll, err := openOfflineKeys(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeAll()
	// The file first: a path that cannot be written fails before a key
	// exists that nobody could use.
	var f *os.File
	if out != "-" {
		if f, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			return fmt.Errorf("--out: %w (an existing file is not replaced)", err)
		}
		defer func() {
			if f != nil {
				f.Close()
				os.Remove(out)
			}
		}()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	by := osUser()
	appID, key, err := auth.RecoverAdmin(ctx, log, by)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]string{"keyId": key.ID, "keySecret": key.Secret})
	b = append(b, '\n')
	defer clear(b)
	if f == nil {
		if _, err := stdout.Write(b); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "created admin application %s (%q, role ADMIN) with access key %s, as %s\n", appID, auth.RecoveryAppName, key.ID, by)
		return nil
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("the admin application %s exists, but its key could not be written to %s (delete the application and run again): %w", appID, out, err)
	}
	f = nil
	fmt.Fprintf(stdout, "created admin application %s (%q, role ADMIN) with access key %s, as %s; the key is in %s (mode 0600)\n",
		appID, auth.RecoveryAppName, key.ID, by, out)
	return nil
}
