package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
)

// Files in the data directory.
const (
	// TokenKeyFile holds the secret token signing keys are derived from.
	TokenKeyFile = "token.key"
	// BootstrapFile holds the bootstrap admin key in dev mode.
	BootstrapFile = "bootstrap-admin.json"
)

// authParts are the node's access-control collaborators.
type authParts struct {
	store      *auth.Store
	authorizer *auth.Authorizer
	tokens     *auth.Tokens
}

// startAuth runs the auth read model, opens the store, the authorizer and
// the token service, and bootstraps a fresh server's admin key.
// freshData says whether this start created the data directory.
func (n *Node) startAuth(ctx, runCtx context.Context, freshData bool) (*authParts, error) {
	runner, err := n.startProjection(ctx, runCtx, eventlog.Access.Name, auth.Projection{Notify: n.notifyGate})
	if err != nil {
		return nil, err
	}
	if err := catchUp(ctx, n.log, eventlog.Access.Name, runner); err != nil {
		return nil, err
	}
	p := &authParts{store: auth.NewStore(n.log, n.store, runner, n.logger)}
	p.authorizer = auth.NewAuthorizer(p.store)
	p.authorizer.Register(auth.TargetApplication, appTargets{p.store})
	secret, err := auth.FileTokenKey{Path: filepath.Join(n.cfg.DataDir, TokenKeyFile)}.TokenSecret()
	if err != nil {
		return nil, err
	}
	signer, err := auth.NewSigner(secret)
	if err != nil {
		return nil, err
	}
	p.tokens = auth.NewTokens(p.store, signer, n.log, n.cfg.TokenTTL, n.logger)
	p.tokens.SetRefusals(n.audit) // within the audit log's flood limits
	// The key is in its file before it is recorded: a first start that
	// dies once the record is stored (kill -9, Ctrl-C while it waits for
	// its read model) leaves it there, since the next start, finding
	// FV_AUTH written, makes and shows no key.
	writeFile := freshData || n.cfg.Dev
	path := filepath.Join(n.cfg.DataDir, BootstrapFile)
	var keep func(auth.NewAccessKey) error
	kept := false
	if writeFile {
		keep = func(key auth.NewAccessKey) error {
			kept = true
			return writeBootstrapFile(path, key)
		}
	}
	key, created, err := p.store.Bootstrap(ctx, keep)
	if err != nil {
		return nil, fmt.Errorf("bootstrap admin key: %w", err)
	}
	if kept && !created {
		// Another engine's bootstrap won: the key kept opens nothing.
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("bootstrap admin key: %w", err)
		}
	}
	if created {
		n.announceBootstrap(key, path, writeFile)
	}
	if n.cfg.Insecure {
		n.logger.Warn("!!! AUTHENTICATION IS OFF (--insecure-dev): every request acts as an anonymous admin; never run this way with real data or a reachable port !!! " +
			"(NATS still requires credentials: POST /api/workers/credentials)")
	}
	return p, nil
}

// announceBootstrap prints the bootstrap admin key once, in a banner on
// BootstrapOutput (not through the logger: the secret must not reach log
// aggregation), saying whether it is in its file (path) too.
func (n *Node) announceBootstrap(key auth.NewAccessKey, path string, inFile bool) {
	out := n.cfg.BootstrapOutput
	if out == nil {
		out = os.Stderr
	}
	fmt.Fprintf(out, "\n"+
		"================ flowvault bootstrap admin key (shown once) ================\n"+
		"  application: %s (role ADMIN)\n"+
		"  keyId:       %s\n"+
		"  keySecret:   %s\n"+
		"  Mint a token: POST /api/token {\"keyId\":…,\"keySecret\":…}. Store the\n"+
		"  secret now: it is kept only as a hash and will not be shown again.\n",
		auth.BootstrapAppID, key.ID, key.Secret)
	if inFile {
		fmt.Fprintf(out, "  Also written to %s (mode 0600), which the CLI reads.\n", path)
	}
	fmt.Fprintf(out, "============================================================================\n\n")
	n.logger.Warn("created the bootstrap admin application; its key was printed once", "application", auth.BootstrapAppID)
}

// writeBootstrapFile writes the bootstrap admin key to path (0600), on a
// fresh data directory or with --dev.
func writeBootstrapFile(path string, key auth.NewAccessKey) error {
	b, _ := json.Marshal(map[string]string{"keyId": key.ID, "keySecret": key.Secret})
	// Replaced, not created afresh: with --dev the file may hold the key
	// of an earlier bootstrap (of a log since wiped), and a start that
	// died before it recorded the key it kept left a file holding a key
	// that opens nothing. Refusing to replace it would stop the server
	// with a file holding a dead key, which no later start would fix.
	b = append(b, '\n')
	err := WritePrivateFile(path, b)
	clear(b)
	return err
}

// WritePrivateFile replaces path with data, readable by its owner only
// (0600): written to a temporary file in the same directory, synced and
// renamed over path, so that a reader, or the file after a crash, is
// the old file or the new one, never a part, and no other user could
// ever open it. A failed write removes its temporary file.
func WritePrivateFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*") // mode 0600
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable. It is best effort: some
// platforms (Windows) cannot sync a directory, and the file itself is
// complete either way.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// emptyOrAbsent reports whether dir does not exist or holds nothing
// (before the node writes to it).
func emptyOrAbsent(dir string) bool {
	entries, err := os.ReadDir(dir)
	return errors.Is(err, fs.ErrNotExist) || err == nil && len(entries) == 0
}

// exists reports whether a file exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
