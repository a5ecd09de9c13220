package masking

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// Sealed stands in a workflow's data for a value that must not be stored in
// plaintext: a leaf under _secrets or _masked, or a maskedFields field. It
// holds the value's JSON encrypted under one of the workflow's data keys.
// Only the executor opens it, on the copy of a task's input it hands to a
// worker. Everything else sees "***": Sealed renders that way in JSON, text
// and logs. It is a msgpack extension type, so no data a user sends can
// produce one.
type Sealed struct {
	// Kind names the key that sealed it: KindSecrets keys are destroyed when
	// the workflow is compacted, KindMasked keys are kept (restarts need the
	// data).
	Kind byte
	// Purpose is where the value was sealed (workflow id and path). It is
	// authenticated with the ciphertext: a value copied elsewhere in its
	// workflow still opens, one moved to another workflow does not. It is
	// stored in plain text: a key on the path that holds a value redaction
	// looks for is named as redaction writes it (see KeyNames).
	Purpose string
	// Ciphertext is opaque to everything but the keyring.
	Ciphertext []byte
}

// Sealing kinds.
const (
	KindSecrets byte = 's'
	KindMasked  byte = 'm'
)

// sealedExt is Sealed's msgpack extension type id.
const sealedExt int8 = 17

func init() { msgpack.RegisterExt(sealedExt, (*Sealed)(nil)) }

// MarshalMsgpack implements msgpack.Marshaler for the extension payload:
// kind, uvarint purpose length, purpose, ciphertext.
func (s *Sealed) MarshalMsgpack() ([]byte, error) {
	b := append([]byte{s.Kind}, binary.AppendUvarint(nil, uint64(len(s.Purpose)))...)
	b = append(b, s.Purpose...)
	return append(b, s.Ciphertext...), nil
}

