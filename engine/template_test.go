package engine_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A registered task definition's inputTemplate is code from its author,
// not from the workflow's: when the keys it gives a task reference secrets
// or environment values, its author joins those the workflow runs as (so
// the reference resolves only if the author may read it too); it may not
// read the workflow's _secrets or _masked data at all. What the task's
// own inputParameters say stays the workflow's; a key they give as null
// is the template's.
func TestRegisteredTemplatesRunAsTheirAuthor(t *testing.T) {
	const flow = `{"name":"f","tasks":[
		{"name":"fetch","taskReferenceName":"fetch","inputParameters":{"_secrets":{"token":"${workflow.input.token}"}}},
		{"name":"call","taskReferenceName":"call","inputParameters":{"given":"${workflow.secrets.mine}","unset":null}}]}`
	for _, tc := range []struct {
		name     string
		template string
		joins    bool
		fails    string
	}{
		{name: "plain values", template: `{"region":"eu","n":"${workflow.input.n}"}`},
		{name: "a secret", template: `{"key":"${workflow.secrets.prod_api_key}"}`, joins: true},
		{name: "a secret embedded deep", template: `{"http_request":{"body":{"stolen":"x ${workflow.secrets.prod_api_key}"}}}`, joins: true},
		{name: "an environment value", template: `{"region":"${workflow.env.region}"}`, joins: true},
		{name: "a key the task gives itself", template: `{"given":"${workflow.secrets.prod_api_key}"}`},
		{name: "a secret for a key the task gives as null", template: `{"unset":"${workflow.secrets.prod_api_key}"}`, joins: true},
		{name: "another task's _secrets for a key the task gives as null", template: `{"unset":"${fetch.output._secrets.token}"}`,
			fails: "may not read the workflow's _secrets"},
		{name: "another task's _secrets", template: `{"t":"${fetch.output._secrets.token}"}`, fails: "may not read the workflow's _secrets"},
		{name: "another task's _secrets embedded", template: `{"t":"Bearer ${fetch.output._secrets.token}"}`, fails: "may not read the workflow's _secrets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, flow, map[string]any{"token": "tok-0123456789", "n": 1},
				`{"name":"call","updatedBy":"app:mallory","inputTemplate":`+tc.template+`}`)
			// As the executor's protection leaves it: sealed.
			h.complete("fetch", map[string]any{"_secrets": map[string]any{
				"token": &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/wf-1/task/fetch/output._secrets.token", Ciphertext: []byte{1}}}})
			call := h.task("call")
			if tc.fails != "" {
				if call.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(call.Reason, tc.fails) {
					t.Fatalf("call is %s (%q), want it failed: %s", call.Status, call.Reason, tc.fails)
				}
				return
			}
			if call.Status != conductor.TaskScheduled {
				t.Fatalf("call is %s (%q)", call.Status, call.Reason)
			}
			if joined := slices.Contains(h.w.Principals(), "app:mallory"); joined != tc.joins {
				t.Fatalf("the template's author among those the workflow runs as: %t, want %t (%v)", joined, tc.joins, h.w.Principals())
			}
		})
	}
}

// A task definition's inputTemplate gives a task each key its
// inputParameters leave out or give as null, evaluated, as Conductor's
// getTaskInputV2 merges it (putIfAbsent, which fills a null too); a key
// whose expression reads null takes the template's value as written,
// as Conductor's does.
func TestTaskInputTemplateFillsWhatTheTaskLacks(t *testing.T) {
	const template = `{"name":"t","inputTemplate":{"region":"${workflow.input.region}","tier":"gold"}}`
	for _, tc := range []struct {
		name, params string
		want         any
	}{
		{"absent", `{}`, "eu"},
		{"null", `{"region":null}`, "eu"},
		{"given", `{"region":"us"}`, "us"},
		{"given empty", `{"region":""}`, ""},
		{"given false", `{"region":false}`, false},
		{"reads null", `{"region":"${workflow.input.missing}"}`, "${workflow.input.region}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, `{"name":"w","tasks":[{"name":"t","taskReferenceName":"t","inputParameters":`+tc.params+`}]}`,
				map[string]any{"region": "eu"}, template)
			in := h.wantTask("t", conductor.TaskScheduled).Input
			if in["region"] != tc.want || in["tier"] != "gold" {
				t.Fatalf("input %#v, want region %#v and tier gold", in, tc.want)
			}
		})
	}
}
