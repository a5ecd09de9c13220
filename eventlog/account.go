package eventlog

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/logkey"
)

// Authenticator secures the embedded server with decentralized JWT
// authentication (an operator, accounts, users). natsauth.Authority
// implements it.
type Authenticator interface {
	// ConfigureServer sets the server's trusted operator and account
	// resolver.
	ConfigureServer(o *server.Options) error
	// Account is the public key of the account flowvault's streams live
	// in: the embedded server keeps its JetStream data in a directory of
	// that name.
	Account() string
	// EngineOptions authenticate this process's own connection.
	EngineOptions() ([]nats.Option, error)
}

// ErrAccountMismatch reports a store whose JetStream data belongs to
// another account than the Authenticator's: the account is derived from
// the master key, so the key is not the one the data was written with.
var ErrAccountMismatch = errors.New("the store's JetStream data belongs to another NATS account")

// anonymousAccount is where a server without operator keeps the data of
// unauthenticated clients: flowvault's store before its server required
// credentials.
const anonymousAccount = "$G"

// storeAccounts lists the accounts that hold JetStream data under dir.
func storeAccounts(dir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "jetstream"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream store: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// StoreHasData reports whether an embedded server has kept JetStream data
// under dir (an event log, and with it a keyring, exists).
func StoreHasData(dir string) (bool, error) {
	accounts, err := storeAccounts(dir)
	return len(accounts) > 0, err
}

// prepareStore makes sure the server about to start in dir finds its data
// under account. Data of the anonymous account (a store written before the
// server required credentials) is moved there; data of any other account
// means the wrong master key, and the server must not start: it would see
// an empty log and start writing a second history next to the first.
func prepareStore(dir, account string, logger *slog.Logger) error {
	accounts, err := storeAccounts(dir)
	if err != nil || slices.Contains(accounts, account) {
		return err
	}
	var others []string
	for _, a := range accounts {
		if a != anonymousAccount {
			others = append(others, a)
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("%w: the data in %s belongs to account %v, the configured key derives %s", ErrAccountMismatch, dir, others, account)
	}
	if !slices.Contains(accounts, anonymousAccount) {
		return nil
	}
	js := filepath.Join(dir, "jetstream")
	if err := os.Rename(filepath.Join(js, anonymousAccount), filepath.Join(js, account)); err != nil {
		return fmt.Errorf("move anonymous jetstream data to account %s: %w", account, err)
	}
	logger.Warn("moved the event log written without NATS authentication into the flowvault account; the embedded server now requires credentials",
		logkey.Dir, dir, logkey.Account, account)
	return nil
}
