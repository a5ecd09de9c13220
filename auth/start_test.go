package auth

import (
	"errors"
	"slices"
	"testing"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A definition sent inline asks UPDATE on a registered definition of its
// name, and the lookup that tells whether there is one decides nothing
// when it fails: a name taken but not seen would be asked CREATE alone.
func TestStartRequiresAsksTheLookup(t *testing.T) {
	t.Parallel()
	req := conductor.StartWorkflowRequest{Name: "held", WorkflowDef: &conductor.WorkflowDef{Name: "held"}}
	create := Requirement{Create, Target{Type: TargetWorkflowDef, ID: "held"}}
	update := Requirement{Update, Target{Type: TargetWorkflowDef, ID: "held"}}
	for _, tt := range []struct {
		name   string
		lookup error
		want   []Requirement
	}{
		{"registered", nil, []Requirement{create, update}},
		{"registered nowhere", fault.NotFound("No such workflow found by name: held"), []Requirement{create}},
		{"the lookup failed", errors.New("nats: connection closed"), nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := StartRequires(req, func(string) error { return tt.lookup })
			if want := tt.want == nil; want != errors.Is(err, fault.ErrUnavailable) || !slices.Equal(got, tt.want) {
				t.Fatalf("StartRequires = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// A definition sent inline without a name runs under the request's, as
// the start names it: it is asked CREATE and UPDATE there, where it was
// asked them of "", which every USER may create, and ran under a name
// someone else registered.
func TestStartRequiresOfANamelessInlineDefinition(t *testing.T) {
	t.Parallel()
	req := conductor.StartWorkflowRequest{Name: "held", WorkflowDef: &conductor.WorkflowDef{}}
	var looked []string
	got, err := StartRequires(req, func(name string) error {
		looked = append(looked, name)
		return nil
	})
	want := []Requirement{{Create, Target{Type: TargetWorkflowDef, ID: "held"}}, {Update, Target{Type: TargetWorkflowDef, ID: "held"}}}
	if err != nil || !slices.Equal(got, want) || !slices.Equal(looked, []string{"held"}) {
		t.Fatalf("StartRequires = %v, %v, looking up %q; want %v, looking up held", got, err, looked, want)
	}
}
