package schemas

// Audit facts. They live on the FV_AUDIT stream (see package audit for the
// subject scheme) and record what no other stream does: reads of values
// through the API, refused authentications, denied accesses, and how many
// refusals were not recorded because a client sent too many. Writes,
// deletes, tag and grant changes and resolutions at hand-off need no audit
// fact of their own: the events that make them are their record.
//
// No audit fact carries a value. Where a value must be identified, the
// fact holds the version and the keyed HMAC fingerprint the secrets read
// model keeps ("hmac-sha256:<hex>"), which tells nothing about the value
// without the keyring.

// Event type names of the audit facts. They are part of the log's wire
// format: never rename one.
const (
	TypeSecretRead      = "audit.secret_read"
	TypeEnvRead         = "audit.env_read"
	TypeEnvListed       = "audit.env_listed"
	TypeAuthFailed      = "audit.auth_failed"
	TypeAccessDenied    = "audit.access_denied"
	TypeRefusalsDropped = "audit.refusals_dropped"
	TypeKeyringRotated  = "audit.keyring_rotated"
	TypeKeyringRekeyed  = "audit.keyring_rekeyed"
)

// SecretRead records that a secret's value was returned through the API
// (GET /api/secrets/{key}). It is appended before the value is sent.
type SecretRead struct {
	Name        string `msgpack:"n"`
	Version     int    `msgpack:"ver"`
	Fingerprint string `msgpack:"fp"`
	Addr        string `msgpack:"addr,omitempty"`
	Time        int64  `msgpack:"ts"` // Unix milliseconds
	By          string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*SecretRead) EventType() string { return TypeSecretRead }

// EnvRead records that an environment value was returned through the API
// (GET /api/environment/{key}).
type EnvRead struct {
	Name string `msgpack:"n"`
	Addr string `msgpack:"addr,omitempty"`
	Time int64  `msgpack:"ts"`
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*EnvRead) EventType() string { return TypeEnvRead }

// EnvListed records that the environment values named Names were returned
// by a listing (GET /api/environment).
type EnvListed struct {
	Names []string `msgpack:"names"`
	Addr  string   `msgpack:"addr,omitempty"`
	Time  int64    `msgpack:"ts"`
	By    string   `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*EnvListed) EventType() string { return TypeEnvListed }

// AuthFailed records a request refused with 401 because its token was
// missing, malformed, badly signed, expired or no longer usable, or a
// token request refused with 429 because its client was over the rate
// limits (brute force). It never holds the token or the key secret.
type AuthFailed struct {
	Code   string `msgpack:"code"` // INVALID_TOKEN, EXPIRED_TOKEN or RATE_LIMITED
	Reason string `msgpack:"why"`
	Method string `msgpack:"m"`
	Path   string `msgpack:"path"`
	Addr   string `msgpack:"addr,omitempty"`
	Time   int64  `msgpack:"ts"`
}

// EventType implements Event.
func (*AuthFailed) EventType() string { return TypeAuthFailed }

// AccessDenied records a request refused with 403: an authenticated caller
// that may not do what it asked. TargetType and TargetID name the target
// when the decision was about one (empty otherwise). A refusal inside a
// workflow (an UPDATE_SECRET its principal may not write) has no request:
// Workflow and Task name the task refused instead of Method, Path and
// Addr.
type AccessDenied struct {
	Access     string `msgpack:"acc,omitempty"`
	TargetType string `msgpack:"tt,omitempty"`
	TargetID   string `msgpack:"tid,omitempty"`
	Reason     string `msgpack:"why"`
	Method     string `msgpack:"m"`
	Path       string `msgpack:"path"`
	Addr       string `msgpack:"addr,omitempty"`
	Time       int64  `msgpack:"ts"`
	By         string `msgpack:"by,omitempty"`
	// Workflow and Task were added to version 1 as optional fields:
	// records written before them decode with both empty.
	Workflow string `msgpack:"wf,omitempty"`
	Task     string `msgpack:"task,omitempty"`
}

// EventType implements Event.
func (*AccessDenied) EventType() string { return TypeAccessDenied }

// RefusalsDropped records how many AuthFailed and AccessDenied facts were
// not appended since the previous RefusalsDropped, because their clients
// (or all clients together) exceeded the audit rate limits.
type RefusalsDropped struct {
	Count uint64 `msgpack:"n"`
	Time  int64  `msgpack:"ts"`
}

// EventType implements Event.
func (*RefusalsDropped) EventType() string { return TypeRefusalsDropped }

// KeyringRotated records that the keyring got a new master-key term
// (`flowvault keys rotate`): the data keys re-wrapped under it, and who
// ran the command (the operating system's user: it runs offline, holding
// the data directory, not through the API).
type KeyringRotated struct {
	Term      int    `msgpack:"term"`
	Previous  int    `msgpack:"prev"`
	Rewrapped int    `msgpack:"n"`
	By        string `msgpack:"by"`
	Time      int64  `msgpack:"ts"`
}

// EventType implements Event.
func (*KeyringRotated) EventType() string { return TypeKeyringRotated }

// KeyringRekeyed records that the keyring was sealed under a new master
// key (`flowvault keys rekey`), and who ran the command (the operating
// system's user). Master keys are named by their check values (the hex
// of the 8-byte HMAC the sealed keyring carries in the clear), never
// shown. Term is the keyring's active term, which a rekey keeps.
type KeyringRekeyed struct {
	Term     int    `msgpack:"term"`
	Key      string `msgpack:"key"`
	Previous string `msgpack:"prev"`
	By       string `msgpack:"by"`
	Time     int64  `msgpack:"ts"`
}

// EventType implements Event.
func (*KeyringRekeyed) EventType() string { return TypeKeyringRekeyed }

func init() {
	for _, ev := range []Event{&SecretRead{}, &EnvRead{}, &EnvListed{}, &AuthFailed{}, &AccessDenied{}, &RefusalsDropped{}, &KeyringRotated{}, &KeyringRekeyed{}} {
		Default.Register(ev, 1)
	}
}
