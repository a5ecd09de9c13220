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

// A suppressed probe that fails (the store at its bound, which a restart
// does not cure) is listed failed in suppressedHealthResults, with its
// error to an administrator alone, and /health still answers 200 healthy:
// an orchestrator restarting or rerouting on it would only make it worse.
// The other probes still decide.
func TestSuppressedProbeFailsNothing(t *testing.T) {
	t.Parallel()
	const cause = "embedded nats: the store holds 17000000 bytes, over its bound of 16777216"
	tokens := tokenPrincipals{
		"admin-token": {ID: "app:ops", Roles: []string{auth.RoleAdmin}},
		"user-token":  {ID: "user@example.com", Roles: []string{auth.RoleUser}},
	}
	fails := func(context.Context) error { return errors.New(cause) }
	passes := func(context.Context) error { return nil }
	for _, tc := range []struct {
		name     string
		nats     func(context.Context) error
		token    string
		status   int
		detail   bool
		healthy  bool
		insecure bool
	}{
		{name: "no token", nats: passes, status: http.StatusOK, healthy: true},
		{name: "a user", nats: passes, token: "user-token", status: http.StatusOK, healthy: true},
		{name: "an administrator", nats: passes, token: "admin-token", status: http.StatusOK, healthy: true, detail: true},
		{name: "insecure dev mode", nats: passes, insecure: true, status: http.StatusOK, healthy: true, detail: true},
		{name: "another probe failing too", nats: fails, token: "admin-token", status: http.StatusServiceUnavailable, detail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logger, logs := testutil.CapturingLogger()
			checks := []api.Check{{Name: "nats", Probe: tc.nats}, {Name: "storage", Suppressed: true, Probe: fails}}
			srv := httptest.NewServer(api.New(api.Deps{Logger: logger, Checks: checks, Tokens: tokens, Insecure: tc.insecure}))
			t.Cleanup(srv.Close)
			got := client{t, srv.URL, tc.token}.do("GET", "/health", "")
			type result struct {
				Name    string  `json:"name"`
				Healthy bool    `json:"healthy"`
				Error   *string `json:"errorMessage"`
			}
			var body struct {
				HealthResults           []result `json:"healthResults"`
				SuppressedHealthResults []result `json:"suppressedHealthResults"`
				Healthy                 bool     `json:"healthy"`
			}
			if err := json.Unmarshal([]byte(got.body), &body); err != nil || got.status != tc.status || body.Healthy != tc.healthy ||
				len(body.HealthResults) != 1 || body.HealthResults[0].Name != "nats" ||
				len(body.SuppressedHealthResults) != 1 || body.SuppressedHealthResults[0].Name != "storage" || body.SuppressedHealthResults[0].Healthy {
				t.Fatalf("GET /health = %d %s (%v); want %d, healthy %v, storage failed among the suppressed", got.status, got.body, err, tc.status, tc.healthy)
			}
			if e := body.SuppressedHealthResults[0].Error; (e != nil && *e == cause) != tc.detail || (e != nil && *e != cause) {
				t.Fatalf("GET /health = %s: the storage probe's error shown %v, want %v", got.body, e != nil, tc.detail)
			}
			if !strings.Contains(logs.String(), cause) {
				t.Fatalf("the suppressed probe's error is not logged: %s", logs)
			}
		})
	}
}