// UnmarshalMsgpack implements msgpack.Unmarshaler for the extension payload.
func (s *Sealed) UnmarshalMsgpack(b []byte) error {
	if len(b) < 2 {
		return fmt.Errorf("sealed value: %d bytes", len(b))
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || uint64(len(b)-1-w) < n {
		return fmt.Errorf("sealed value: bad purpose length")
	}
	s.Kind = b[0]
	s.Purpose = string(b[1+w : 1+w+int(n)])
	s.Ciphertext = append([]byte(nil), b[1+w+int(n):]...)
	return nil
}

// MarshalJSON renders a sealed value as "***".
func (s *Sealed) MarshalJSON() ([]byte, error) { return json.Marshal(Mask) }

// String renders a sealed value as "***".
func (s *Sealed) String() string { return Mask }

// GoString renders a sealed value as "***".
func (s *Sealed) GoString() string { return Mask }

// LogValue renders a sealed value as "***" in structured logs.
func (s *Sealed) LogValue() slog.Value { return slog.StringValue(Mask) }

// Sealer encrypts and decrypts the values of one workflow. purpose binds
// each ciphertext to where it belongs (authenticated, not secret).
type Sealer interface {
	Seal(kind byte, purpose string, plaintext []byte) ([]byte, error)
	Open(kind byte, purpose string, ciphertext []byte) ([]byte, error)
}

// SealKeys returns a copy of v in which every leaf under a _secrets or
// _masked key is sealed. path names v's place (e.g. "task/<id>/output"): it
// is the base of each leaf's purpose, which names the keys above the leaf
// as redact redacts them (see KeyNames; nil: as they are). found receives
// each sealed leaf's plaintext JSON, for redaction and fingerprints.
// Already sealed leaves are kept as they are.
func SealKeys(s Sealer, redact *Redactor, path string, v any, found func(plain []byte)) (any, error) {
	return walkSeal(s, redact, path, v, 0, found)
}

// KeyNames returns what the keys of m that r redacts are named in the
// purposes of the values sealed under them, by key; the others are named
// as they are. A purpose is stored in plain text beside its ciphertext,
// in the log for good: a key holding a value redaction looks for (a
// worker's output keyed by its secret) is named as its stored copy reads,
// "***", and numbered ("***#2") when another key of m is named so, for a
// purpose names one value of its workflow. The redacted copy of m
// (Redactor.Value) names them so too. Numbers go in the order of a hash
// of the keys keyed anew by each process (nameOrder): the same keys are
// named the same whenever asked in it, as a purpose, made before its
// value is stored, and the stored key must agree, and the order tells
// nothing of how the values compare, as the keys' own order would. nil
// when r redacts none of them, as for most maps.
func KeyNames(r *Redactor, m map[string]any) map[string]string {
	if r.Empty() {
		return nil
	}
	var names map[string]string
	var keys []string
	for k := range m {
		if rk := r.String(k); rk != k {
			if names == nil {
				names = map[string]string{}
			}
			names[k] = rk
			keys = append(keys, k)
		}
	}
	if names == nil {
		return nil
	}
	if len(keys) > 1 {
		order := make(map[string][]byte, len(keys))
		for _, k := range keys {
			h := hmac.New(sha256.New, nameOrder[:])
			h.Write([]byte(k))
			order[k] = h.Sum(nil)
		}
		slices.SortFunc(keys, func(a, b string) int { return bytes.Compare(order[a], order[b]) })
	}
	taken := make(map[string]bool, len(names))
	for _, k := range keys {
		base := names[k]
		name := base
		for i := 2; taken[name] || keptAs(m, names, name); i++ {
			name = base + "#" + strconv.Itoa(i)
		}
		taken[name], names[k] = true, name
	}
	return names
}

// nameOrder keys the hash KeyNames orders keys by.
var nameOrder = func() (k [32]byte) {
	rand.Read(k[:]) // never fails (crypto/rand)
	return k
}()

// keptAs reports whether a key of m that redaction leaves is name.
func keptAs(m map[string]any, redacted map[string]string, name string) bool {
	_, in := m[name]
	_, rewritten := redacted[name]
	return in && !rewritten
}

func walkSeal(s Sealer, redact *Redactor, path string, v any, kind byte, found func([]byte)) (any, error) {
	switch x := v.(type) {
	case *Sealed:
		return x, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		names := KeyNames(redact, x)
		for k, e := range x {
			k2 := kind
			switch k {
			case KeySecrets:
				k2 = KindSecrets
			case KeyMasked:
				if kind == 0 {
					k2 = KindMasked
				}
			}
			name, renamed := names[k]
			if !renamed {
				name = k
			}
			sealed, err := walkSeal(s, redact, path+"."+name, e, k2, found)
			if err != nil {
				return nil, err
			}
			out[k] = sealed
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			sealed, err := walkSeal(s, redact, fmt.Sprintf("%s[%d]", path, i), e, kind, found)
			if err != nil {
				return nil, err
			}
			out[i] = sealed
		}
		return out, nil
	}
	if kind == 0 {
		return v, nil
	}
	return sealLeaf(s, kind, path, v, found)
}

func sealLeaf(s Sealer, kind byte, path string, v any, found func([]byte)) (*Sealed, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", path, err)
	}
	if found != nil {
		found(plain)
	}
	ct, err := s.Seal(kind, path, plain)
	clear(plain)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", path, err)
	}
	return &Sealed{Kind: kind, Purpose: path, Ciphertext: ct}, nil
}

// SealFields seals the named top-level fields of m (maskedFields) with the
// secrets key, each whole unless it holds sealed values (then leaf by
// leaf, around them), and every _secrets/_masked leaf (see SealKeys). Orkes
// replaces maskedFields values for good once a workflow is archived, as it
// does _secrets data, where _masked data survives: compaction destroys
// them with the secrets key.
func SealFields(s Sealer, redact *Redactor, path string, m map[string]any, fields []string, found func([]byte)) (map[string]any, error) {
	v, err := SealKeys(s, redact, path, m, found)
	if err != nil || v == nil {
		return nil, err
	}
	out, _ := v.(map[string]any)
	for _, f := range fields {
		if e, ok := out[f]; ok {
			if _, already := e.(*Sealed); already {
				continue
			}
			var sealed any
			var err error
			if HasSealed(e) {
				// Sealed whole, its JSON would read "***" for each value
				// sealed in it (a _secrets block's, a leaf the version
				// the workflow ran before sealed): gone for good. The
				// rest is sealed leaf by leaf around them instead.
				sealed, err = walkSeal(s, redact, path+"."+f, e, KindSecrets, found)
			} else {
				sealed, err = sealLeaf(s, KindSecrets, path+"."+f, e, found)
			}
			if err != nil {
				return nil, err
			}
			out[f] = sealed
		}
	}
	return out, nil
}

