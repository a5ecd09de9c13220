package e2e_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A value-param SWITCH on a number takes the case Conductor takes for it
// as its JSON was written, through the API and a worker's result over
// NATS: 2.0 the case "2.0", 2 the case "2". On sealed data, which its
// system worker decides, 2.0 was sealed as 2 and takes the case "2" (the
// difference README lists), as 2 does.
func TestSwitchCaseOfANumberOverTheWire(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sw := func(ref, param string) string {
		return `{"name":"` + ref + `","taskReferenceName":"` + ref + `","type":"SWITCH","evaluatorType":"value-param","expression":"x",
		  "inputParameters":{"x":"` + param + `"},
		  "decisionCases":{"2":[{"name":"swn_sink","taskReferenceName":"` + ref + `_int"}],"2.0":[{"name":"swn_sink","taskReferenceName":"` + ref + `_double"}]}}`
	}
	// A plain value equal to one the decision seals is decided as sealed
	// (see TestSealedSwitchRoutesAlike): the sealed one comes later.
	e.register(`{"name":"swn","tasks":[` + sw("in", "${workflow.input.n}") + `,
	  {"name":"swn_src","taskReferenceName":"src","inputParameters":{"n":"${workflow.input.text}"}},` + sw("out", "${src.output.n}") + `,
	  {"name":"swn_src","taskReferenceName":"ssrc","inputParameters":{"n":"${workflow.input.text}","sealed":true}},` +
		sw("sealed", "${ssrc.output._secrets.n}") + `]}`)
	// The worker writes the number as it was given, in text.
	e.work("swn_src", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		n := json.Number(task.InputData["n"].(string))
		if task.InputData["sealed"] == true {
			return workers.Output{Data: map[string]any{"_secrets": map[string]any{"n": n}}}, nil
		}
		return workers.Output{Data: map[string]any{"n": n}}, nil
	})
	e.work("swn_sink", 2, succeed)
	for _, tc := range []struct {
		n                 string
		in, out, sealedTo string
	}{
		{"2.0", "in_double", "out_double", "sealed_int"},
		{"2", "in_int", "out_int", "sealed_int"},
	} {
		id := e.start("swn", map[string]any{"n": json.Number(tc.n), "text": tc.n})
		wf := e.waitStatus(id, conductor.WorkflowCompleted)
		for _, ref := range []string{tc.in, tc.out, tc.sealedTo} {
			if taskByRef(wf, ref) == nil {
				t.Errorf("n %s: the SWITCH did not run %s: tasks %v", tc.n, ref, refsOf(wf.Tasks))
			}
		}
	}
}
