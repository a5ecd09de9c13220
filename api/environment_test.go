package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/audit"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A refused PUT answers the same whether the variable exists or not:
// naming the access that was missing (UPDATE or CREATE) would tell.
func TestEnvironmentPutRefusalHidesExistence(t *testing.T) {
	t.Parallel()
	_, base, adminToken := nodetest.StartSecure(t)
	admin := &http.Client{Transport: withToken(adminToken)}
	u := base + "/api/environment/"
	call(t, admin, "PUT", u+"present", textPlain, "v").expectEmptyOK(t)
	_, _, _, token := newApp(t, client{t: t, base: base, token: adminToken}, "writer")
	writer := &http.Client{Transport: withToken(token)}

	messages := map[string]string{}
	for _, name := range []string{"present", "absent"} {
		e := call(t, writer, "PUT", u+name, textPlain, "w").expectError(t, http.StatusForbidden, "may not write environment variable "+name)
		msg, _ := e["message"].(string)
		messages[name] = strings.ReplaceAll(msg, name, "NAME")
	}
	if got, want := messages["absent"], messages["present"]; got != want {
		t.Errorf("refusal for a new name %q differs from the one for an existing name %q", got, want)
	}
	// Neither refused request wrote anything.
	call(t, admin, "GET", u+"present", "", "").expectText(t, "v")
	call(t, admin, "GET", u+"absent", "", "").expectError(t, http.StatusNotFound, "not found")
	// The trail, for admins, keeps what the answer leaves out.
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		trail := decode[audit.Result](t, call(t, admin, "GET", base+"/api/audit", "", "").expect(t, http.StatusOK).body)
		got := map[string]string{}
		for _, e := range trail.Entries {
			if e.Action == audit.ActAccessDeny {
				got[e.Target] = e.Detail["access"]
			}
		}
		if got["ENV_VARIABLE:present"] != "UPDATE" || got["ENV_VARIABLE:absent"] != "CREATE" {
			return fmt.Errorf("denials in the trail: %v", got)
		}
		return nil
	})
}

// DELETE answers with the deleted value, so it is a read: the trail has
// it, recorded before the answer; a read that cannot be recorded is
// refused (503) and deletes nothing.
func TestEnvironmentDeleteRecordsRead(t *testing.T) {
	t.Parallel()
	n, base, adminToken := nodetest.StartSecure(t)
	admin := &http.Client{Transport: withToken(adminToken)}
	u := base + "/api/environment/"
	call(t, admin, "PUT", u+"region", textPlain, "eu-west-1").expectEmptyOK(t)
	call(t, admin, "DELETE", u+"region", "", "").expectText(t, "eu-west-1")

	trail := decode[audit.Result](t, call(t, admin, "GET", base+"/api/audit?env=region", "", "").expect(t, http.StatusOK).body)
	got := map[string]int{}
	for _, e := range trail.Entries {
		got[e.Action+" "+e.Principal+" "+e.Target]++
	}
	for _, want := range []string{
		"env.put app:bootstrap-admin ENV_VARIABLE:region",
		"env.read app:bootstrap-admin ENV_VARIABLE:region",
		"env.delete app:bootstrap-admin ENV_VARIABLE:region",
	} {
		if got[want] != 1 {
			t.Errorf("trail has %d entries %q, want 1; trail: %v", got[want], want, got)
		}
	}
	if len(trail.Entries) != 3 {
		t.Errorf("trail has %d entries, want 3: %v", len(trail.Entries), got)
	}

	// Audit facts over FV_AUDIT's message size limit cannot be appended.
	call(t, admin, "PUT", u+"zone", textPlain, "z1").expectEmptyOK(t)
	setAuditMaxMsgSize(t, n.Log().JetStream(), 1)
	call(t, admin, "DELETE", u+"zone", "", "").expectError(t, http.StatusServiceUnavailable, "record audit fact")
	if v, err := n.Environment().Get(context.Background(), "zone"); err != nil || v != "z1" {
		t.Fatalf("after a refused DELETE, zone = %q, %v; want it kept", v, err)
	}
	setAuditMaxMsgSize(t, n.Log().JetStream(), -1)
	call(t, admin, "DELETE", u+"zone", "", "").expectText(t, "z1")
}

// setAuditMaxMsgSize sets the FV_AUDIT stream's message size limit (-1:
// none); 1 byte makes every audit fact fail to append.
func setAuditMaxMsgSize(t *testing.T, js jetstream.JetStream, size int32) {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, "FV_AUDIT")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxMsgSize = size
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("update FV_AUDIT: %v", err)
	}
}
