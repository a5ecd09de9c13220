package metadata

import "testing"

func TestMergeObject(t *testing.T) {
	t.Parallel()
	set := []field{intField("version", 2), stringField("createdBy", "a<b")}
	tests := []struct {
		name, in, want string
	}{
		{"appends absent keys in order", `{"name":"x"}`, `{"name":"x","version":2,"createdBy":"a<b"}`},
		{"replaces in place", `{"version":7,"name":"x","createdBy":"m"}`, `{"version":2,"name":"x","createdBy":"a<b"}`},
		{"keeps values byte for byte", `{ "n" : 9007199254740993, "x": {"a": [1, 2.50, "s"]}, "e": "\u003c>&" }`,
			`{"n":9007199254740993,"x":{"a": [1, 2.50, "s"]},"e":"\u003c>&","version":2,"createdBy":"a<b"}`},
		{"drops keys", `{"tags":[{"key":"k"}],"name":"x","overwriteTags":true}`, `{"name":"x","version":2,"createdBy":"a<b"}`},
		{"last duplicate wins at the first position", `{"a":1,"b":2,"a":3}`, `{"a":3,"b":2,"version":2,"createdBy":"a<b"}`},
		{"empty object", `{}`, `{"version":2,"createdBy":"a<b"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mergeObject([]byte(tt.in), set, "tags", "overwriteTags")
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestMergeObjectRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `null`, `[]`, `"s"`, `{"a":1`, `{"a":1}{}`, `{"a":1} x`, `{"a":}`} {
		if got, err := mergeObject([]byte(in), nil); err == nil {
			t.Errorf("mergeObject(%q) = %s, want an error", in, got)
		}
	}
}

func TestWorkflowKeyOrder(t *testing.T) {
	t.Parallel()
	// Keys sort by name, then numerically by version; a name that extends
	// another sorts after all of the shorter name's versions.
	keys := [][]byte{workflowKey("a", 1), workflowKey("a", 2), workflowKey("a", 300), workflowKey("a-b", 1), workflowKey("ab", 1)}
	for i := 1; i < len(keys); i++ {
		if string(keys[i-1]) >= string(keys[i]) {
			t.Errorf("key %d (%q) does not sort before key %d (%q)", i-1, keys[i-1], i, keys[i])
		}
	}
	name, v, ok := parseWorkflowKey(workflowKey("we/ird name", 42))
	if !ok || name != "we/ird name" || v != 42 {
		t.Fatalf("parseWorkflowKey = %q %d %v", name, v, ok)
	}
}
