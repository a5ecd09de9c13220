package schemacheck

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// registered is the schemas a test registers, by name and version.
type registered map[string][]*conductor.SchemaDef

func (r registered) Schema(_ context.Context, name string, version *int) (*conductor.SchemaDef, error) {
	vs := r[name]
	if version == nil {
		if len(vs) == 0 {
			return nil, fault.NotFound("schema %s not found", name)
		}
		return vs[len(vs)-1], nil
	}
	for _, d := range vs {
		if d.Version == *version {
			return d, nil
		}
	}
	return nil, fault.NotFound("schema %s version %d not found", name, *version)
}

func inline(data string) *conductor.SchemaDef {
	return &conductor.SchemaDef{Name: "inline", Type: conductor.SchemaTypeJSON, Data: []byte(data)}
}

// A payload that breaks a rule is refused with where and which rule,
// and never with the value: each case plants a fresh secret where the
// rule looks.
func TestCheckNamesTheRuleNotTheValue(t *testing.T) {
	secret := "s3cr3t-" + randomHex(t)
	for _, tc := range []struct {
		name    string
		schema  string
		payload map[string]any
		want    string
	}{
		{"required", `{"type":"object","required":["id","token"]}`, map[string]any{"token": secret}, `at /: missing "id"`},
		{"type", `{"properties":{"count":{"type":"integer"}}}`, map[string]any{"count": secret}, "at /count: got string, want integer"},
		{"pattern", `{"properties":{"token":{"pattern":"^Bearer "}}}`, map[string]any{"token": secret}, `at /token: does not match pattern "^Bearer "`},
		{"enum", `{"properties":{"tier":{"enum":["gold","silver"]}}}`, map[string]any{"tier": secret}, "at /tier: not one of the allowed values"},
		{"const", `{"properties":{"tier":{"const":"gold"}}}`, map[string]any{"tier": secret}, "at /tier: not the required value"},
		{"min length", `{"properties":{"pin":{"minLength":64}}}`, map[string]any{"pin": secret}, "at /pin: shorter than 64 characters"},
		{"max length", `{"properties":{"pin":{"maxLength":4}}}`, map[string]any{"pin": secret}, "at /pin: longer than 4 characters"},
		{"format", `{"properties":{"mail":{"format":"email"}}}`, map[string]any{"mail": secret}, ""},
		{"minimum", `{"properties":{"n":{"minimum":10}}}`, map[string]any{"n": 3}, "at /n: less than the minimum 10"},
		{"additional", `{"additionalProperties":false,"properties":{"a":{}}}`, map[string]any{"b": secret}, `at /: properties not allowed: "b"`},
		{"nested", `{"properties":{"auth":{"properties":{"keys":{"items":{"type":"number"}}}}}}`,
			map[string]any{"auth": map[string]any{"keys": []any{1, secret}}}, "at /auth/keys/1: got string, want number"},
		{"not", `{"properties":{"token":{"not":{"type":"string"}}}}`, map[string]any{"token": secret}, "at /token: matches a schema it must not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := New(registered{}).Check(context.Background(), inline(tc.schema), tc.payload)
			if tc.want == "" { // formats are annotations unless asserted
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, fault.ErrInvalid) {
				t.Fatalf("got %v, want fault.ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("message %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[7:]) {
				t.Fatalf("message quotes the value: %q", err)
			}
		})
	}
}

func TestCheckConformingPayload(t *testing.T) {
	c := New(registered{})
	schema := inline(`{"type":"object","required":["id"],"properties":{"id":{"type":"integer","minimum":1},"tags":{"type":"array","items":{"type":"string"}}}}`)
	for _, payload := range []map[string]any{
		{"id": 7},
		{"id": int64(7), "tags": []any{"a"}},
		{"id": 7.0},
	} {
		if err := c.Check(context.Background(), schema, payload); err != nil {
			t.Errorf("%v refused: %v", payload, err)
		}
	}
	if err := c.Check(context.Background(), schema, nil); !errors.Is(err, fault.ErrInvalid) {
		t.Errorf("an absent payload is checked as {}: %v", err)
	}
}

