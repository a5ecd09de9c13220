package engine

import (
	"maps"
	"slices"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// InputSecrecy names the keys of a workflow's input that its definition
// copies into a _secrets or _masked block: a task's input, or the
// workflow's output. Such a value is secret from the start, so it is
// sealed in the start's record instead of resting there in plaintext
// until the task that takes it runs.
type InputSecrecy struct {
	secrets, masked       []string
	allSecrets, allMasked bool
}

// Fields returns the keys of input to seal under the workflow's _secrets
// key and under its _masked key; a key in both is a secret.
func (s InputSecrecy) Fields(input map[string]any) (secrets, masked []string) {
	if s.allSecrets {
		return present(input, slices.Sorted(maps.Keys(input)), nil), nil
	}
	secrets = present(input, s.secrets, nil)
	if s.allMasked {
		masked = present(input, slices.Sorted(maps.Keys(input)), secrets)
	} else {
		masked = present(input, s.masked, secrets)
	}
	return secrets, masked
}

func present(input map[string]any, keys, except []string) []string {
	var out []string
	for _, k := range keys {
		if _, ok := input[k]; ok && !slices.Contains(except, k) && !masking.IsMaskedKey(k) {
			out = append(out, k)
		}
	}
	return out
}

// SecretInput returns the InputSecrecy of the definition def holds (its
// JSON). Tasks a workflow decides at run time (DYNAMIC, FORK_JOIN_DYNAMIC)
// are not in it: a value they copy into _secrets is masked in every read
// once they have (workflow.values_masked), as is a value that reaches a
// _secrets block through another task's output.
func SecretInput(def []byte) (InputSecrecy, error) {
	p, err := plans.get(def)
	if err != nil {
		return InputSecrecy{}, err
	}
	return p.secrecy, nil
}

func secrecyOf(p *plan) InputSecrecy {
	var s InputSecrecy
	for _, n := range p.nodes {
		in := n.wt.InputParameters
		if n.wt.TaskType() == conductor.TaskTypeUpdateSecret {
			// Its _secrets.secretKey is a name, which its task refuses to
			// take from secret data.
			if block, ok := in[masking.KeySecrets].(map[string]any); ok {
				in = maps.Clone(in)
				in[masking.KeySecrets] = withoutKey(block, "secretKey")
			}
		}
		s.add(in, 0)
	}
	s.add(p.def.OutputParameters, 0)
	slices.Sort(s.secrets)
	slices.Sort(s.masked)
	s.secrets, s.masked = slices.Compact(s.secrets), slices.Compact(s.masked)
	return s
}

func withoutKey(m map[string]any, key string) map[string]any {
	out := maps.Clone(m)
	delete(out, key)
	return out
}

// add records the input keys v's strings copy into a block of kind (0
// outside any).
func (s *InputSecrecy) add(v any, kind byte) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			// As masking.SealKeys seals: _secrets inside _masked is a
			// secret.
			inner := kind
			switch {
			case k == masking.KeySecrets:
				inner = masking.KindSecrets
			case k == masking.KeyMasked && kind == 0:
				inner = masking.KindMasked
			}
			s.add(e, inner)
		}
	case []any:
		for _, e := range x {
			s.add(e, kind)
		}
	case string:
		if kind == 0 {
			return
		}
		keys, all := expr.FieldKeys(x, "workflow", "input")
		if kind == masking.KindSecrets {
			s.secrets, s.allSecrets = append(s.secrets, keys...), s.allSecrets || all
		} else {
			s.masked, s.allMasked = append(s.masked, keys...), s.allMasked || all
		}
	}
}
