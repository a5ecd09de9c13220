// Package schemacheck holds payloads to the JSON Schemas that workflow
// and task definitions enforce: Orkes's inputSchema and outputSchema with
// enforceSchema. A payload may hold secrets (a task's input at hand-off
// carries resolved values, a worker's output what it sealed), so what a
// failure says names where and which rule of the schema, never a value:
// not the value that failed, nor its length, nor what it was compared to
// when that is the value's own (a minimum is the schema's; a length is
// the value's).
package schemacheck

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Schemas finds a registered schema: the latest version when version is
// nil.
type Schemas interface {
	Schema(ctx context.Context, name string, version *int) (*conductor.SchemaDef, error)
}

// Checker checks payloads against schemas, compiling each once.
type Checker struct {
	schemas Schemas
	mu      sync.Mutex
	// compiled holds schemas by a hash of their type and data: a schema
	// saved again with other data is compiled again.
	compiled map[[sha256.Size]byte]*jsonschema.Schema
}

// maxCompiled bounds the compiled schemas kept; the cache starts over
// when full.
const maxCompiled = 512

// maxFailures bounds the failures a message lists.
const maxFailures = 5

// New returns a checker that finds the schemas definitions name in
// schemas.
func New(schemas Schemas) *Checker {
	return &Checker{schemas: schemas, compiled: map[[sha256.Size]byte]*jsonschema.Schema{}}
}

// Check holds payload to the schema ref names: ref's own data when it
// has some (a definition may carry its schema inline), else the
// registered schema of its name and version (the latest when 0). A
// payload that does not conform is fault.ErrInvalid, whose message lists
// where and which rules failed; so is a schema that cannot be found or
// compiled.
func (c *Checker) Check(ctx context.Context, ref *conductor.SchemaDef, payload map[string]any) error {
	def := ref
	if !HasData(ref) {
		var version *int
		if ref.Version > 0 {
			version = &ref.Version
		}
		var err error
		if def, err = c.schemas.Schema(ctx, ref.Name, version); err != nil {
			if errors.Is(err, fault.ErrNotFound) {
				return fault.Invalid("cannot be checked: %v", err)
			}
			return err
		}
	}
	sch, err := c.compile(def)
	if err != nil {
		return err
	}
	err = sch.Validate(document(payload))
	var ve *jsonschema.ValidationError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &ve):
		// A value of a Go type JSON has none of: refused, or the decision
		// that asked would be tried again for ever.
		return fault.Invalid("cannot be checked against schema %s: %v", describe(def), err)
	}
	return fault.Invalid("does not conform to schema %s: %s", describe(def), strings.Join(failures(ve), "; "))
}

// document is payload as a schema sees it: a value sealed in it (a
// workflow's output copies what its tasks sealed, a child's input what its
// parent did) reads as every reader sees it, "***".
func document(payload map[string]any) any {
	if payload == nil {
		return map[string]any{}
	}
	if !masking.HasSealed(payload) {
		return payload
	}
	doc, _ := masking.Shred(payload, masking.KindSecrets)
	doc, _ = masking.Shred(doc, masking.KindMasked)
	return doc
}

func (c *Checker) compile(def *conductor.SchemaDef) (*jsonschema.Schema, error) {
	h := sha256.New()
	h.Write([]byte(def.Type))
	h.Write([]byte{0})
	h.Write(def.Data)
	var key [sha256.Size]byte
	h.Sum(key[:0])
	c.mu.Lock()
	sch := c.compiled[key]
	c.mu.Unlock()
	if sch != nil {
		return sch, nil
	}
	sch, err := Compile(def)
	if err != nil {
		return nil, fault.Invalid("cannot be checked: schema %s: %v", describe(def), err)
	}
	c.mu.Lock()
	if len(c.compiled) >= maxCompiled {
		clear(c.compiled)
	}
	c.compiled[key] = sch
	c.mu.Unlock()
	return sch, nil
}

