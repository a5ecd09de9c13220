package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// caseForms are JSON values as a client writes them and the case
// Conductor's value-param SWITCH and DECISION take for each: "" + value,
// the value as Jackson decodes it (an integer as Integer or Long, any
// other number as Double) written by Java's String.valueOf.
var caseForms = []struct{ json, want string }{
	{`2.0`, "2.0"},
	{`2`, "2"},
	{`-2.0`, "-2.0"},
	{`2.50`, "2.5"},
	{`1e3`, "1000.0"},
	{`1E+3`, "1000.0"},
	{`-0.0`, "-0.0"},
	{`-0`, "0"},
	{`0.001`, "0.001"},
	{`0.0001`, "1.0E-4"},
	{`9999999.0`, "9999999.0"},
	{`1e7`, "1.0E7"},
	{`10000000`, "10000000"},
	{`12345678.9`, "1.23456789E7"},
	{`1e21`, "1.0E21"},
	{`9007199254740993`, "9007199254740993"},
	{`true`, "true"},
	{`null`, "null"},
	{`"2.0"`, "2.0"},
}

// caseRef is the task the case c runs in caseSwitch.
func caseRef(c string) string {
	for i, f := range caseForms {
		if f.want == c {
			return fmt.Sprintf("c%d", i)
		}
	}
	return "dflt"
}

// caseSwitch is a SWITCH (or DECISION) on x, whose input gives x as in
// (an expression), with a case for every form's case, each running
// caseRef.
func caseSwitch(typ, in string) string {
	var cases []string
	for i, f := range caseForms {
		if ref := caseRef(f.want); ref == fmt.Sprintf("c%d", i) {
			cases = append(cases, fmt.Sprintf(`%q:[{"name":"c","taskReferenceName":%q}]`, f.want, ref))
		}
	}
	return `{"name":"sw","taskReferenceName":"sw","type":"` + typ + `","evaluatorType":"value-param","expression":"x","caseValueParam":"x",
	  "inputParameters":{"x":"` + in + `"},"decisionCases":{` + strings.Join(cases, ",") + `},
	  "defaultCase":[{"name":"c","taskReferenceName":"dflt"}]}`
}

// jsonInput is {"x": value} decoded as the API decodes a request's input.
func jsonInput(t *testing.T, value string) map[string]any {
	t.Helper()
	var in map[string]any
	if err := conductor.Unmarshal([]byte(`{"x":`+value+`}`), &in); err != nil {
		t.Fatal(err)
	}
	return in
}

