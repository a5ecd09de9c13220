package engine

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// InputSecrecy names the keys of a workflow's input that its definition
// only ever copies into _secrets or _masked blocks (of a task's input, its
// definition's inputTemplate, or the workflow's output). Such a value is
// secret from the start, so it is sealed in the start's record instead of
// resting there in plaintext until the task that takes it runs.
//
// A key the definition reads anywhere else is left as given: the decider
// reads it for what it decides (a SWITCH's case, a sub-workflow's name, a
// WAIT's duration, a secret's name), which a sealed value would hide, and
// copies it where a sealed value would show as a reference. Such a value
// is masked in every view once a _secrets block holds it
// (workflow.values_masked), as are the values a DYNAMIC or
// FORK_JOIN_DYNAMIC task, or a registered task definition's inputTemplate,
// copies there: they are not in the definition.
type InputSecrecy struct {
	secrets, masked expr.Keys
	other           expr.Keys // read elsewhere
}

// Fields returns the keys of input to seal under the workflow's _secrets
// key and under its _masked key; a key in both is a secret.
func (s InputSecrecy) Fields(input map[string]any) (secrets, masked []string) {
	if s.other.All || len(input) == 0 || (!s.secrets.All && !s.masked.All && len(s.secrets.Names)+len(s.masked.Names) == 0) {
		return nil, nil
	}
	secrets = s.present(input, s.secrets, nil)
	masked = s.present(input, s.masked, secrets)
	return secrets, masked
}

// present returns the keys of input that keys names, but for those in
// except and those read elsewhere.
func (s InputSecrecy) present(input map[string]any, keys expr.Keys, except []string) []string {
	names := keys.Names
	if keys.All {
		names = slices.Sorted(maps.Keys(input))
	}
	var out []string
	for _, k := range names {
		if _, ok := input[k]; ok && !slices.Contains(except, k) && !slices.Contains(s.other.Names, k) &&
			!masking.IsMaskedKey(k) && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// sealedKeys returns the keys of input that the definition copies into a
// _secrets or _masked block, read elsewhere or not: their values are
// secret wherever the workflow puts them, however Fields seals them.
func (s InputSecrecy) sealedKeys(input map[string]any) []string {
	var out []string
	for k := range input {
		if s.secrets.All || s.masked.All || slices.Contains(s.secrets.Names, k) || slices.Contains(s.masked.Names, k) {
			out = append(out, k)
		}
	}
	return out
}

// SecretInput returns the InputSecrecy of the definition def holds (its
// JSON).
func SecretInput(def []byte) (InputSecrecy, error) {
	p, err := plans.get(def)
	if err != nil {
		return InputSecrecy{}, err
	}
	return p.secrecy, nil
}

// secrecyOf reads every string of the definition's JSON: what it copies
// into _secrets and _masked blocks where the decider evaluates templates,
// and what it reads anywhere else, an inline sub-workflow's definition
// included (whose workflow.input is the child's, read here as if it were
// this one's: more is left unsealed, never less).
func secrecyOf(raw []byte) InputSecrecy {
	var doc any
	if json.Unmarshal(raw, &doc) != nil {
		return InputSecrecy{other: expr.Keys{All: true}}
	}
	var s InputSecrecy
	s.walk(doc, walkAt{})
	slices.Sort(s.secrets.Names)
	slices.Sort(s.masked.Names)
	slices.Sort(s.other.Names)
	s.secrets.Names, s.masked.Names, s.other.Names = slices.Compact(s.secrets.Names), slices.Compact(s.masked.Names), slices.Compact(s.other.Names)
	return s
}

// walkAt is where in the definition a value sits.
type walkAt struct {
	template bool // under inputParameters, inputTemplate or outputParameters
	inline   bool // under an inline definition of another workflow
	kind     byte // under a _secrets or _masked key of a template
	name     bool // UPDATE_SECRET's _secrets.secretKey: a name, read elsewhere
}

func (s *InputSecrecy) walk(v any, at walkAt) {
	switch x := v.(type) {
	case map[string]any:
		updateSecret := x["type"] == conductor.TaskTypeUpdateSecret
		for k, e := range x {
			in := at
			switch {
			case k == "workflowDefinition" || k == "workflowDef":
				in = walkAt{inline: true}
			case k == "inputParameters" || k == "inputTemplate" || k == "outputParameters":
				in.template = true
			case in.template && k == masking.KeySecrets:
				in.kind = masking.KindSecrets
			case in.template && k == masking.KeyMasked && in.kind == 0:
				in.kind = masking.KindMasked
			}
			if params, ok := e.(map[string]any); ok && updateSecret && k == "inputParameters" {
				if block, ok := params[masking.KeySecrets].(map[string]any); ok {
					s.walk(block["secretKey"], walkAt{name: true})
					e = withoutSecretKey(params, block)
				}
			}
			s.walk(e, in)
		}
	case []any:
		for _, e := range x {
			s.walk(e, at)
		}
	case string:
		copied, named := expr.Reads(x, "workflow", "input")
		s.other.Add(named)
		switch {
		case at.inline || at.name || at.kind == 0:
			s.other.Add(copied)
		case at.kind == masking.KindSecrets:
			s.secrets.Add(copied)
		default:
			s.masked.Add(copied)
		}
	}
}

// withoutSecretKey is UPDATE_SECRET's inputParameters without the
// secretKey of its _secrets block.
func withoutSecretKey(in, block map[string]any) map[string]any {
	out := maps.Clone(in)
	b := maps.Clone(block)
	delete(b, "secretKey")
	out[masking.KeySecrets] = b
	return out
}
