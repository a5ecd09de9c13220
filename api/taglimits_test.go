package api_test

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/taglimit"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/scheduler"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// A schedule's, a secret's, an environment value's and an application's
// tags are held to the limits a definition's, an event handler's and a
// webhook's are (metadata's TestTagLimitsOfEveryHolder): a schedule saved
// with 101 tags or a key or value of 1,025 bytes (400 naming tags), and a
// tag change that takes a holder past 100 tags or carries a value too
// long (400), are refused and change nothing; 100 tags of 1,024-byte keys
// and values are taken, as are 100 tags sent twice each (kept once).
// Schedules had no limit (and kept repeats), applications no count or
// value limit.
func TestTagLimitsOverHTTP(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	// done sends a request that must succeed and answers its body.
	done := func(c nodetest.Client, method, path, body string) string {
		c.TB.Helper()
		status, out := c.Do(method, path, body)
		if status/100 != 2 {
			c.TB.Fatalf("%s %s = %d %.300s", method, path, status, out)
		}
		return out
	}
	// tags is count tags k<i>:v as JSON; long ("key" or "value") makes
	// the first one's key or value size bytes.
	tags := func(count int, long string, size int) string {
		out := make([]string, count)
		for i := range out {
			out[i] = fmt.Sprintf(`{"key":"k%d","value":"v"}`, i)
		}
		if long != "" {
			first := map[string]string{"key": "k0", "value": "v", long: strings.Repeat(long[:1], size)}
			out[0] = fmt.Sprintf(`{"key":%q,"value":%q}`, first["key"], first["value"])
		}
		return "[" + strings.Join(out, ",") + "]"
	}
	// twice is the JSON array tags with each tag repeated.
	twice := func(tags string) string { return strings.TrimSuffix(tags, "]") + "," + strings.TrimPrefix(tags, "[") }
	schedule := func(name, tags string) string {
		return `{"name":"` + name + `","cronExpression":"0 0 0 * * ?","startWorkflowRequest":{"name":"w"},"tags":` + tags + `}`
	}
	holders := []struct {
		name string
		// create makes a holder with tags and answers the path of its
		// tags; register, when the holder has one, saves it again with
		// them.
		create   func(c nodetest.Client, name, tags string) string
		register func(c nodetest.Client, name, tags string) (int, string)
	}{
		{"schedule", func(c nodetest.Client, name, tags string) string {
			done(c, "POST", "/api/scheduler/schedules", schedule(name, tags))
			return "/api/scheduler/schedules/" + name + "/tags"
		}, func(c nodetest.Client, name, tags string) (int, string) {
			return c.Do("POST", "/api/scheduler/schedules", schedule(name, tags))
		}},
		{"secret", func(c nodetest.Client, name, tags string) string {
			done(c, "PUT", "/api/secrets/"+name, `"value"`)
			done(c, "PUT", "/api/secrets/"+name+"/tags", tags)
			return "/api/secrets/" + name + "/tags"
		}, nil},
		{"environment value", func(c nodetest.Client, name, tags string) string {
			done(c, "PUT", "/api/environment/"+name, `"value"`)
			done(c, "PUT", "/api/environment/"+name+"/tags", tags)
			return "/api/environment/" + name + "/tags"
		}, nil},
		{"application", func(c nodetest.Client, name, tags string) string {
			var app struct{ ID string }
			if err := json.Unmarshal([]byte(done(c, "POST", "/api/applications", `{"name":"`+name+`"}`)), &app); err != nil {
				t.Fatal(err)
			}
			done(c, "PUT", "/api/applications/"+app.ID+"/tags", tags)
			return "/api/applications/" + app.ID + "/tags"
		}, nil},
	}
	for _, h := range holders {
		for _, tc := range []struct {
			name     string
			register bool   // a registration, not a tag change
			tags     string // sent
			says     string // of the refusal; "": none
		}{
			{"registered again with the longest key and value", true, tags(taglimit.Max, "key", taglimit.MaxLen), ""},
			{"registered again with one tag more", true, tags(taglimit.Max+1, "", 0), `"tags","message":"101 tags; at most 100`},
			{"registered again with a key too long", true, tags(1, "key", taglimit.MaxLen+1), `"tags[0]","message":"key and value must be at most 1024 bytes`},
			{"registered again with each tag twice", true, twice(tags(taglimit.Max, "", 0)), ""},
			{"one tag more added", false, `[{"key":"more","value":"v"}]`, `would have 101 tags; at most 100`},
			{"a value too long added", false, tags(1, "value", taglimit.MaxLen+1), `key and value must be at most 1024 bytes`},
		} {
			if tc.register && h.register == nil {
				continue
			}
			t.Run(h.name+"/"+tc.name, func(t *testing.T) {
				c := nodetest.Client{TB: t, Base: base, Token: token}
				name := strings.ReplaceAll(h.name+" "+tc.name, " ", "_")
				path := h.create(c, name, tags(taglimit.Max, "", 0))
				status, body := 0, ""
				if tc.register {
					status, body = h.register(c, name, tc.tags)
				} else {
					status, body = c.Do("PUT", path, tc.tags)
				}
				switch {
				case tc.says == "" && status/100 != 2:
					t.Fatalf("refused: %d %.300s", status, body)
				case tc.says != "" && (status != http.StatusBadRequest || !strings.Contains(body, tc.says)):
					t.Fatalf("%d %.300s, want 400 saying %s", status, body, tc.says)
				}
				var got []conductor.Tag
				if err := json.Unmarshal([]byte(done(c, "GET", path, "")), &got); err != nil {
					t.Fatal(err)
				}
				if len(got) != taglimit.Max {
					t.Fatalf("%d tags, want %d", len(got), taglimit.Max)
				}
				for _, tag := range got {
					if tc.says != "" && (len(tag.Key) > 3 || len(tag.Value) > 1) {
						t.Fatalf("the refused change was applied: tag %.20s…:%.20s…", tag.Key, tag.Value)
					}
				}
			})
		}
	}
}

