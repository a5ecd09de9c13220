package schemas

// Access-control events. Identities and grants live on the FV_AUTH stream,
// one subject per aggregate (see package auth for the subject scheme):
// every change to an application (and its access keys), a user, a group or
// the grants on one target is ordered and guarded by that subject's last
// sequence. Token issuance and refusals are audit facts on FV_AUDIT.
//
// No event carries a secret. The one derived value that is stored is the
// slow hash (argon2id) of an access key's secret in AccessKeyCreated: it is
// what verification needs, it is salted and costly to attack, and the
// secret itself has 256 bits of entropy.

// Event type names of the access-control events. They are part of the
// log's wire format: never rename one.
const (
	TypeApplicationCreated   = "auth.application_created"
	TypeApplicationUpdated   = "auth.application_updated"
	TypeApplicationDeleted   = "auth.application_deleted"
	TypeApplicationRolesSet  = "auth.application_roles_set"
	TypeApplicationTagsSet   = "auth.application_tags_set"
	TypeAccessKeyCreated     = "auth.access_key_created"
	TypeAccessKeyStatusSet   = "auth.access_key_status_set"
	TypeAccessKeyDeleted     = "auth.access_key_deleted"
	TypeUserUpserted         = "auth.user_upserted"
	TypeUserGroupsSet        = "auth.user_groups_set"
	TypeApplicationGroupsSet = "auth.application_groups_set"
	TypeUserDeleted          = "auth.user_deleted"
	TypeGroupUpserted        = "auth.group_upserted"
	TypeGroupDeleted         = "auth.group_deleted"
	TypeGrantSet             = "auth.grant_set"
	TypeTokenIssued          = "auth.token_issued"
	TypeTokenRefused         = "auth.token_refused"
	// TypeWorkerCredentialsIssued is the audit fact of NATS credentials
	// issued to workers.
	TypeWorkerCredentialsIssued = "auth.worker_credentials_issued"
	// TypeWorkerCredentialsRevoked withdraws such credentials before
	// they expire.
	TypeWorkerCredentialsRevoked = "auth.worker_credentials_revoked"
)

// ApplicationCreated records a new application (a service account whose
// principal id is "app:<ID>").
type ApplicationCreated struct {
	ID   string `msgpack:"id"`
	Name string `msgpack:"n"`
	Time int64  `msgpack:"ts"` // Unix milliseconds
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*ApplicationCreated) EventType() string { return TypeApplicationCreated }

// ApplicationUpdated records an application's new name.
type ApplicationUpdated struct {
	ID   string `msgpack:"id"`
	Name string `msgpack:"n"`
	Time int64  `msgpack:"ts"`
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*ApplicationUpdated) EventType() string { return TypeApplicationUpdated }

// ApplicationDeleted records that an application and all its access keys
// are gone. Its id is never reused.
type ApplicationDeleted struct {
	ID   string `msgpack:"id"`
	Time int64  `msgpack:"ts"`
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*ApplicationDeleted) EventType() string { return TypeApplicationDeleted }

// ApplicationRolesSet records an application's complete role set after a
// change; Added and Removed say what the change was (for the audit trail).
type ApplicationRolesSet struct {
	ID      string   `msgpack:"id"`
	Roles   []string `msgpack:"roles"`
	Added   []string `msgpack:"add,omitempty"`
	Removed []string `msgpack:"rm,omitempty"`
	Time    int64    `msgpack:"ts"`
	By      string   `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*ApplicationRolesSet) EventType() string { return TypeApplicationRolesSet }

// ApplicationTagsSet records an application's complete tag set.
type ApplicationTagsSet struct {
	ID   string   `msgpack:"id"`
	Tags []DefTag `msgpack:"tags"`
	Time int64    `msgpack:"ts"`
	By   string   `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*ApplicationTagsSet) EventType() string { return TypeApplicationTagsSet }

// AccessKeyCreated records a new access key of application AppID. Hash is
// the PHC-encoded argon2id hash of the key's secret; the secret itself is
// shown to the caller once and stored nowhere.
type AccessKeyCreated struct {
	AppID string `msgpack:"app"`
	KeyID string `msgpack:"key"`
	Hash  string `msgpack:"hash"`
	Time  int64  `msgpack:"ts"`
	By    string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*AccessKeyCreated) EventType() string { return TypeAccessKeyCreated }

// AccessKeyStatusSet records that an access key became ACTIVE or INACTIVE.
type AccessKeyStatusSet struct {
	AppID  string `msgpack:"app"`
	KeyID  string `msgpack:"key"`
	Status string `msgpack:"status"`
	Time   int64  `msgpack:"ts"`
	By     string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*AccessKeyStatusSet) EventType() string { return TypeAccessKeyStatusSet }

// AccessKeyDeleted records that an access key is gone.
type AccessKeyDeleted struct {
	AppID string `msgpack:"app"`
	KeyID string `msgpack:"key"`
	Time  int64  `msgpack:"ts"`
	By    string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*AccessKeyDeleted) EventType() string { return TypeAccessKeyDeleted }

// UserUpserted records a user's name, roles and group memberships as a
// whole (PUT /api/users/{id}).
type UserUpserted struct {
	ID     string   `msgpack:"id"`
	Name   string   `msgpack:"n"`
	Roles  []string `msgpack:"roles"`
	Groups []string `msgpack:"groups"`
	Time   int64    `msgpack:"ts"`
	By     string   `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*UserUpserted) EventType() string { return TypeUserUpserted }

// UserGroupsSet records a user's complete group set after a membership
// change made through the group endpoints.
type UserGroupsSet struct {
	ID     string   `msgpack:"id"`
	Groups []string `msgpack:"groups"`
	Time   int64    `msgpack:"ts"`
	By     string   `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*UserGroupsSet) EventType() string { return TypeUserGroupsSet }

