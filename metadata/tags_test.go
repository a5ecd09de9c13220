package metadata_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas/conductor"
)

func tagString(tags []conductor.Tag) string {
	s := ""
	for _, t := range tags {
		s += fmt.Sprintf("%s:%s ", t.Key, t.Value)
	}
	return s
}

func TestTags(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	tag := func(k, v string) []conductor.Tag { return []conductor.Tag{{Key: k, Value: v}} }
	expect := func(kind metadata.Kind, name, want string) {
		t.Helper()
		got, err := n.md.GetTags(c, kind, name)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil || tagString(got) != want {
			t.Fatalf("%s %s tags = %q (%#v), want %q", kind, name, tagString(got), got, want)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	must(n.md.RegisterWorkflowDef(c, wf(t, `{"name":"tw","tasks":[{"name":"t","taskReferenceName":"r"}],"tags":[{"key":"a","value":"1"}]}`), false, ""))
	expect(metadata.KindWorkflow, "tw", "a:1 ")
	must(n.md.AddTags(c, metadata.KindWorkflow, "tw", tag("b", "2"), ""))
	expect(metadata.KindWorkflow, "tw", "a:1 b:2 ")

	// Adding a tag that is there appends nothing to the log.
	seq, err := n.log.LastSeq(c, metadata.WorkflowSubject("tw"))
	must(err)
	must(n.md.AddTags(c, metadata.KindWorkflow, "tw", tag("a", "1"), ""))
	if again, _ := n.log.LastSeq(c, metadata.WorkflowSubject("tw")); again != seq {
		t.Fatalf("a no-op tag change appended (seq %d -> %d)", seq, again)
	}

	must(n.md.DeleteTags(c, metadata.KindWorkflow, "tw", tag("a", "1"), ""))
	must(n.md.DeleteTags(c, metadata.KindWorkflow, "tw", tag("nope", "x"), ""))
	expect(metadata.KindWorkflow, "tw", "b:2 ")
	must(n.md.SetTags(c, metadata.KindWorkflow, "tw", []conductor.Tag{{Key: "c", Value: "3"}, {Key: "c", Value: "4"}, {Key: "c", Value: "3"}}, ""))
	expect(metadata.KindWorkflow, "tw", "c:3 c:4 ")

	// Tags belong to the name: a new version keeps them; a registration
	// with overwriteTags:false adds; one with tags replaces; none keeps.
	must(n.md.RegisterWorkflowDef(c, wf(t, `{"name":"tw","version":2,"tasks":[{"name":"t","taskReferenceName":"r"}],"tags":[{"key":"d","value":"5"}],"overwriteTags":false}`), false, ""))
	expect(metadata.KindWorkflow, "tw", "c:3 c:4 d:5 ")
	must(n.md.RegisterWorkflowDef(c, wf(t, `{"name":"tw","version":2,"tasks":[{"name":"t","taskReferenceName":"r"}]}`), true, ""))
	expect(metadata.KindWorkflow, "tw", "c:3 c:4 d:5 ")
	must(n.md.RegisterWorkflowDef(c, wf(t, `{"name":"tw","version":2,"tasks":[{"name":"t","taskReferenceName":"r"}],"tags":[]}`), true, ""))
	expect(metadata.KindWorkflow, "tw", "")
	must(n.md.SetTags(c, metadata.KindWorkflow, "tw", tag("e", "6"), ""))

	// Removing one version keeps the tags, removing the last drops them.
	must(n.md.DeleteWorkflowDef(c, "tw", 1, ""))
	expect(metadata.KindWorkflow, "tw", "e:6 ")
	must(n.md.DeleteWorkflowDef(c, "tw", 2, ""))
	_, err = n.md.GetTags(c, metadata.KindWorkflow, "tw")
	mustNotFound(t, err)
	must(n.md.RegisterWorkflowDef(c, wf(t, simpleWF("tw", 1, "")), false, ""))
	expect(metadata.KindWorkflow, "tw", "")

	// Task definitions.
	must(n.md.UpdateTaskDef(c, td(t, `{"name":"tt","timeoutSeconds":1,"tags":[{"key":"k","value":"v"}]}`), ""))
	expect(metadata.KindTask, "tt", "k:v ")
	must(n.md.AddTags(c, metadata.KindTask, "tt", tag("k", "w"), ""))
	expect(metadata.KindTask, "tt", "k:v k:w ")
	expect(metadata.KindWorkflow, "tw", "") // kinds do not mix
	must(n.md.DeleteTaskDef(c, "tt", ""))
	must(n.md.UpdateTaskDef(c, td(t, `{"name":"tt","timeoutSeconds":1}`), ""))
	expect(metadata.KindTask, "tt", "")
}

func TestTagErrors(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	if err := n.md.UpdateTaskDef(c, td(t, `{"name":"known","timeoutSeconds":1}`), ""); err != nil {
		t.Fatal(err)
	}
	one := []conductor.Tag{{Key: "k", Value: "v"}}
	for _, kind := range []metadata.Kind{metadata.KindWorkflow, metadata.KindTask} {
		_, err := n.md.GetTags(c, kind, "unknown")
		mustNotFound(t, err)
		mustNotFound(t, n.md.AddTags(c, kind, "unknown", one, ""))
		mustNotFound(t, n.md.SetTags(c, kind, "unknown", one, ""))
		mustNotFound(t, n.md.DeleteTags(c, kind, "unknown", one, ""))
	}
	err := n.md.AddTags(c, metadata.KindTask, "known", []conductor.Tag{{Key: "ok"}, {Value: "no key"}}, "")
	var ve *fault.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Path != "[1].key" {
		t.Fatalf("tag without key: %v", err)
	}
	if _, err := n.md.GetTags(c, "secret", "known"); !errors.Is(err, fault.ErrInvalid) {
		t.Fatalf("unknown kind: %v", err)
	}
	// Nothing was appended for refused changes.
	if seq, err := n.log.LastSeq(c, metadata.TaskSubject("unknown")); err != nil || seq != 0 {
		t.Fatalf("refused tag changes appended: %d, %v", seq, err)
	}
}

// A workflow or task definition's name holds at most MaxTags tags, as a
// secret does: a registration carrying more, or adding past the limit
// (overwriteTags false), and a tag change taking the set over it are
// refused, naming the field, and change nothing.
func TestTagLimit(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	// tags is count tags, k<from>:v on, as JSON.
	tags := func(from, count int) string {
		out := make([]string, count)
		for i := range out {
			out[i] = fmt.Sprintf(`{"key":"k%d","value":"v"}`, from+i)
		}
		return "[" + strings.Join(out, ",") + "]"
	}
	tagList := func(from, count int) []conductor.Tag {
		var out []conductor.Tag
		if err := json.Unmarshal([]byte(tags(from, count)), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	kinds := []struct {
		kind     metadata.Kind
		register func(name, tagFields string) error
	}{
		{metadata.KindWorkflow, func(name, tagFields string) error {
			return n.md.RegisterWorkflowDef(c, wf(t, `{"name":"`+name+`","tasks":[{"name":"t","taskReferenceName":"r"}],`+tagFields+`}`), true, "")
		}},
		{metadata.KindTask, func(name, tagFields string) error {
			return n.md.UpdateTaskDef(c, td(t, `{"name":"`+name+`","timeoutSeconds":1,`+tagFields+`}`), "")
		}},
	}
	for _, k := range kinds {
		for _, tc := range []struct {
			name    string
			change  func(name string) error
			refused bool
			path    string // of the refusal
		}{
			{"registered again with MaxTags tags", func(name string) error {
				return k.register(name, `"tags":`+tags(1, metadata.MaxTags))
			}, false, ""},
			{"registered with one tag added that it has", func(name string) error {
				return k.register(name, `"overwriteTags":false,"tags":`+tags(0, 1))
			}, false, ""},
			{"registered with one more", func(name string) error {
				return k.register(name, `"tags":`+tags(0, metadata.MaxTags+1))
			}, true, "tags"},
			{"registered with one more tag added", func(name string) error {
				return k.register(name, `"overwriteTags":false,"tags":`+tags(metadata.MaxTags, 1))
			}, true, "tags"},
			{"one more tag added", func(name string) error {
				return n.md.AddTags(c, k.kind, name, tagList(metadata.MaxTags, 1), "")
			}, true, ""},
			{"one more tag set", func(name string) error {
				return n.md.SetTags(c, k.kind, name, tagList(0, metadata.MaxTags+1), "")
			}, true, ""},
		} {
			t.Run(string(k.kind)+"/"+tc.name, func(t *testing.T) {
				name := strings.ReplaceAll(string(k.kind)+" "+tc.name, " ", "-")
				if err := k.register(name, `"tags":`+tags(0, metadata.MaxTags)); err != nil {
					t.Fatal(err)
				}
				err := tc.change(name)
				var ve *fault.ValidationError
				switch {
				case !tc.refused && err != nil:
					t.Fatalf("refused: %v", err)
				case tc.refused && (!errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Path != tc.path ||
					!strings.Contains(ve.Fields[0].Message, fmt.Sprintf("at most %d", metadata.MaxTags))):
					t.Fatalf("err = %v, want a validation error at %q naming the limit", err, tc.path)
				}
				if got, err := n.md.GetTags(c, k.kind, name); err != nil || len(got) != metadata.MaxTags {
					t.Fatalf("%d tags (%v), want %d", len(got), err, metadata.MaxTags)
				}
			})
		}
	}
}

// An event handler's and a webhook's tags, kept in their own JSON, are
// held to what a definition name's are, and every tag's key and value to
// MaxTagLen bytes, as a secret's: a registration over either limit (400
// naming tags) and a tag change over it are refused and change nothing.
// Neither had a limit, nor had a definition's tags a length limit.
func TestTagLimitsOfEveryHolder(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	// tags is count tags k<i>:v; long makes the first one's key (or
	// value) size bytes.
	tags := func(count int, long string, size int) []conductor.Tag {
		out := make([]conductor.Tag, count)
		for i := range out {
			out[i] = conductor.Tag{Key: fmt.Sprintf("k%d", i), Value: "v"}
		}
		switch long {
		case "key":
			out[0].Key = strings.Repeat("k", size)
		case "value":
			out[0].Value = strings.Repeat("v", size)
		}
		return out
	}
	holders := []struct {
		name string
		// create makes name with tags; register saves it again with them.
		create, register func(name string, tags []conductor.Tag) error
		add              func(name string, tags []conductor.Tag) error
		get              func(name string) ([]conductor.Tag, error)
	}{
		{"workflow", func(name string, tags []conductor.Tag) error {
			d := wf(t, `{"name":"`+name+`","tasks":[{"name":"t","taskReferenceName":"r"}]}`)
			d.Tags = tags
			return n.md.RegisterWorkflowDef(c, d, true, "")
		}, nil, func(name string, tags []conductor.Tag) error {
			return n.md.AddTags(c, metadata.KindWorkflow, name, tags, "")
		}, func(name string) ([]conductor.Tag, error) { return n.md.GetTags(c, metadata.KindWorkflow, name) }},
		{"task", func(name string, tags []conductor.Tag) error {
			d := td(t, `{"name":"`+name+`","timeoutSeconds":1}`)
			d.Tags = tags
			return n.md.UpdateTaskDef(c, d, "")
		}, nil, func(name string, tags []conductor.Tag) error {
			return n.md.AddTags(c, metadata.KindTask, name, tags, "")
		}, func(name string) ([]conductor.Tag, error) { return n.md.GetTags(c, metadata.KindTask, name) }},
		{"event handler", func(name string, tags []conductor.Tag) error {
			return n.md.AddEventHandlers(c, []*conductor.EventHandler{{Name: name, Event: "nats:x", Tags: tags}}, "")
		}, func(name string, tags []conductor.Tag) error {
			return n.md.UpdateEventHandler(c, &conductor.EventHandler{Name: name, Event: "nats:x", Tags: tags}, "")
		}, func(name string, tags []conductor.Tag) error {
			return n.md.AddEventHandlerTags(c, name, tags, "")
		}, func(name string) ([]conductor.Tag, error) { return n.md.EventHandlerTags(c, name) }},
		{"webhook", func(name string, tags []conductor.Tag) error {
			return n.md.SaveWebhook(c, &conductor.WebhookConfig{ID: name, Name: name, Tags: tags}, "", false)
		}, func(name string, tags []conductor.Tag) error {
			return n.md.SaveWebhook(c, &conductor.WebhookConfig{ID: name, Name: name, Tags: tags}, "", true)
		}, func(name string, tags []conductor.Tag) error {
			return n.md.AddWebhookTags(c, name, tags, "")
		}, func(name string) ([]conductor.Tag, error) {
			w, err := n.md.Webhook(c, name)
			if err != nil {
				return nil, err
			}
			return w.Tags, nil
		}},
	}
	for _, h := range holders {
		if h.register == nil {
			h.register = h.create // a definition's registration replaces it
		}
		for _, tc := range []struct {
			name   string
			change func(name string) error
			path   string // of the refusal; "-": none
		}{
			{"registered again with the longest key and value", func(name string) error {
				return h.register(name, tags(metadata.MaxTags, "key", metadata.MaxTagLen))
			}, "-"},
			{"registered again with one tag more", func(name string) error {
				return h.register(name, tags(metadata.MaxTags+1, "", 0))
			}, "tags"},
			{"registered again with a key too long", func(name string) error {
				return h.register(name, tags(1, "key", metadata.MaxTagLen+1))
			}, "tags[0]"},
			{"registered again with a value too long", func(name string) error {
				return h.register(name, tags(1, "value", metadata.MaxTagLen+1))
			}, "tags[0]"},
			{"one tag more added", func(name string) error {
				return h.add(name, []conductor.Tag{{Key: "more", Value: "v"}})
			}, ""},
			{"a value too long added", func(name string) error {
				return h.add(name, tags(1, "value", metadata.MaxTagLen+1))
			}, "[0]"},
		} {
			t.Run(h.name+"/"+tc.name, func(t *testing.T) {
				name := strings.ReplaceAll(h.name+" "+tc.name, " ", "_")
				if err := h.create(name, tags(metadata.MaxTags, "", 0)); err != nil {
					t.Fatal(err)
				}
				err := tc.change(name)
				var ve *fault.ValidationError
				switch {
				case tc.path == "-" && err != nil:
					t.Fatalf("refused: %v", err)
				case tc.path != "-" && (!errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Path != tc.path ||
					!strings.Contains(ve.Fields[0].Message, "at most")):
					t.Fatalf("err = %v, want a validation error at %q naming the limit", err, tc.path)
				}
				got, err := h.get(name)
				if err != nil || len(got) != metadata.MaxTags {
					t.Fatalf("%d tags (%v), want %d", len(got), err, metadata.MaxTags)
				}
				if tc.path != "-" && len(got[0].Key) != 2 {
					t.Fatalf("the refused change was applied: first tag %.20s…", got[0].Key)
				}
			})
		}
	}
}

// An event handler and a webhook keep their tags in their own JSON; they
// keep them as every holder does, key and value once: a tag's deprecated
// type (of any length) and repeats (any number of them) were stored as
// sent, past the limits.
func TestTagTypesAndRepeatsAreNotKept(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	sent := []conductor.Tag{{Key: "a", Value: "1", Type: strings.Repeat("t", 2*metadata.MaxTagLen)}, {Key: "a", Value: "1"}, {Key: "a", Value: "1"}}
	for _, tc := range []struct {
		name string
		save func(name string) error
		get  func(name string) ([]conductor.Tag, error)
	}{
		{"event handler", func(name string) error {
			return n.md.AddEventHandlers(c, []*conductor.EventHandler{{Name: name, Event: "nats:x", Tags: sent}}, "")
		}, func(name string) ([]conductor.Tag, error) { return n.md.EventHandlerTags(c, name) }},
		{"webhook", func(name string) error {
			return n.md.SaveWebhook(c, &conductor.WebhookConfig{ID: name, Name: name, Tags: sent}, "", false)
		}, func(name string) ([]conductor.Tag, error) {
			w, err := n.md.Webhook(c, name)
			if err != nil {
				return nil, err
			}
			return w.Tags, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll("types "+tc.name, " ", "_")
			if err := tc.save(name); err != nil {
				t.Fatal(err)
			}
			got, err := tc.get(name)
			if err != nil || fmt.Sprint(got) != fmt.Sprint([]conductor.Tag{{Key: "a", Value: "1"}}) {
				t.Fatalf("tags %.80v (%v), want [a:1] alone, without its type", got, err)
			}
		})
	}
}

// An event handler keeps its JSON as its client sent it: a member named
// "Tags" there is not its tags, as Jackson reads it, when a tag is added
// to it either.
func TestTagsInAnotherCaseAreNotAHandlersTags(t *testing.T) {
	t.Parallel()
	n := newNode(t, nil, metadata.Options{})
	c := ctx(t)
	var h conductor.EventHandler
	if err := conductor.Unmarshal([]byte(`{"name":"cased","event":"nats:x","actions":[],"Tags":[{"key":"old","value":"v"}]}`), &h); err != nil {
		t.Fatal(err)
	}
	if err := n.md.AddEventHandlers(c, []*conductor.EventHandler{&h}, ""); err != nil {
		t.Fatal(err)
	}
	if err := n.md.AddEventHandlerTags(c, "cased", []conductor.Tag{{Key: "new", Value: "v"}}, ""); err != nil {
		t.Fatal(err)
	}
	got, err := n.md.EventHandlerTags(c, "cased")
	if err != nil || fmt.Sprint(got) != fmt.Sprint([]conductor.Tag{{Key: "new", Value: "v"}}) {
		t.Fatalf("tags %v (%v), want [new:v] alone", got, err)
	}
}
