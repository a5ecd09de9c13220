package audit

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
)

// appended is a fake log: it keeps what was appended, or fails.
type appended struct {
	mu   sync.Mutex
	fail error
	recs []string // "<subject> <type> <principal>"
}

func (a *appended) Append(_ context.Context, subject string, evs []schemas.Envelope, _ uint64, _ ...eventlog.AppendOption) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		return 0, a.fail
	}
	for _, e := range evs {
		a.recs = append(a.recs, subject+" "+e.Type+" "+e.Principal)
	}
	return uint64(len(a.recs)), nil
}

func denied(id string) *schemas.AccessDenied {
	return &schemas.AccessDenied{TargetType: "SECRET_NAME", TargetID: id, Reason: "no grant", Method: "GET", Path: "/api/secrets/" + id, Addr: "10.0.0.1"}
}

// Refusals over a client's limit are counted, and the count is recorded
// ahead of the next refusal that is; clients have their own limits.
func TestRecorderRefusals(t *testing.T) {
	t.Parallel()
	log := &appended{}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := NewRecorder(log, RecorderConfig{Limits: RefusalLimits{PerAddr: 1e-9, AddrBurst: 2, All: 1e-9, AllBurst: 4},
		Now: func() time.Time { return now }})
	for i := range 5 {
		r.Refused("10.0.0.1", "app:a", denied("s"+string(rune('0'+i))))
	}
	r.Refused("10.0.0.2", "", &schemas.AuthFailed{Code: "INVALID_TOKEN", Method: "GET", Path: "/api/x", Addr: "10.0.0.2"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Run(ctx) // stopped: appends what is queued, then the count
	want := []string{
		"fv.audit.dropped audit.refusals_dropped ",
		"fv.audit.denied.SECRET_NAME.s0 audit.access_denied app:a",
		"fv.audit.denied.SECRET_NAME.s1 audit.access_denied app:a",
		"fv.audit.auth.failed audit.auth_failed ",
	}
	if !slices.Equal(log.recs, want) {
		t.Fatalf("appended:\n%q\nwant\n%q", log.recs, want)
	}
	// New clients are within their own limits but not the global one
	// (burst 4, three spent): x is recorded, y only counted (and the count
	// goes ahead of x).
	r.Refused("10.0.0.3", "", denied("x"))
	r.Refused("10.0.0.4", "", denied("y"))
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	r.Run(ctx)
	if got := log.recs[len(want):]; !slices.Equal(got, []string{"fv.audit.dropped audit.refusals_dropped ", "fv.audit.denied.SECRET_NAME.x audit.access_denied "}) {
		t.Fatalf("past the global limit: %q", got)
	}
}

// A read is answered only once its record is stored: a failed append is
// an unavailable-error, for the handler to refuse the read.
func TestRecorderRecordFailsClosed(t *testing.T) {
	t.Parallel()
	log := &appended{}
	r := NewRecorder(log, RecorderConfig{})
	read := &schemas.SecretRead{Name: "db", Version: 2, Fingerprint: "hmac-sha256:ab"}
	if err := r.Record(context.Background(), "alice", read); err != nil {
		t.Fatal(err)
	}
	log.fail = errors.New("stream full")
	if err := r.Record(context.Background(), "alice", read); !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("Record on a failing log = %v, want ErrUnavailable", err)
	}
	if err := r.Record(context.Background(), "alice", &schemas.TaskStarted{}); err == nil {
		t.Fatal("a workflow event recorded as an audit fact")
	}
	if want := []string{"fv.audit.secret.db audit.secret_read alice"}; !slices.Equal(log.recs, want) {
		t.Fatalf("appended %q, want %q", log.recs, want)
	}
}

// Text a refusal's record keeps is cut at MaxText bytes, never inside a
// character: the record would hold invalid UTF-8.
func TestBounded(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want string
	}{
		{"short", "short"},
		{strings.Repeat("a", MaxText), strings.Repeat("a", MaxText)},
		{strings.Repeat("a", MaxText+1), strings.Repeat("a", MaxText) + "…"},
		{"a" + strings.Repeat("é", MaxText), "a" + strings.Repeat("é", (MaxText-1)/2) + "…"},
	} {
		if got := Bounded(tt.in); got != tt.want || !utf8.ValidString(got) {
			t.Errorf("Bounded(%d bytes) = %d bytes %q", len(tt.in), len(got), got)
		}
	}
}
