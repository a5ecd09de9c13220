package engine

import (
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
)

// Every map of data a workflow event carries is looked at for sealed
// values: a field carriesSealed missed would leave Unsealed set over data
// that holds one, and the hand-off would give a worker "***" for it.
func TestUnsealedSeesEveryField(t *testing.T) {
	events := []schemas.Event{&schemas.WorkflowStarted{}, &schemas.TaskScheduled{}, &schemas.TaskStarted{},
		&schemas.TaskUpdated{}, &schemas.TaskLogged{}, &schemas.VariablesUpdated{}, &schemas.WorkflowStatusChanged{},
		&schemas.WorkflowReset{}, &schemas.WorkflowCompacted{}, &schemas.ValuesMasked{}, &schemas.SecretsSealed{},
		&schemas.WorkflowRunAs{}, &schemas.WorkflowRemoved{}, &schemas.TasksRemoved{}, &schemas.WorkflowUpgraded{}}
	dataType := reflect.TypeFor[map[string]any]()
	fields := 0
	for _, proto := range events {
		typ := reflect.TypeOf(proto).Elem()
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Type == reflect.TypeFor[any]() || f.Type.Kind() == reflect.Map && f.Type != dataType && f.Type.Elem().Kind() == reflect.Interface {
				t.Fatalf("%s.%s is %s: teach carriesSealed and this test about it", typ.Name(), f.Name, f.Type)
			}
			if f.Type != dataType {
				continue
			}
			fields++
			ev := reflect.New(typ)
			if carriesSealed(ev.Interface().(schemas.Event)) {
				t.Fatalf("%s without data carries a sealed value", typ.Name())
			}
			sealed := &masking.Sealed{Kind: masking.KindMasked, Purpose: "p", Ciphertext: []byte{1}}
			ev.Elem().Field(i).Set(reflect.ValueOf(map[string]any{"outer": map[string]any{"list": []any{"x", sealed}}}))
			if !carriesSealed(ev.Interface().(schemas.Event)) {
				t.Errorf("a sealed value in %s.%s goes unseen", typ.Name(), f.Name)
			}
		}
	}
	if fields < 8 {
		t.Fatalf("looked at %d data fields: the event list above is out of date", fields)
	}
}