// TestSwitchCaseOfANumberAsWritten: a value-param SWITCH or DECISION
// takes the case Conductor takes for the value as its JSON was written,
// wherever the value came from: 2.0 is the case "2.0", 2 the case "2".
// Before, a number written with a decimal point or an exponent took the
// case of its digits ("2", "1000", "10000000").
func TestSwitchCaseOfANumberAsWritten(t *testing.T) {
	t.Parallel()
	sources := []struct {
		name string
		// run starts the workflow with value at hand and brings it to
		// the SWITCH named sw.
		run func(t *testing.T, value string) *harness
	}{
		{"workflow input", func(t *testing.T, value string) *harness {
			return newHarness(t, `{"name":"w","tasks":[`+caseSwitch(conductor.TaskTypeSwitch, "${workflow.input.x}")+`]}`, jsonInput(t, value))
		}},
		{"DECISION caseValueParam", func(t *testing.T, value string) *harness {
			return newHarness(t, `{"name":"w","tasks":[`+caseSwitch(conductor.TaskTypeDecision, "${workflow.input.x}")+`]}`, jsonInput(t, value))
		}},
		{"worker's result", func(t *testing.T, value string) *harness {
			h := newHarness(t, `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a"},`+
				caseSwitch(conductor.TaskTypeSwitch, "${a.output.x}")+`]}`, nil)
			// As the result endpoints and the NATS protocol decode it.
			var res conductor.TaskResult
			if err := conductor.UnmarshalNew([]byte(`{"taskId":"`+h.task("a").ID+`","status":"COMPLETED","outputData":{"x":`+value+`}}`), &res); err != nil {
				t.Fatal(err)
			}
			h.decide(engine.Result{Result: res})
			return h
		}},
		{"SET_VARIABLE", func(t *testing.T, value string) *harness {
			return newHarness(t, `{"name":"w","tasks":[
			 {"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"x":"${workflow.input.x}"}},`+
				caseSwitch(conductor.TaskTypeSwitch, "${workflow.variables.x}")+`]}`, jsonInput(t, value))
		}},
		{"sub-workflow's input", func(t *testing.T, value string) *harness {
			parent := newHarness(t, `{"name":"p","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW",
			  "subWorkflowParam":{"name":"w","version":1},"inputParameters":{"x":"${workflow.input.x}"}}]}`, jsonInput(t, value))
			starts := effectsOf[engine.StartWorkflow](parent.last)
			if len(starts) != 1 {
				t.Fatalf("parent's start effects %v", starts)
			}
			return newHarnessStart(t, engine.Start{WorkflowID: "child-1", CreatedBy: "app:tester",
				Def:     parseDef(t, `{"name":"w","version":1,"tasks":[`+caseSwitch(conductor.TaskTypeSwitch, "${workflow.input.x}")+`]}`),
				Request: conductor.StartWorkflowRequest{Input: starts[0].Input}})
		}},
		{"state read from the log", func(t *testing.T, value string) *harness {
			h := newHarness(t, `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a"},`+
				caseSwitch(conductor.TaskTypeSwitch, "${workflow.input.x}")+`]}`, jsonInput(t, value))
			// Another engine decides next, from the records of the log.
			h.w = fold(t, encode(t, h.history), nil)
			h.complete("a", nil)
			return h
		}},
	}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			t.Parallel()
			for _, f := range caseForms {
				h := src.run(t, f.json)
				sw := h.wantTask("sw", conductor.TaskCompleted)
				if sw.Output["selectedCase"] != f.want || sw.Case != f.want || sw.CaseDefault {
					t.Errorf("%s: selectedCase %q, case %q (default %v), want %q", f.json, sw.Output["selectedCase"], sw.Case, sw.CaseDefault, f.want)
					continue
				}
				h.wantTask(caseRef(f.want), conductor.TaskScheduled)
			}
		})
	}
}

// TestSwitchCaseRecordedStays: a SWITCH decided before a number written
// 2.0 took the case "2.0" recorded the case "2" and scheduled its branch;
// the engine of today goes on with the branch the record names and does
// not read the value again.
func TestSwitchCaseRecordedStays(t *testing.T) {
	t.Parallel()
	h := newHarness(t, `{"name":"w","tasks":[
	 {"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"x",
	  "inputParameters":{"x":"${workflow.input.x}"},
	  "decisionCases":{"2":[{"name":"b","taskReferenceName":"b1"},{"name":"b","taskReferenceName":"b2"}],
	                   "2.0":[{"name":"b","taskReferenceName":"f1"},{"name":"b","taskReferenceName":"f2"}]}},
	 {"name":"after","taskReferenceName":"after"}]}`, jsonInput(t, `2`))
	// The first decision as the earlier engine recorded it for {"x": 2.0}.
	for _, ev := range h.history[0] {
		switch e := ev.(type) {
		case *schemas.WorkflowStarted:
			e.Input["x"] = 2.0
		case *schemas.TaskScheduled:
			if e.Ref == "sw" {
				e.Input["x"] = 2.0
			}
		}
	}
	h.w = fold(t, encode(t, h.history), nil)
	if x := h.w.Input["x"]; x != 2.0 {
		t.Fatalf("recorded input x = %#v", x)
	}
	h.complete("b1", nil)
	h.complete("b2", nil)
	h.complete("after", nil)
	h.wantRefs("sw", "b1", "b2", "after")
	h.wantStatus(conductor.WorkflowCompleted)
}
