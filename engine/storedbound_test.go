package engine

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A workflow whose definition holds more than conductor.MaxNestedBytes
// counted per level (started before the bound existed: it applies where
// definitions come in) is still decided on: terminated, and compacted so
// that its secrets are shredded.
func TestDefinitionOverTheNestedBoundStillDecided(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"name":"deep","version":1,"tasks":[`)
	const depth = 70
	for i := range depth {
		fmt.Fprintf(&b, `{"name":"s%d","taskReferenceName":"s%d","type":"SWITCH","evaluatorType":"value-param","expression":"x","decisionCases":{},"defaultCase":[`, i, i)
	}
	b.WriteString(`{"name":"leaf","taskReferenceName":"leaf","inputParameters":{"big":"` + strings.Repeat("x", 1<<20) + `"}}`)
	b.WriteString(strings.Repeat("]}", depth))
	b.WriteString(`]}`)
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(b.String()), &def); err == nil {
		t.Fatal("the definition is within the bound: the test proves nothing")
	}
	w, err := Apply(nil, &schemas.WorkflowStarted{WorkflowID: "wf", Name: "deep", Version: 1, Def: []byte(b.String()), Time: 1})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := Decide(Input{State: w, Trigger: Terminate{Reason: "stop"}, Now: time.UnixMilli(2)})
	if err != nil || len(dec.Events) == 0 {
		t.Fatalf("terminate: %v (%d events)", err, len(dec.Events))
	}
	if !dec.State.Terminal() {
		t.Fatalf("terminated: %s", dec.State.Status)
	}
	if _, err := Decide(Input{State: dec.State, Trigger: Compact{}, Now: time.UnixMilli(3)}); err != nil {
		t.Fatalf("compact: %v", err)
	}
}
