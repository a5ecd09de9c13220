package secrets

import (
	"fmt"
	"unicode/utf8"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/taglimit"
	"github.com/flowvault/flowvault/internal/valuename"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Limits of names, values and tags.
const (
	// MaxNameLen bounds a secret or environment value name, in bytes.
	MaxNameLen = valuename.MaxLen
	// MaxValueLen bounds a value, in bytes (Orkes: 65,535 characters).
	MaxValueLen = 65535
	// MaxTags bounds the tags of one secret or environment value, and
	// MaxTagLen a tag's key and its value, in bytes: the limits every
	// holder of tags keeps to (see taglimit).
	MaxTags   = taglimit.Max
	MaxTagLen = taglimit.MaxLen
)

// NameRule is the rule every name must follow, as error messages state it.
const NameRule = valuename.Rule

// reservedNames are secret names that GET routes of the REST API shadow
// (GET /api/secrets/v2 lists secrets, it does not read a secret "v2").
var reservedNames = map[string]string{
	"v2":              "GET /api/secrets/v2",
	"clearLocalCache": "GET /api/secrets/clearLocalCache",
	"clearRedisCache": "GET /api/secrets/clearRedisCache",
}

// CheckSecretName reports whether name can name a secret. The error wraps
// fault.ErrInvalid and states the rule.
func CheckSecretName(name string) error {
	if err := valuename.Check("secret", name); err != nil {
		return err
	}
	if route, ok := reservedNames[name]; ok {
		return fault.Invalid("secret name %q is reserved: %s is a route of the secrets API", name, route)
	}
	return nil
}

// CheckEnvName reports whether name can name an environment value.
func CheckEnvName(name string) error { return valuename.Check("environment variable", name) }

// CheckValue reports whether v can be stored as a secret or environment
// value: at most MaxValueLen bytes of UTF-8 text (JSON is text). Errors
// state the limit and never quote the value.
func CheckValue(kind string, v []byte) error {
	if len(v) > MaxValueLen {
		return fmt.Errorf("%s value is %d bytes; the limit is %d bytes: %w", kind, len(v), MaxValueLen, fault.ErrTooLarge)
	}
	if !utf8.Valid(v) {
		return fault.Invalid("%s value is not UTF-8 text: a value must be text or JSON (encode binary data, e.g. as base64)", kind)
	}
	return nil
}

// checkTags validates tags from a request (see taglimit.Check) and
// converts them.
func checkTags(tags []conductor.Tag) ([]schemas.SecretTag, error) {
	ve := &fault.ValidationError{}
	checked := taglimit.Check(ve, "", tags)
	out := make([]schemas.SecretTag, len(checked))
	for i, t := range checked {
		out[i] = schemas.SecretTag{Key: t.Key, Value: t.Value}
	}
	return out, ve.Err()
}

// givenTags is the tags of a tag change: an addition's checked
// (checkTags), a removal's as sent (taglimit.Removal), so that a tag
// stored before the limits may still be removed by naming it.
func givenTags(tags []conductor.Tag, removal bool) ([]schemas.SecretTag, error) {
	if !removal {
		return checkTags(tags)
	}
	given := taglimit.Removal(tags)
	out := make([]schemas.SecretTag, len(given))
	for i, t := range given {
		out[i] = schemas.SecretTag{Key: t.Key, Value: t.Value}
	}
	return out, nil
}

// upsertTags adds given to cur; a tag whose key cur has replaces its value
// (Orkes: "If a tag with the same key already exists, this operation will
// update its value"). Order is first insertion.
func upsertTags(cur, given []schemas.SecretTag) []schemas.SecretTag {
	next := append([]schemas.SecretTag(nil), cur...)
outer:
	for _, g := range given {
		for i := range next {
			if next[i].Key == g.Key {
				next[i].Value = g.Value
				continue outer
			}
		}
		next = append(next, g)
	}
	return next
}

// removeTags removes from cur the tags that match one of given by key and
// value.
func removeTags(cur, given []schemas.SecretTag) []schemas.SecretTag {
	var next []schemas.SecretTag
	for _, t := range cur {
		drop := false
		for _, g := range given {
			if g == t {
				drop = true
				break
			}
		}
		if !drop {
			next = append(next, t)
		}
	}
	return next
}

func tagsEqual(a, b []schemas.SecretTag) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func toConductorTags(tags []schemas.SecretTag) []conductor.Tag {
	out := make([]conductor.Tag, len(tags))
	for i, t := range tags {
		out[i] = conductor.Tag{Key: t.Key, Value: t.Value}
	}
	return out
}
