package schemas

// Secret and environment events. They live on the FV_SECRET stream:
//
//	fv.secret.<name>      one subject per secret name (names match
//	                      [a-zA-Z0-9_-]+, so a name is one subject token)
//	fv.secret.env.<name>  one subject per environment value
//
// The two families cannot collide: a secret subject has three tokens, an
// environment subject four.
//
// A secret event never holds a value. SecretVersionPut carries the value
// sealed (AES-256-GCM) under a data key of its own, and a reference to that
// key, which lives outside the log (package secrets, KV bucket FV_KEYS) so
// that it can be destroyed. Environment values are not secrets (Orkes
// returns them in clear to anyone who may list them) and are stored as
// given.

// Event type names of the secret and environment events. They are part of
// the log's wire format: never rename one.
const (
	TypeSecretVersionPut = "secret.version_put"
	TypeSecretDeleted    = "secret.deleted"
	TypeSecretTagsSet    = "secret.tags_set"
	TypeEnvValuePut      = "secret.env_put"
	TypeEnvValueDeleted  = "secret.env_deleted"
	TypeEnvTagsSet       = "secret.env_tags_set"
)

// SecretTag is one key/value label of a secret or an environment value.
type SecretTag struct {
	Key   string `msgpack:"k"`
	Value string `msgpack:"v"`
}

// SecretVersionPut records version Version of secret Name: created when the
// name had no live value, an update otherwise.
type SecretVersionPut struct {
	Name    string `msgpack:"n"`
	Version int    `msgpack:"ver"`
	// KeyID names the data key the value is sealed under (secrets.Keys).
	KeyID string `msgpack:"key"`
	// Ciphertext is the value sealed under KeyID with the purpose
	// secrets.SecretPurpose(Name, Version) as additional data.
	Ciphertext []byte `msgpack:"ct"`
	// Fingerprint is the keyed HMAC of the value ("hmac-sha256:<hex>").
	Fingerprint string `msgpack:"fp"`
	// Size is the value's length in bytes.
	Size int    `msgpack:"size"`
	Time int64  `msgpack:"ts"` // Unix milliseconds
	By   string `msgpack:"by,omitempty"`
	// WorkflowID and TaskID name the workflow task that wrote the version
	// (UPDATE_SECRET), so that the audit trail tells a workflow's rotation
	// from a write through the API by the same principal; both are empty
	// for the latter. Added to version 1 as optional fields: records
	// written before them decode with both empty.
	WorkflowID string `msgpack:"wf,omitempty"`
	TaskID     string `msgpack:"task,omitempty"`
}

// EventType implements Event.
func (*SecretVersionPut) EventType() string { return TypeSecretVersionPut }

// SecretDeleted records that secret Name was deleted: its value, tags and
// version metadata are gone from the read model and its data keys are
// destroyed. Version is the last version it had; a later put continues
// after it.
type SecretDeleted struct {
	Name    string `msgpack:"n"`
	Version int    `msgpack:"ver"`
	Time    int64  `msgpack:"ts"` // Unix milliseconds
	By      string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*SecretDeleted) EventType() string { return TypeSecretDeleted }

// SecretTagsSet records the complete tag set of secret Name after a change.
type SecretTagsSet struct {
	Name string      `msgpack:"n"`
	Tags []SecretTag `msgpack:"tags"`
	Time int64       `msgpack:"ts"` // Unix milliseconds
	By   string      `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*SecretTagsSet) EventType() string { return TypeSecretTagsSet }

// EnvValuePut records that environment value Name was set to Value.
type EnvValuePut struct {
	Name  string `msgpack:"n"`
	Value string `msgpack:"val"`
	Time  int64  `msgpack:"ts"` // Unix milliseconds
	By    string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*EnvValuePut) EventType() string { return TypeEnvValuePut }

// EnvValueDeleted records that environment value Name was deleted, with
// its tags.
type EnvValueDeleted struct {
	Name string `msgpack:"n"`
	Time int64  `msgpack:"ts"` // Unix milliseconds
	By   string `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*EnvValueDeleted) EventType() string { return TypeEnvValueDeleted }

// EnvTagsSet records the complete tag set of environment value Name after a
// change.
type EnvTagsSet struct {
	Name string      `msgpack:"n"`
	Tags []SecretTag `msgpack:"tags"`
	Time int64       `msgpack:"ts"` // Unix milliseconds
	By   string      `msgpack:"by,omitempty"`
}

// EventType implements Event.
func (*EnvTagsSet) EventType() string { return TypeEnvTagsSet }

func init() {
	Default.Register(&SecretVersionPut{}, 1)
	Default.Register(&SecretDeleted{}, 1)
	Default.Register(&SecretTagsSet{}, 1)
	Default.Register(&EnvValuePut{}, 1)
	Default.Register(&EnvValueDeleted{}, 1)
	Default.Register(&EnvTagsSet{}, 1)
}
