package events

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// A handler's condition reads the event with JSON held in strings
// expanded, as Conductor's DefaultEventProcessor evaluates it (over
// jsonUtils.expand of the payload, whatever the actions'
// expandInlineJSON); the actions still read the payload as it came.
func TestConditionReadsInlineJSONExpanded(t *testing.T) {
	t.Parallel()
	payload := `{"amount": 150, "detail": "{\"n\":3}", "tags": "[\"gift\"]", "note": "{not json"}`
	for _, tt := range []struct {
		name      string
		condition string
		starts    bool
	}{
		{"a member of an object in a string", "$.detail.n > 1", true},
		{"the same, false", "$.detail.n > 5", false},
		{"an array in a string", `$.tags[0] === "gift"`, true},
		{"the expanded value is an object", `typeof $.detail === "object"`, true},
		{"a string that is not JSON stays one", `$.note === "{not json"`, true},
		{"a plain member", "$.amount > 100", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eng := &startEngine{}
			h := &conductor.EventHandler{Name: "h", Event: "nats:orders.new", CreatedBy: "app:admin", Condition: tt.condition,
				Actions: []conductor.EventAction{{Action: conductor.ActionStartWorkflow,
					StartWorkflow: map[string]any{"name": "target", "input": map[string]any{"detail": "${detail}"}}}}}
			deliver(listening(h, Config{Engine: eng}), "orders.new", payload, "")
			if got := len(eng.started) == 1; got != tt.starts {
				t.Fatalf("condition %q: started %d workflows, want the condition to read %v", tt.condition, len(eng.started), tt.starts)
			}
			if tt.starts {
				// The action, without expandInlineJSON, reads the string.
				if got, want := eng.started[0].Input["detail"], `{"n":3}`; got != want {
					t.Fatalf("the action read detail as %#v, want the string %q", got, want)
				}
			}
		})
	}
}

// listening returns a listener that runs h alone, on the events of its
// subject (allowing every action, unless cfg says otherwise).
func listening(h *conductor.EventHandler, cfg Config) *Listener {
	if cfg.Authz == nil {
		cfg.Authz = allowAll{}
	}
	l := New(context.Background(), cfg)
	subj, _ := Subject(h.Event)
	l.handlers = map[string][]*conductor.EventHandler{subj: {h}}
	return l
}

// deliver hands l one event, payload published on subject, with the
// message id msgID when it is not empty, as its subscriptions would (a
// pattern's gets the subject that matched it).
func deliver(l *Listener, subject, payload, msgID string) {
	m := nats.NewMsg(subject)
	m.Data = []byte(payload)
	if msgID != "" {
		m.Header.Set(nats.MsgIdHdr, msgID)
	}
	for subscribed := range l.handlers {
		l.receive(subscribed, m)
	}
}

// A value-param condition names a top-level member of the event, which
// holds when that member is true or a number above 0, as Conductor's
// ValueParamEvaluator and ScriptEvaluator.toBoolean read it (over the
// expanded event). Such a handler was refused.
func TestValueParamCondition(t *testing.T) {
	t.Parallel()
	payload := `{"approved": true, "rejected": false, "count": 2, "none": 0, "ratio": 0.5, "text": "yes",
		"nested": {"ok": true}, "an odd key!": 1}`
	for _, tt := range []struct {
		condition string
		starts    bool
	}{
		{"approved", true},
		{"rejected", false},
		{"count", true},
		{"none", false},
		{"ratio", true},
		{"text", false},      // neither a boolean nor a number
		{"nested.ok", false}, // a member's name, not a path
		{"missing", false},
		{"an odd key!", true}, // not JavaScript: a name
	} {
		t.Run(tt.condition, func(t *testing.T) {
			t.Parallel()
			h := &conductor.EventHandler{Name: "h", Event: "nats:orders.new", CreatedBy: "app:admin",
				EvaluatorType: "value-param", Condition: tt.condition,
				Actions: []conductor.EventAction{{Action: conductor.ActionStartWorkflow, StartWorkflow: map[string]any{"name": "target"}}}}
			if err := Validate(h); err != nil {
				t.Fatalf("refused: %v", err)
			}
			eng := &startEngine{}
			deliver(listening(h, Config{Engine: eng}), "orders.new", payload, "")
			if got := len(eng.started) == 1; got != tt.starts {
				t.Fatalf("value-param %q: started %d workflows, want the condition to read %v", tt.condition, len(eng.started), tt.starts)
			}
		})
	}
}