// ApplicationGroupsSet records an application's complete group set after
// a membership change: applications are users ("app:<id>") to groups.
type ApplicationGroupsSet struct {
	ID     string   `msgpack:"id"`
	Groups []string `msgpack:"groups"`
	Time   int64    `msgpack:"ts"`
	By     string   `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*ApplicationGroupsSet) EventType() string { return TypeApplicationGroupsSet }

// UserDeleted records that a user is gone.
type UserDeleted struct {
	ID   string `msgpack:"id"`
	Time int64  `msgpack:"ts"`
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*UserDeleted) EventType() string { return TypeUserDeleted }

// GroupUpserted records a group's description, roles and default access
// (target type → accesses granted to the group on what its members
// create) as a whole.
type GroupUpserted struct {
	ID            string          `msgpack:"id"`
	Description   string          `msgpack:"d"`
	Roles         []string        `msgpack:"roles"`
	DefaultAccess []DefaultAccess `msgpack:"da,omitempty"` // sorted by target type
	Time          int64           `msgpack:"ts"`
	By            string          `msgpack:"by,omitempty"`
}

// DefaultAccess is the access a group gets on resources of TargetType that
// its members create.
type DefaultAccess struct {
	TargetType string   `msgpack:"tt"`
	Access     []string `msgpack:"acc"`
}

// EventType implements Event.
func (*GroupUpserted) EventType() string { return TypeGroupUpserted }

// GroupDeleted records that a group is gone.
type GroupDeleted struct {
	ID   string `msgpack:"id"`
	Time int64  `msgpack:"ts"`
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*GroupDeleted) EventType() string { return TypeGroupDeleted }

// GrantSet records the complete access set of one subject on one target
// after a grant or a revocation (empty: no grant left). Granted and
// Revoked say what the change was.
type GrantSet struct {
	SubjectType string   `msgpack:"st"`
	SubjectID   string   `msgpack:"sid"`
	TargetType  string   `msgpack:"tt"`
	TargetID    string   `msgpack:"tid"`
	Access      []string `msgpack:"acc"`
	Granted     []string `msgpack:"grant,omitempty"`
	Revoked     []string `msgpack:"revoke,omitempty"`
	Time        int64    `msgpack:"ts"`
	By          string   `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*GrantSet) EventType() string { return TypeGrantSet }

// TokenIssued is the audit fact of a token minted for an access key.
type TokenIssued struct {
	KeyID     string `msgpack:"key"`
	Principal string `msgpack:"sub"`
	TokenID   string `msgpack:"jti"`
	Expires   int64  `msgpack:"exp"` // Unix seconds
	Addr      string `msgpack:"addr,omitempty"`
	Time      int64  `msgpack:"ts"`
}

// EventType implements Event.
func (*TokenIssued) EventType() string { return TypeTokenIssued }

// TokenRefused is the audit fact of a refused token request: an unknown,
// inactive or deleted key, or a wrong secret. It never holds the secret.
type TokenRefused struct {
	KeyID  string `msgpack:"key"`
	Reason string `msgpack:"why"`
	Addr   string `msgpack:"addr,omitempty"`
	Time   int64  `msgpack:"ts"`
}

// EventType implements Event.
func (*TokenRefused) EventType() string { return TypeTokenRefused }

// WorkerCredentialsIssued is the audit fact of NATS credentials issued for
// workers of TaskTypes: the user's public key, never its seed.
type WorkerCredentialsIssued struct {
	User      string   `msgpack:"user"`
	Name      string   `msgpack:"n,omitempty"`
	TaskTypes []string `msgpack:"types"`
	Domains   []string `msgpack:"domains,omitempty"`
	// DomainsOnly: the Domains' queues alone, not those without domain.
	DomainsOnly bool `msgpack:"donly,omitempty"`
	// StartWorkflows may be started by publishing, as By.
	StartWorkflows []string `msgpack:"start,omitempty"`
	// Subscribe are the event subjects the holder may receive.
	Subscribe []string `msgpack:"sub,omitempty"`
	Expires   int64    `msgpack:"exp,omitempty"` // Unix seconds; 0: never
	By        string   `msgpack:"by"`
	Time      int64    `msgpack:"ts"`
}

// EventType implements Event.
func (*WorkerCredentialsIssued) EventType() string { return TypeWorkerCredentialsIssued }

// WorkerCredentialsRevoked withdraws the NATS credentials of User before
// they expire: the embedded server refuses them from then on and closes
// the connections that use them.
type WorkerCredentialsRevoked struct {
	User string `msgpack:"user"`
	By   string `msgpack:"by"`
	Time int64  `msgpack:"ts"` // Unix milliseconds
}

// EventType implements Event.
func (*WorkerCredentialsRevoked) EventType() string { return TypeWorkerCredentialsRevoked }

func init() {
	for _, ev := range []Event{&WorkerCredentialsIssued{}, &WorkerCredentialsRevoked{}, &ApplicationCreated{}, &ApplicationUpdated{}, &ApplicationDeleted{},
		&ApplicationRolesSet{}, &ApplicationTagsSet{}, &AccessKeyCreated{}, &AccessKeyStatusSet{},
		&AccessKeyDeleted{}, &UserUpserted{}, &UserGroupsSet{}, &UserDeleted{}, &GroupUpserted{},
		&GroupDeleted{}, &GrantSet{}, &TokenIssued{}, &TokenRefused{}, &ApplicationGroupsSet{}} {
		Default.Register(ev, 1)
	}
}
