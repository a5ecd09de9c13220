package engine_test

import (
	"slices"
	"testing"

	"github.com/flowvault/flowvault/engine"
)

func TestSecretInput(t *testing.T) {
	t.Parallel()
	input := map[string]any{"a": 1, "b": 2, "c": 3, "_secrets": map[string]any{"x": "y"}}
	for _, tc := range []struct {
		name            string
		def             string
		secrets, masked []string
	}{
		{name: "none", def: `{"name":"n","tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"a":"${workflow.input.a}"}}]}`},
		{
			name:    "a task's _secrets block, at any depth, in any branch",
			def:     `{"name":"n","tasks":[{"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[[{"name":"t","taskReferenceName":"t","inputParameters":{"h":{"_secrets":["x-${workflow.input.a}"]}}}]]},{"name":"j","taskReferenceName":"j","type":"JOIN"}]}`,
			secrets: []string{"a"},
		},
		{
			name:    "the workflow's output; _secrets inside _masked",
			def:     `{"name":"n","tasks":[],"outputParameters":{"_masked":{"m":"${workflow.input.b}","_secrets":{"s":"${workflow.input.a}"}}}}`,
			secrets: []string{"a"}, masked: []string{"b"},
		},
		{
			name:    "all of it into _masked, a key also in _secrets stays a secret",
			def:     `{"name":"n","tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"_masked":"${workflow.input}","_secrets":"${workflow.input.c}"}}]}`,
			secrets: []string{"c"}, masked: []string{"a", "b"},
		},
		{
			name:    "all of it into _secrets",
			def:     `{"name":"n","tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"_secrets":{"k":"${workflow.input.${t0.output.k}}"}}}]}`,
			secrets: []string{"a", "b", "c"},
		},
		{
			name:    "UPDATE_SECRET's secretKey is a name",
			def:     `{"name":"n","tasks":[{"name":"u","taskReferenceName":"u","type":"UPDATE_SECRET","inputParameters":{"_secrets":{"secretKey":"${workflow.input.a}","secretValue":"${workflow.input.b}"}}}]}`,
			secrets: []string{"b"},
		},
		// A key the definition reads anywhere but to copy it into a
		// block is left as given: the decider reads it.
		{
			name:    "read by a SWITCH too",
			def:     `{"name":"n","tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"_secrets":{"k":"${workflow.input.a}","l":"${workflow.input.b}"}}},{"name":"s","taskReferenceName":"s","type":"SWITCH","expression":"m","inputParameters":{"m":"${workflow.input.a}"},"decisionCases":{"x":[]}}]}`,
			secrets: []string{"b"},
		},
		{
			name:    "embedded in the output's text",
			def:     `{"name":"n","tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"_secrets":{"k":"${workflow.input.a}","l":"${workflow.input.b}"}}}],"outputParameters":{"t":"x ${workflow.input.a} y"}}`,
			secrets: []string{"b"},
		},
		{
			name:    "a secret's name, inside the block too",
			def:     `{"name":"n","tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"_secrets":{"all":"${workflow.input}","db":"${workflow.secrets.${workflow.input.c}}"}}}]}`,
			secrets: []string{"a", "b"},
		},
		{
			name: "a sub-workflow's name, an EVENT's sink, a WAIT's duration",
			def:  `{"name":"n","tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"_secrets":"${workflow.input}"}},{"name":"c","taskReferenceName":"c","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"${workflow.input.a}"}},{"name":"e","taskReferenceName":"e","type":"EVENT","sink":"nats:o.${workflow.input.b}"},{"name":"w","taskReferenceName":"w","type":"WAIT","inputParameters":{"duration":"${workflow.input.c}"}}]}`,
		},
		{
			name:    "an inline task definition's inputTemplate",
			def:     `{"name":"n","tasks":[{"name":"t","taskReferenceName":"t","taskDefinition":{"name":"t","inputTemplate":{"_secrets":{"k":"${workflow.input.a}"}}}}]}`,
			secrets: []string{"a"},
		},
		{
			name: "the whole input read elsewhere",
			def:  `{"name":"n","tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"_secrets":{"k":"${workflow.input.a}"},"all":"${workflow.input}"}}]}`,
		},
		{
			name:    "an inline child's definition: its input, not this one's",
			def:     `{"name":"n","tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"_secrets":{"k":"${workflow.input.a}","l":"${workflow.input.b}"}}},{"name":"c","taskReferenceName":"c","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid","workflowDefinition":{"name":"kid","tasks":[{"name":"k","taskReferenceName":"k","inputParameters":{"_secrets":{"c":"${workflow.input.c}"},"a":"${workflow.input.a}"}}]}}}]}`,
			secrets: []string{"b"},
		},
		{
			name:    "a key the input lacks",
			def:     `{"name":"n","tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"_secrets":{"k":"${workflow.input.missing}","l":"${workflow.input.a}"}}}]}`,
			secrets: []string{"a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := engine.SecretInput([]byte(tc.def))
			if err != nil {
				t.Fatal(err)
			}
			secrets, masked := s.Fields(input)
			if !slices.Equal(secrets, tc.secrets) || !slices.Equal(masked, tc.masked) {
				t.Fatalf("Fields = %q, %q; want %q, %q", secrets, masked, tc.secrets, tc.masked)
			}
		})
	}
	if _, err := engine.SecretInput([]byte(`{"name":`)); err == nil {
		t.Fatal("a definition that does not parse gave no error")
	}
}
