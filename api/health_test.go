package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/testutil"
)

// /health asks for no token: a failed probe's error (here naming the data
// dir) is logged, and answered to an administrator alone. Anyone else
// reads which probe failed, and the 503 load balancers read.
func TestHealthShowsProbeErrorsToAdministrators(t *testing.T) {
	t.Parallel()
	const cause = "data dir /var/lib/flowvault/data: lock file replaced"
	checks := []api.Check{
		{Name: "nats", Probe: func(context.Context) error { return nil }},
		{Name: "data dir", Probe: func(context.Context) error { return errors.New(cause) }},
	}
	tokens := tokenPrincipals{
		"admin-token": {ID: "app:ops", Roles: []string{auth.RoleAdmin}},
		"user-token":  {ID: "user@example.com", Roles: []string{auth.RoleUser}},
	}
	for _, tc := range []struct {
		name     string
		insecure bool
		token    string
		detail   bool
	}{
		{"no token", false, "", false},
		{"a token that does not authenticate", false, "forged", false},
		{"a user", false, "user-token", false},
		{"an administrator", false, "admin-token", true},
		{"insecure dev mode", true, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logger, logs := testutil.CapturingLogger()
			srv := httptest.NewServer(api.New(api.Deps{Logger: logger, Checks: checks, Tokens: tokens, Insecure: tc.insecure}))
			t.Cleanup(srv.Close)
			for _, path := range []string{"/health", "/api/health"} {
				got := client{t, srv.URL, tc.token}.do("GET", path, "")
				var body struct {
					HealthResults []struct {
						Name    string  `json:"name"`
						Healthy bool    `json:"healthy"`
						Error   *string `json:"errorMessage"`
					} `json:"healthResults"`
					Healthy bool `json:"healthy"`
				}
				if err := json.Unmarshal([]byte(got.body), &body); err != nil || got.status != http.StatusServiceUnavailable ||
					body.Healthy || len(body.HealthResults) != 2 || body.HealthResults[0].Name != "nats" ||
					!body.HealthResults[0].Healthy || body.HealthResults[0].Error != nil ||
					body.HealthResults[1].Name != "data dir" || body.HealthResults[1].Healthy {
					t.Fatalf("GET %s = %d %s (%v), want 503 naming each probe and its outcome", path, got.status, got.body, err)
				}
				if shown := strings.Contains(got.body, cause); shown != tc.detail {
					t.Fatalf("GET %s = %s: the probe's error shown %v, want %v", path, got.body, shown, tc.detail)
				}
			}
			if !strings.Contains(logs.String(), cause) {
				t.Fatalf("the probe's error is not logged: %s", logs)
			}
		})
	}
}
