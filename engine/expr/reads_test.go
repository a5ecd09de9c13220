package expr

import (
	"slices"
	"testing"
)

func TestReads(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s     string
		keys  []string
		all   bool
		named []string
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
		{s: "${t.output.${workflow.input.k}}", named: []string{"k"}},
		{s: "${workflow.secrets.${workflow.input.name}}", named: []string{"name"}},
		{s: "${workflow.input.${workflow.input.which}}", all: true, named: []string{"which"}},
		{s: "${workflow.secrets.${x.${workflow.input.deep}}}", named: []string{"deep"}},
		{s: "${workflow.env.x}"},
		{s: "$${workflow.input.a}"},
		{s: "${workflow.input[0]}"},
		{s: "${workflow.input.a"},
	} {
		copied, named := Reads(tc.s, "workflow", "input")
		if copied.All != tc.all || !slices.Equal(copied.Names, tc.keys) || named.All || !slices.Equal(named.Names, tc.named) {
			t.Errorf("Reads(%q) = %+v, %+v; want copied %q (all %v), named %q", tc.s, copied, named, tc.keys, tc.all, tc.named)
		}
	}
}
