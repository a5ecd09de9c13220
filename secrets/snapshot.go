package secrets

import (
	"context"
	"fmt"
	"sort"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// snapshot is the secrets read model as one moment left it, which a
// listing reads in: its names, what its caller's access to each is
// decided on, and what it shows of each. A read of the live read model
// is pinned to the state a check was made on, and is stale once the name
// moves; in a snapshot the names, the checks and the reads see one state,
// which no change moves. One snapshot serves a whole listing.
type snapshot struct {
	r     kvReader
	close func() error
}

func (w *writer) snapshot() (snapshot, error) {
	r, _, release, err := w.store.ReaderAt(ProjectionName)
	if err != nil {
		return snapshot{}, fmt.Errorf("snapshot of the secrets read model: %w", err)
	}
	return snapshot{r: r, close: release}, nil
}

// names is the name of every key under prefix, sorted: what names.
func (sn snapshot) names(prefix, what string) ([]string, error) {
	names, err := scanNames(sn.r, prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s names: %w", what, err)
	}
	return names, nil
}

// Close releases the snapshot. Until then it keeps what it sees from
// being compacted away, and the read model's store waits for it.
func (sn snapshot) Close() error { return sn.close() }

// Snapshot is a Snapshot of the secrets (see snapshot). It reads no
// value: a secret's ciphertext is never read through it.
type Snapshot struct{ snapshot }

// Snapshot takes a Snapshot of the secrets. Close it when done.
func (s *Store) Snapshot(context.Context) (*Snapshot, error) {
	sn, err := s.w.snapshot()
	if err != nil {
		return nil, err
	}
	return &Snapshot{sn}, nil
}

// Names is the name of every secret in the snapshot, sorted, from the
// keys alone.
func (sn *Snapshot) Names() ([]string, error) { return sn.names(secretKeyPrefix, "secret") }

// Access is the creator and tags of secret name, which access to it
// follows besides the grants on it, as the snapshot holds them; a secret
// the snapshot does not hold is fault.ErrNotFound.
func (sn *Snapshot) Access(name string) (creator string, tags []conductor.Tag, err error) {
	return secretAccess(sn.r, name)
}

// secretAccess is the creator and tags of secret name as r holds them,
// from its one record: never its ciphertext, stored apart.
func secretAccess(r kvReader, name string) (creator string, tags []conductor.Tag, err error) {
	st, err := secretIn(r, name)
	if err != nil {
		return "", nil, err
	}
	return st.CreatedBy, toConductorTags(st.Tags), nil
}

// Tags is secret name's tags as the snapshot holds them ([] when it has
// none), as GET /api/secrets-v2 lists them.
func (sn *Snapshot) Tags(name string) ([]conductor.Tag, error) {
	st, err := sn.secret(name)
	if err != nil {
		return nil, err
	}
	return toConductorTags(st.Tags), nil
}

func (sn *Snapshot) secret(name string) (storedSecret, error) { return secretIn(sn.r, name) }

// secretIn is secret name's record as r holds it; a secret r does not
// hold is fault.ErrNotFound.
func secretIn(r kvReader, name string) (storedSecret, error) {
	if err := CheckSecretName(name); err != nil {
		return storedSecret{}, err
	}
	st, found, err := readSecret(r, name)
	if err == nil && !found {
		err = secretNotFound(name)
	}
	return st, err
}

// List is the metadata of every secret (without versions) in the
// snapshot, sorted by name, checked against nothing: a listing shows it
// to a caller whom every check allows.
func (sn *Snapshot) List() ([]Meta, error) {
	var out []Meta
	var derr error
	err := sn.r.Scan([]byte(secretKeyPrefix), func(k, v []byte) bool {
		var st storedSecret
		if derr = msgpack.Unmarshal(v, &st); derr != nil {
			return false
		}
		out = append(out, newMeta(string(k[len(secretKeyPrefix):]), st))
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// EnvSnapshot is a Snapshot of the environment values (see snapshot).
type EnvSnapshot struct{ snapshot }

// Snapshot takes an EnvSnapshot of the environment values. Close it when
// done.
func (e *Env) Snapshot(context.Context) (*EnvSnapshot, error) {
	sn, err := e.w.snapshot()
	if err != nil {
		return nil, err
	}
	return &EnvSnapshot{sn}, nil
}

// Names is the name of every environment value in the snapshot, sorted,
// from the keys alone.
func (sn *EnvSnapshot) Names() ([]string, error) {
	return sn.names(envKeyPrefix, "environment variable")
}

// envAccess is what access to an environment value follows of its
// stored state: decoded into it, the value is skipped, not copied.
type envAccess struct {
	CreatedBy string              `msgpack:"cb,omitempty"`
	Tags      []schemas.SecretTag `msgpack:"tags,omitempty"`
}

// Access is the creator and tags of environment value name, which access
// to it follows besides the grants on it, as the snapshot holds them,
// without its value; a value the snapshot does not hold is
// fault.ErrNotFound.
func (sn *EnvSnapshot) Access(name string) (creator string, tags []conductor.Tag, err error) {
	return envAccessIn(sn.r, name)
}

// envAccessIn is the creator and tags of environment value name as r
// holds them, from its one record, without its value.
func envAccessIn(r kvReader, name string) (creator string, tags []conductor.Tag, err error) {
	if err := CheckEnvName(name); err != nil {
		return "", nil, err
	}
	var a envAccess
	found, err := getMsgpack(r, envKey(name), &a)
	if err == nil && !found {
		err = envNotFound(name)
	}
	if err != nil {
		return "", nil, err
	}
	return a.CreatedBy, toConductorTags(a.Tags), nil
}

// Var is environment value name with its tags as the snapshot holds it,
// as GET /api/environment lists it; a value the snapshot does not hold
// is fault.ErrNotFound.
func (sn *EnvSnapshot) Var(name string) (EnvVar, error) {
	if err := CheckEnvName(name); err != nil {
		return EnvVar{}, err
	}
	v, found, err := readEnv(sn.r, name)
	if err == nil && !found {
		err = envNotFound(name)
	}
	if err != nil {
		return EnvVar{}, err
	}
	return EnvVar{Name: name, Value: v.Value, Tags: toConductorTags(v.Tags)}, nil
}

// List is every environment value in the snapshot, sorted by name,
// checked against nothing: a listing shows it to a caller whom every
// check allows.
func (sn *EnvSnapshot) List() ([]EnvVar, error) {
	out := []EnvVar{}
	var derr error
	err := sn.r.Scan([]byte(envKeyPrefix), func(k, v []byte) bool {
		var st storedEnv
		if derr = msgpack.Unmarshal(v, &st); derr != nil {
			return false
		}
		out = append(out, EnvVar{Name: string(k[len(envKeyPrefix):]), Value: st.Value, Tags: toConductorTags(st.Tags)})
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, fmt.Errorf("list environment variables: %w", err)
	}
	return out, nil
}
