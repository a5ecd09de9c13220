package conductor_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// switchChain is a definition whose SWITCH tasks nest depth deep through
// defaultCase, each with "optional" given as a string when mistyped.
func switchChain(depth int, mistyped bool) []byte {
	optional := "false"
	if mistyped {
		optional = `"false"`
	}
	var b strings.Builder
	b.WriteString(`{"name":"deep","version":1,"tasks":[`)
	for i := range depth {
		fmt.Fprintf(&b, `{"name":"s%d","taskReferenceName":"s%d","type":"SWITCH","optional":%s,"evaluatorType":"value-param",`+
			`"expression":"x","inputParameters":{"x":"a","n":%d},"decisionCases":{},"defaultCase":[`, i, i, optional, i)
	}
	b.WriteString(strings.Repeat("]}", depth))
	b.WriteString(`]}`)
	return []byte(b.String())
}

// The work of decoding a nested definition must grow with its size, not
// with a power of its depth: coerced level by level, each level decoded
// everything below it again, and a chain 120 deep with a mistyped scalar
// at every level took 21 s. The allocations count that work without a
// clock: doubling the depth doubles them when each level is decoded once.
// (Not parallel: AllocsPerRun counts the whole process's allocations.)
func TestNestedDefinitionDecodedOnce(t *testing.T) {
	for _, mistyped := range []bool{false, true} {
		allocs := func(depth int) float64 {
			body := switchChain(depth, mistyped)
			return testing.AllocsPerRun(3, func() {
				var def conductor.WorkflowDef
				if err := conductor.Unmarshal(body, &def); err != nil {
					t.Fatalf("depth %d: %v", depth, err)
				}
			})
		}
		shallow, deep := allocs(30), allocs(60)
		if ratio := deep / shallow; ratio > 2.5 {
			t.Errorf("mistyped=%v: depth 60 allocates %.0f, depth 30 %.0f: %.1f times, want about 2", mistyped, deep, shallow, ratio)
		}
	}
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal(switchChain(40, true), &def); err != nil {
		t.Fatal(err)
	}
	task, depth := def.Tasks[0], 1
	for ; len(task.DefaultCase) > 0; depth++ {
		if task.Optional {
			t.Fatalf("level %d: optional read true from \"false\"", depth)
		}
		if n, ok := task.InputParameters["n"].(int64); !ok || n != int64(depth-1) {
			t.Fatalf("level %d: input n = %T %v, want int64 %d", depth, task.InputParameters["n"], task.InputParameters["n"], depth-1)
		}
		if strings.Contains(string(task.Raw), `"false"`) {
			t.Fatalf("level %d: raw JSON keeps the mistyped scalar: %.80s", depth, task.Raw)
		}
		task = task.DefaultCase[0]
	}
	if depth != 40 {
		t.Errorf("decoded %d levels, want 40", depth)
	}
}

// What a definition costs to decode is its bytes counted once for each
// level of tasks that holds them (each decodes and keeps its own JSON): a
// large value deep in nested tasks is refused, and the same value in a
// flat definition is not. (A 7 MB string under 120 nested tasks took 12 s
// and 1.8 GB to decode.)
func TestNestedBytesBounded(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 1<<20)
	nested := func(depth int) []byte {
		var b strings.Builder
		b.WriteString(`{"name":"deep","tasks":[`)
		for i := range depth {
			fmt.Fprintf(&b, `{"name":"s%d","taskReferenceName":"s%d","type":"SWITCH","expression":"x","decisionCases":{},"defaultCase":[`, i, i)
		}
		b.WriteString(`{"name":"leaf","taskReferenceName":"leaf","inputParameters":{"big":"` + big + `"}}`)
		b.WriteString(strings.Repeat("]}", depth))
		b.WriteString(`]}`)
		return []byte(b.String())
	}
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal(nested(120), &def); !errors.Is(err, conductor.ErrNestedTooMuch) {
		t.Fatalf("1 MiB under 120 nested tasks: %v, want ErrNestedTooMuch", err)
	}
	var start conductor.StartWorkflowRequest
	if err := conductor.Unmarshal([]byte(`{"name":"w","workflowDef":`+string(nested(120))+`}`), &start); !errors.Is(err, conductor.ErrNestedTooMuch) {
		t.Fatalf("an inline definition: %v, want ErrNestedTooMuch", err)
	}
	if err := conductor.Unmarshal(nested(4), &def); err != nil {
		t.Fatalf("1 MiB under 4 nested tasks: %v", err)
	}
	flat := `{"name":"flat","tasks":[` + strings.Repeat(`{"name":"t","taskReferenceName":"t","inputParameters":{"big":"`+big+`"}},`, 7) +
		`{"name":"last","taskReferenceName":"last"}]}`
	if err := conductor.Unmarshal([]byte(flat), &def); err != nil {
		t.Fatalf("7 MiB in a flat definition: %v", err)
	}
	// Values that are not definitions are not counted.
	var input map[string]any
	if err := conductor.Unmarshal([]byte(`{"a":{"b":{"c":"`+big+`"}}}`), &input); err != nil {
		t.Fatal(err)
	}
}
