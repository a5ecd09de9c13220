package events

import (
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// An action acts for the publishing workflow's principals first (the
// first is whom a started workflow is created by), then the handler's,
// each once; without a publisher, for the handler's alone.
func TestActingAs(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		h         conductor.EventHandler
		publisher []string
		want      []string
	}{
		{"no publisher", conductor.EventHandler{CreatedBy: "app:admin"}, nil, []string{"app:admin"}},
		{"last saver", conductor.EventHandler{CreatedBy: "app:a", UpdatedBy: "app:b"}, nil, []string{"app:b"}},
		{"publisher first", conductor.EventHandler{CreatedBy: "app:admin"}, []string{"app:shop", "app:joined"},
			[]string{"app:shop", "app:joined", "app:admin"}},
		{"once each", conductor.EventHandler{CreatedBy: "app:shop"}, []string{"app:shop"}, []string{"app:shop"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			publisher := append([]string(nil), tt.publisher...)
			if got := actingAs(&tt.h, tt.publisher); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			if !reflect.DeepEqual(tt.publisher, publisher) {
				t.Fatalf("the publisher's principals changed: %v", tt.publisher)
			}
		})
	}
}

// expandInlineJSON parses strings holding JSON objects or arrays, at any
// depth, and leaves other strings, and the input, alone.
func TestExpandInlineJSON(t *testing.T) {
	t.Parallel()
	in := map[string]any{
		"obj":   `{"n":3,"inner":"[1,2]"}`,
		"list":  []any{` [true] `, "plain", `{broken`},
		"text":  "{not json",
		"count": 4,
	}
	want := map[string]any{
		"obj":   map[string]any{"n": int64(3), "inner": []any{int64(1), int64(2)}},
		"list":  []any{[]any{true}, "plain", `{broken`},
		"text":  "{not json",
		"count": 4,
	}
	got := expandInlineJSON(in)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	if in["obj"] != `{"n":3,"inner":"[1,2]"}` {
		t.Fatal("the input changed")
	}
}
