package guard

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
)

// A value found to be secret after a task wrote it inside longer text is
// marked where redaction would have masked it had it been known: plain
// within text, or in a form redaction looks for (JSON-escaped in JSON
// text, URL-encoded in a URL, base64 of text holding it), at any depth,
// or in a member's name. The top-level key reads "***" whole in the
// views, and compaction replaces it. Text holding only a piece of it
// that redaction does not look for (none of its masking.Parts, as secret
// is of this value, which holds a quote), or a value shorter than
// masking.MinLength, is left as it is. Only strings equal to the value
// were marked.
func TestLateSecretMarkedWithinText(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = `late secret/"v" 42kq`
	jsonText, _ := json.Marshal(map[string]any{"token": value})
	basic := base64.StdEncoding.EncodeToString([]byte("svc:" + value))
	for _, tc := range []struct {
		name  string
		value string
		out   map[string]any // the earlier task's output
		shows string         // what of it shows the value
		want  []string
	}{
		{"plain within text", value, map[string]any{"p": "Bearer " + value, "other": "x"}, value, []string{"task/d1/output.p"}},
		{"JSON-escaped in JSON text", value, map[string]any{"p": string(jsonText), "other": "x"}, `42kq`, []string{"task/d1/output.p"}},
		{"URL-encoded in a URL", value, map[string]any{"p": "https://example.com/cb?k=" + url.QueryEscape(value), "other": "x"},
			url.QueryEscape(value), []string{"task/d1/output.p"}},
		{"base64 of text holding it", value, map[string]any{"p": "Basic " + basic, "other": "x"}, basic, []string{"task/d1/output.p"}},
		{"within text in a list", value, map[string]any{"p": []any{"x", map[string]any{"q": "got " + value}}, "other": "x"}, value,
			[]string{"task/d1/output.p"}},
		{"a member's name holding its URL form", value, map[string]any{"k=" + url.PathEscape(value): 1}, url.PathEscape(value),
			[]string{"task/d1/output"}},
		{"text holding part of it", value, map[string]any{"p": "late secr", "other": "x"}, "", nil},
		{"a value below the floor", "pin42", map[string]any{"p": "the pin is pin42", "other": "x"}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := applyAll(t, nil,
				&schemas.WorkflowStarted{WorkflowID: "wf-text", Name: "w", Version: 1,
					Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`)},
				&schemas.TaskScheduled{TaskID: "d1", Ref: "d1", Name: "d", Type: "SIMPLE", Status: "SCHEDULED", Time: 1},
				&schemas.TaskUpdated{TaskID: "d1", Status: "COMPLETED", Output: tc.out, Time: 1})
			dec, err := New(Config{Keys: keys}).Protect(ctx, w, engine.Decision{Events: []schemas.Event{&schemas.TaskScheduled{TaskID: "t1",
				Ref: "t", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", Input: map[string]any{"_secrets": map[string]any{"p": tc.value}}, Time: 2}}})
			if err != nil {
				t.Fatal(err)
			}
			var masked schemas.ValuesMasked
			for _, ev := range dec.Events {
				if m, ok := ev.(*schemas.ValuesMasked); ok {
					masked = *m
				}
			}
			if !slices.Equal(masked.Paths, tc.want) || !slices.Equal(masked.Shred, tc.want) {
				t.Fatalf("marked %q, for shredding %q, want %q", masked.Paths, masked.Shred, tc.want)
			}
			if tc.want == nil {
				return
			}
			w = applyAll(t, w, dec.Events...)
			view, _ := json.Marshal(w.Conductor(true))
			if strings.Contains(string(view), tc.shows) || !strings.Contains(string(view), `***`) {
				t.Errorf("view %s", view)
			}
			if len(tc.out) > 1 && !strings.Contains(string(view), `"other":"x"`) {
				t.Errorf("a key holding no value is masked too: %s", view)
			}
			w = applyAll(t, w, &schemas.WorkflowCompacted{Time: 3})
			if state, err := msgpack.Marshal(w); err != nil || bytes.Contains(state, []byte(tc.shows)) {
				t.Errorf("state after compaction holds the value (%v)", err)
			}
		})
	}
}