// A tag stored before the limits (a key of 2,000 bytes, appended to the
// log as such a write appended it) is removed by naming it exactly: only
// additions are held to the limits; a schedule's removal was refused (400,
// key too long) and the tag could not go. A tag change that changes
// nothing appends nothing: a schedule's subject got a record for each PUT
// of the tags it had.
func TestTagRemovalAndNoOpOverHTTP(t *testing.T) {
	t.Parallel()
	n, base, token := nodetest.StartSecure(t)
	ctx := testutil.Context(t, time.Minute)
	// done sends a request that must succeed, for the test or subtest t.
	done := func(t *testing.T, method, path, body string) string {
		t.Helper()
		status, out := nodetest.Client{TB: t, Base: base, Token: token}.Do(method, path, body)
		if status/100 != 2 {
			t.Fatalf("%s %s = %d %.300s", method, path, status, out)
		}
		return out
	}
	old := schemas.DefTag{Key: strings.Repeat("k", 2*taglimit.MaxLen), Value: "v"}
	oldSecret := schemas.SecretTag(old)
	holders := []struct {
		name string
		// create makes the holder and answers its tags' path and subject.
		create func(t *testing.T, name string) (path, subject string)
		// stored is the event a write made before the limits.
		stored func(name, id string) schemas.Event
	}{
		{"schedule", func(t *testing.T, name string) (string, string) {
			done(t, "POST", "/api/scheduler/schedules", `{"name":"`+name+`","cronExpression":"0 0 0 * * ?","startWorkflowRequest":{"name":"w"}}`)
			return "/api/scheduler/schedules/" + name + "/tags", scheduler.Subject(name)
		}, func(string, string) schemas.Event { return &schemas.ScheduleTagsSet{Tags: []schemas.DefTag{old}} }},
		{"secret", func(t *testing.T, name string) (string, string) {
			done(t, "PUT", "/api/secrets/"+name, `"value"`)
			return "/api/secrets/" + name + "/tags", secrets.SecretSubject(name)
		}, func(name, _ string) schemas.Event {
			return &schemas.SecretTagsSet{Name: name, Tags: []schemas.SecretTag{oldSecret}}
		}},
		{"environment value", func(t *testing.T, name string) (string, string) {
			done(t, "PUT", "/api/environment/"+name, `"value"`)
			return "/api/environment/" + name + "/tags", secrets.EnvSubject(name)
		}, func(name, _ string) schemas.Event {
			return &schemas.EnvTagsSet{Name: name, Tags: []schemas.SecretTag{oldSecret}}
		}},
		{"application", func(t *testing.T, name string) (string, string) {
			var app struct{ ID string }
			if err := json.Unmarshal([]byte(done(t, "POST", "/api/applications", `{"name":"`+name+`"}`)), &app); err != nil {
				t.Fatal(err)
			}
			return "/api/applications/" + app.ID + "/tags", auth.AppSubject(app.ID)
		}, func(_, id string) schemas.Event {
			return &schemas.ApplicationTagsSet{ID: id, Tags: []schemas.DefTag{old}}
		}},
		{"workflow", func(t *testing.T, name string) (string, string) {
			done(t, "PUT", "/api/metadata/workflow", `[{"name":"`+name+`","tasks":[{"name":"t","taskReferenceName":"r"}]}]`)
			return "/api/metadata/workflow/" + name + "/tags", metadata.WorkflowSubject(name)
		}, func(name, _ string) schemas.Event {
			return &schemas.DefTagsSet{Kind: schemas.DefKindWorkflow, Name: name, Tags: []schemas.DefTag{old}}
		}},
	}
	records := func(t *testing.T, subject string) int {
		t.Helper()
		recs, err := n.Log().ReadSubject(ctx, subject, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	for _, h := range holders {
		t.Run(h.name, func(t *testing.T) {
			name := "tagends_" + strings.ReplaceAll(h.name, " ", "_")
			path, subject := h.create(t, name)
			id := strings.TrimSuffix(strings.TrimPrefix(path, "/api/applications/"), "/tags")
			env, err := schemas.Default.Encode(h.stored(name, id))
			if err != nil {
				t.Fatal(err)
			}
			env.ID = rand.Text()
			last, err := n.Log().LastSeq(ctx, subject)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := n.Log().Append(ctx, subject, []schemas.Envelope{env}, last); err != nil {
				t.Fatal(err)
			}
			// Appended behind the API's back: the removal must find it in
			// the read model, or it is checked against a revision the log
			// has passed and answered 409, send it again.
			// A read while the read model applies it may be answered 409
			// (the holder changed while the access was checked), to send
			// again.
			testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
				status, got := nodetest.Client{TB: t, Base: base, Token: token}.Do("GET", path, "")
				switch {
				case status == http.StatusConflict:
					return fmt.Errorf("read while it changed: %.100s", got)
				case status/100 != 2:
					t.Fatalf("GET %s = %d %.300s", path, status, got)
				case !strings.Contains(got, old.Key):
					return fmt.Errorf("the old tag is not read yet: %.100s", got)
				}
				return nil
			})
			oldJSON, _ := json.Marshal([]conductor.Tag{{Key: old.Key, Value: old.Value}})
			done(t, "DELETE", path, string(oldJSON))
			if got := done(t, "GET", path, ""); got != "[]" {
				t.Fatalf("tags after removing the old one: %.100s", got)
			}

			done(t, "PUT", path, `[{"key":"team","value":"a"}]`)
			before := records(t, subject)
			done(t, "PUT", path, `[{"key":"team","value":"a"}]`)
			if after := records(t, subject); after != before {
				t.Fatalf("the same tags PUT again appended %d records", after-before)
			}
		})
	}
}
