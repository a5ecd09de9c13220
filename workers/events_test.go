package workers_test

import (
	"strings"
	"testing"

	"github.com/flowvault/flowvault/workers"
)

func TestCheckEventSubject(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		subject   string
		wildcards bool
		ok        bool
	}{
		{"orders.created", false, true},
		{"orders", false, true},
		{"orders.*", false, false},
		{"orders.>", false, false},
		{"orders.*.eu", true, true},
		{"orders.>", true, true},
		{"orders.>.eu", true, false},
		{">", true, false},
		{"*.created", true, false},
		{"", false, false},
		{"orders..created", false, false},
		{"orders.created.", false, false},
		{"orders created", false, false},
		{"orders.\tcreated", false, false},
		{"orders.\u00a0created", false, false},
		{">\u00a0q", true, false},
		{"orders.>\u2003q", true, false},
		{"orders.caf\u00e9", false, true},
		{"fv.wf.x", false, false},
		{"fv.cmd.start.w.p", false, false},
		{"fv.>", true, false},
		{"fvx.created", false, true},
		{"$JS.API.STREAM.NAMES", false, false},
		{"$SYS.>", true, false},
		{"_INBOX.x", false, false},
		{"_INBOX_UABC.>", true, false},
		{"_R_.x", false, false},
		{"orders." + strings.Repeat("x", workers.MaxEventSubject-7), false, true},
		{"orders." + strings.Repeat("x", workers.MaxEventSubject-6), false, false},
		{"orders." + strings.Repeat("x", 5000) + ".>", true, false},
	} {
		err := workers.CheckEventSubject(tt.subject, tt.wildcards)
		if (err == nil) != tt.ok {
			t.Errorf("CheckEventSubject(%.40q, %v) = %.80v, want ok %v", tt.subject, tt.wildcards, err, tt.ok)
		}
	}
}
