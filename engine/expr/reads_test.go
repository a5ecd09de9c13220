package expr

import (
	"slices"
	"testing"
)

func TestFieldKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    string
		keys []string
		all  bool
	}{
		{s: "plain text"},
		{s: "${workflow.input.a}", keys: []string{"a"}},
		{s: "${workflow.input.a.b[0]}", keys: []string{"a"}},
		{s: " ${ workflow.input.a } and ${workflow.input['b']}", keys: []string{"a", "b"}},
		{s: `${$.workflow.input["c","d"]}`, keys: []string{"c", "d"}},
		{s: "${workflow.input}", all: true},
		{s: "${workflow}", all: true},
		{s: "${workflow.input.*}", all: true},
		{s: "${workflow..token}", all: true},
		{s: "${workflow.*.token}", all: true},
		{s: "${workflow.input..token}", all: true},
		{s: "${workflow.input.${t.output.k}}", all: true},
		{s: "${${t.output.path}}", all: true},
		// What is not the workflow's input, or is not copied.
		{s: "${workflow.output.a}"},
		{s: "${workflow.variables.a}"},
		{s: "${t.output.input.a}"},
		{s: "${t.output.${workflow.input.k}}"},
		{s: "${workflow.secrets.${workflow.input.name}}"},
		{s: "${workflow.env.x}"},
		{s: "$${workflow.input.a}"},
		{s: "${workflow.input[0]}"},
		{s: "${workflow.input.a"},
	} {
		keys, all := FieldKeys(tc.s, "workflow", "input")
		if all != tc.all || !slices.Equal(keys, tc.keys) {
			t.Errorf("FieldKeys(%q) = %q, %v; want %q, %v", tc.s, keys, all, tc.keys, tc.all)
		}
	}
}
