package workers_test

import (
	"slices"
	"testing"

	"github.com/flowvault/flowvault/workers"
)

// A poll subject says its queue: the type, and the domain when there is
// one, each one token however it is spelled.
func TestPollSubjects(t *testing.T) {
	for _, tc := range []struct{ taskType, domain string }{
		{"resize", ""},
		{"resize", "eu"},
		{"a.b", "x.y"},
		{"with space", "*>"},
	} {
		subject := workers.PollSubject(tc.taskType, tc.domain)
		typ, dom, err := workers.ParseQueueSubject(workers.PollPrefix, subject)
		if err != nil || typ != tc.taskType || dom != tc.domain {
			t.Errorf("ParsePollSubject(%q) = %q, %q, %v; want %q, %q", subject, typ, dom, err, tc.taskType, tc.domain)
		}
	}
	for _, bad := range []string{"fv.engine.poll.", "fv.engine.poll.a.", "fv.engine.poll.a.b.c", "fv.engine.take.a", "fv.engine.poll.a.%zz"} {
		if typ, dom, err := workers.ParseQueueSubject(workers.PollPrefix, bad); err == nil {
			t.Errorf("ParsePollSubject(%q) = %q, %q; want an error", bad, typ, dom)
		}
	}
}

// A worker's credentials allow polls of the queues they allow pulls from:
// its types without domain, and in each of its domains; no other domain.
func TestWorkerPermissionsPollTheirDomains(t *testing.T) {
	p := workers.WorkerPermissions([]string{"resize"}, []string{"", "eu"}, "_INBOX_U1")
	for _, s := range []string{workers.PollSubject("resize", ""), workers.PollSubject("resize", "eu")} {
		if !slices.Contains(p.Publish, s) {
			t.Errorf("%s is not allowed", s)
		}
	}
	for _, s := range p.Publish {
		if s == workers.PollSubject("resize", "us") || s == workers.PollPrefix+">" || s == workers.PollSubject("resize", "")+".>" {
			t.Errorf("%s is allowed", s)
		}
	}
}
