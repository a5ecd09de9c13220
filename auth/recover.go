package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// RecoveryAppName is the name of the applications RecoverAdmin creates.
const RecoveryAppName = "Recovery admin"

// RecoverAdmin creates an admin application with one access key, as
// Bootstrap does on a fresh server, on a log whose admin keys are all
// lost (`flowvault admin recover`). It runs offline, without a read
// model: it appends the application's events to the log, and a server
// applies them when it starts. by names who ran it ("os:<user>"); the
// events are the audit record. The application gets a fresh id, so no
// existing application, key or grant is touched. The secret is in the
// result and nowhere else: the log keeps only its argon2id hash.
func RecoverAdmin(ctx context.Context, log *eventlog.Log, by string) (appID string, key NewAccessKey, err error) {
	s := &Store{log: log, now: time.Now}
	appID = uuid.NewString()
	key = NewAccessKey{ID: uuid.NewString(), Secret: newSecret()}
	hash := hashSecret(key.Secret)
	now := s.millis()
	events := []schemas.Event{
		&schemas.ApplicationCreated{ID: appID, Name: RecoveryAppName, Time: now, By: by},
		&schemas.ApplicationRolesSet{ID: appID, Roles: []string{RoleAdmin}, Added: []string{RoleAdmin}, Time: now, By: by},
		&schemas.AccessKeyCreated{AppID: appID, KeyID: key.ID, Hash: hash, Time: now, By: by},
	}
	if _, err := s.append(ctx, AppSubject(appID), by, 0, events); err != nil {
		return "", NewAccessKey{}, fmt.Errorf("append the recovery admin application: %w", projections.AppendFault(err))
	}
	return appID, key, nil
}
