package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/secrets"
)

// OpenLog opens the event log of cfg with master key mk (nil: dev mode)
// and returns it with the master key (the dev key when mk was nil and
// the server is embedded) and the NATS authority (nil with an external
// server, whose operator decides how clients authenticate).
//
// The embedded server's account is derived from the master key, so the
// key is needed before the log opens: in dev mode the key file is read,
// or, on a data dir that holds no log yet, generated. A key that derives
// another account than the one the data was written under stops here,
// before anything is written. On error mk is wiped.
func OpenLog(ctx context.Context, cfg Config, mk *secrets.MasterKey, o eventlog.Options) (_ *eventlog.Log, _ *secrets.MasterKey, _ *natsauth.Authority, err error) {
	defer func() {
		if err != nil && mk != nil {
			mk.Wipe()
		}
	}()
	ec := cfg.Eventlog()
	var authority *natsauth.Authority
	if ec.Embedded() {
		if mk == nil {
			hasLog, err := eventlog.StoreHasData(ec.StoreDir)
			if err != nil {
				return nil, nil, nil, err
			}
			logger := o.Logger
			if logger == nil {
				logger = slog.New(slog.DiscardHandler)
			}
			if mk, err = secrets.DevMasterKey(cfg.DevKeyFile(), hasLog, logger.With(logkey.Component, "secrets")); err != nil {
				return nil, nil, nil, err
			}
		}
		if authority, err = natsauth.New(mk); err != nil {
			return nil, nil, nil, err
		}
		authority.LimitWorkerConnections(cfg.ConnBudget().Workers)
		o.Auth = authority
	}
	l, err := eventlog.Open(ctx, ec, o)
	if errors.Is(err, eventlog.ErrAccountMismatch) {
		return nil, nil, nil, fmt.Errorf("the master key does not match the keyring stored in %s (wrong $%s or --master-key-file, or one that `flowvault keys rekey` replaced?); refusing to use it, nothing was changed: %w",
			cfg.DataDir, secrets.MasterKeyEnv, errors.Join(secrets.ErrWrongMasterKey, err))
	}
	if err != nil {
		return nil, nil, nil, err
	}
	return l, mk, authority, nil
}