// SealTrees seals every leaf under the named top-level keys of m with the
// key of kind, each on its own, so that a path into one still finds its
// value (and out of m, not changed, into a copy). Leaves sealed already
// are kept as they are. Purposes name keys as SealKeys's do.
func SealTrees(s Sealer, kind byte, redact *Redactor, path string, m map[string]any, keys []string, found func([]byte)) (map[string]any, error) {
	if len(keys) == 0 {
		return m, nil
	}
	out := maps.Clone(m)
	names := KeyNames(redact, m)
	for _, k := range keys {
		e, ok := out[k]
		if !ok {
			continue
		}
		name, renamed := names[k]
		if !renamed {
			name = k
		}
		sealed, err := walkSeal(s, redact, path+"."+name, e, kind, found)
		if err != nil {
			return nil, err
		}
		out[k] = sealed
	}
	return out, nil
}

// Opener opens sealed values for a hand-off. A value whose key is gone (the
// workflow was compacted) opens as "***", Orkes's documented behaviour for
// restarted workflows.
type Opener func(kind byte, purpose string, ciphertext []byte) (plain []byte, err error)

// Open returns a copy of v with every sealed value replaced by its
// plaintext value, whose numbers read as conductor.Unmarshal reads them.
func Open(v any, open Opener) (any, error) {
	switch x := v.(type) {
	case *Sealed:
		plain, err := open(x.Kind, x.Purpose, x.Ciphertext)
		if err != nil {
			return nil, err
		}
		// An integer's text an int64, any other number a float64, as
		// everywhere else: read all as float64, a sealed 2 would be
		// written "2.0" in text (Java's Double for a double), and an
		// integer past 2^53 would change.
		var out any
		if err := conductor.UnmarshalNew(plain, &out); err != nil {
			return nil, fmt.Errorf("sealed value: %w", err)
		}
		clear(plain)
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			o, err := Open(e, open)
			if err != nil {
				return nil, err
			}
			out[k] = o
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			o, err := Open(e, open)
			if err != nil {
				return nil, err
			}
			out[i] = o
		}
		return out, nil
	}
	return v, nil
}

// HasSealed reports whether v holds a sealed value.
func HasSealed(v any) bool { return Find(v, func(*Sealed) bool { return true }) != nil }

// Holds reports whether v contains a value sealed with kind.
func Holds(v any, kind byte) bool {
	return Find(v, func(s *Sealed) bool { return s.Kind == kind }) != nil
}

// Find returns a sealed value in v that match accepts, or nil.
func Find(v any, match func(*Sealed) bool) *Sealed {
	switch x := v.(type) {
	case *Sealed:
		if match(x) {
			return x
		}
	case map[string]any:
		for _, e := range x {
			if s := Find(e, match); s != nil {
				return s
			}
		}
	case []any:
		for _, e := range x {
			if s := Find(e, match); s != nil {
				return s
			}
		}
	}
	return nil
}

// Shred returns v with sealed values of kind replaced by "***": what
// remains of them once their key is destroyed. v is not changed: the maps
// and slices that hold such a value are copied, the others are returned
// as they are. shredded reports whether anything was replaced.
func Shred(v any, kind byte) (out any, shredded bool) {
	switch x := v.(type) {
	case *Sealed:
		if x.Kind == kind {
			return Mask, true
		}
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			se, changed := Shred(e, kind)
			if !changed {
				continue
			}
			if out == nil {
				out = maps.Clone(x)
			}
			out[k] = se
		}
		if out != nil {
			return out, true
		}
	case []any:
		var out []any
		for i, e := range x {
			se, changed := Shred(e, kind)
			if !changed {
				continue
			}
			if out == nil {
				out = slices.Clone(x)
			}
			out[i] = se
		}
		if out != nil {
			return out, true
		}
	}
	return v, false
}

// SealInput seals what of a workflow's input m a run seals: the masked
// fields, and the keys its definition copies into _secrets and _masked
// blocks (secrets, masked), with purposes naming keys as names redacts
// them.
func SealInput(s Sealer, names *Redactor, where string, m map[string]any, fields, secrets, masked []string, found func([]byte)) (map[string]any, error) {
	out, err := SealFields(s, names, where, m, fields, found)
	if err == nil {
		out, err = SealTrees(s, KindSecrets, names, where, out, secrets, found)
	}
	if err == nil {
		out, err = SealTrees(s, KindMasked, names, where, out, masked, found)
	}
	return out, err
}

// DrySealer seals nothing: a pass with it only finds, through found, the
// values a real one would seal.
type DrySealer struct{}

func (DrySealer) Seal(byte, string, []byte) ([]byte, error) { return nil, nil }
func (DrySealer) Open(byte, string, []byte) ([]byte, error) { return nil, nil }