// Sealed values read as "***", as every reader sees them: a workflow's
// output copies what its tasks sealed. A value of a type JSON has not
// does not conform.
func TestCheckSealedAndForeignValues(t *testing.T) {
	c := New(registered{})
	schema := inline(`{"properties":{"_secrets":{"properties":{"token":{"const":"***"}}},"pin":{"type":"string"}}}`)
	payload := map[string]any{"_secrets": map[string]any{"token": &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/x", Ciphertext: []byte{1, 2}}},
		"pin": &masking.Sealed{Kind: masking.KindMasked, Purpose: "wf/x", Ciphertext: []byte{3}}}
	if err := c.Check(context.Background(), schema, payload); err != nil {
		t.Fatalf("sealed values: %v", err)
	}
	if _, sealed := payload["pin"].(*masking.Sealed); !sealed {
		t.Fatal("the check changed the payload")
	}
	err := c.Check(context.Background(), schema, map[string]any{"pin": struct{ X int }{1}})
	if !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), "at /pin: not a JSON value") {
		t.Fatalf("a value of no JSON type: %v", err)
	}
}

// A definition names a registered schema by name and version, or by name
// alone for the latest version.
func TestCheckRegisteredSchema(t *testing.T) {
	reg := registered{"order": {
		{Name: "order", Version: 1, Type: "JSON", Data: []byte(`{"required":["id"]}`)},
		{Name: "order", Version: 2, Type: "JSON", Data: []byte(`{"required":["id","amount"]}`)},
	}}
	c := New(reg)
	ctx := context.Background()
	payload := map[string]any{"id": "o-1"}
	if err := c.Check(ctx, &conductor.SchemaDef{Name: "order", Version: 1}, payload); err != nil {
		t.Fatalf("version 1: %v", err)
	}
	err := c.Check(ctx, &conductor.SchemaDef{Name: "order"}, payload)
	if !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), `schema order version 2: at /: missing "amount"`) {
		t.Fatalf("latest version: %v", err)
	}
	if err := c.Check(ctx, &conductor.SchemaDef{Name: "order", Version: 1, Data: []byte(" null ")}, payload); err != nil {
		t.Fatalf("null data names the registered schema: %v", err)
	}
	err = c.Check(ctx, &conductor.SchemaDef{Name: "missing", Version: 3}, payload)
	if !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), "missing version 3 not found") {
		t.Fatalf("unknown schema: %v", err)
	}
}

// A schema is compiled from its own data alone: nothing is read from the
// server's files or the network.
func TestCompileRefusesWhatItCannotEnforce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "leak.json")
	if err := os.WriteFile(file, []byte(`{"type":"string"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		def  *conductor.SchemaDef
		want string
	}{
		{"avro", &conductor.SchemaDef{Name: "a", Type: "AVRO", Data: []byte(`{}`)}, "only JSON schemas"},
		{"no data", &conductor.SchemaDef{Name: "a", Type: "JSON"}, "a JSON Schema is required"},
		{"null data", &conductor.SchemaDef{Name: "a", Type: "JSON", Data: []byte("null")}, "a JSON Schema is required"},
		{"not JSON", &conductor.SchemaDef{Name: "a", Data: []byte(`{"type":`)}, "data:"},
		{"not a schema", &conductor.SchemaDef{Name: "a", Data: []byte(`[1]`)}, "an object or a boolean"},
		{"bad keyword", &conductor.SchemaDef{Name: "a", Data: []byte(`{"type":"strung"}`)}, "data:"},
		{"file ref", &conductor.SchemaDef{Name: "a", Data: []byte(`{"$ref":"file://` + file + `"}`)}, "not loaded from files or URLs"},
		{"url ref", &conductor.SchemaDef{Name: "a", Data: []byte(`{"$ref":"http://127.0.0.1:1/s.json"}`)}, "not loaded from files or URLs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.def)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := Compile(&conductor.SchemaDef{Name: "a", Data: []byte(`{"$defs":{"id":{"type":"integer"}},"properties":{"id":{"$ref":"#/$defs/id"}}}`)}); err != nil {
		t.Fatalf("a local $ref: %v", err)
	}
}

func TestFailuresAreBounded(t *testing.T) {
	schema := inline(`{"additionalProperties":{"type":"integer"}}`)
	payload := map[string]any{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		payload[k] = "x"
	}
	err := New(registered{}).Check(context.Background(), schema, payload)
	if err == nil || !strings.HasSuffix(err.Error(), "and 2 more") || strings.Count(err.Error(), "got string") != maxFailures {
		t.Fatalf("got %v", err)
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