// Compile compiles def's data, a JSON Schema (draft 2020-12 unless its
// $schema says otherwise). Nothing outside it is loaded: a $ref to a
// file or a URL fails, as a schema must not read the server's files or
// reach the network.
func Compile(def *conductor.SchemaDef) (*jsonschema.Schema, error) {
	if def.Type != "" && def.Type != conductor.SchemaTypeJSON {
		return nil, fmt.Errorf("type %s: only JSON schemas are supported", def.Type)
	}
	if !HasData(def) {
		return nil, errors.New("data: a JSON Schema is required")
	}
	data := bytes.TrimSpace(def.Data)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("data: %v", err)
	}
	switch doc.(type) {
	case map[string]any, bool:
	default:
		return nil, errors.New("data: a JSON Schema is an object or a boolean")
	}
	comp := jsonschema.NewCompiler()
	comp.UseLoader(noLoader{})
	comp.DefaultDraft(jsonschema.Draft2020)
	const url = "urn:flowvault:schema"
	if err := comp.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("data: %v", err)
	}
	sch, err := comp.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("data: %v", err)
	}
	return sch, nil
}

// HasData reports whether def carries a schema document: data that is
// neither absent nor null.
func HasData(def *conductor.SchemaDef) bool {
	data := bytes.TrimSpace(def.Data)
	return len(data) > 0 && string(data) != "null"
}

// noLoader refuses every schema the compiler would load from outside.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s: schemas are not loaded from files or URLs", url)
}

func describe(def *conductor.SchemaDef) string {
	if def.Version > 0 {
		return fmt.Sprintf("%s version %d", def.Name, def.Version)
	}
	return def.Name
}

// failures lists the leaves of a validation error, at most maxFailures.
func failures(ve *jsonschema.ValidationError) []string {
	var out []string
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			out = append(out, "at "+pointer(e.InstanceLocation)+": "+rule(e.ErrorKind))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	if len(out) > maxFailures {
		out = append(out[:maxFailures], fmt.Sprintf("and %d more", len(out)-maxFailures))
	}
	return out
}

// pointer writes an instance location as a JSON Pointer. Its tokens are
// keys and indexes, not values.
func pointer(loc []string) string {
	if len(loc) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, t := range loc {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// rule says which rule a value broke, with what the schema asked for
// where that is the schema's, never what the value was.
func rule(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case *kind.Required:
		return "missing " + quoteAll(k.Missing)
	case *kind.DependentRequired:
		return fmt.Sprintf("%q needs %s", k.Prop, quoteAll(k.Missing))
	case *kind.Type:
		return fmt.Sprintf("got %s, want %s", k.Got, strings.Join(k.Want, " or "))
	case *kind.AdditionalProperties:
		return "properties not allowed: " + quoteAll(k.Properties)
	case *kind.Enum:
		return "not one of the allowed values"
	case *kind.Const:
		return "not the required value"
	case *kind.Pattern:
		return fmt.Sprintf("does not match pattern %q", k.Want)
	case *kind.Format:
		return "not a valid " + k.Want
	case *kind.MinLength:
		return fmt.Sprintf("shorter than %d characters", k.Want)
	case *kind.MaxLength:
		return fmt.Sprintf("longer than %d characters", k.Want)
	case *kind.MinItems:
		return fmt.Sprintf("fewer than %d items", k.Want)
	case *kind.MaxItems:
		return fmt.Sprintf("more than %d items", k.Want)
	case *kind.Minimum:
		return "less than the minimum " + num(k.Want)
	case *kind.Maximum:
		return "more than the maximum " + num(k.Want)
	case *kind.ExclusiveMinimum:
		return "not more than " + num(k.Want)
	case *kind.ExclusiveMaximum:
		return "not less than " + num(k.Want)
	case *kind.MultipleOf:
		return "not a multiple of " + num(k.Want)
	case *kind.FalseSchema:
		return "not allowed"
	case *kind.Not:
		return "matches a schema it must not"
	case *kind.InvalidJsonValue:
		return "not a JSON value"
	}
	if path := k.KeywordPath(); len(path) > 0 {
		return "fails " + strings.Join(path, "/")
	}
	return "fails " + strings.TrimPrefix(fmt.Sprintf("%T", k), "*kind.")
}

func num(r *big.Rat) string {
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
