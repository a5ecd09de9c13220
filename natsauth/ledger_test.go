package natsauth_test

import (
	"errors"
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// The read model of issued and revoked credentials, and the revocation
// list the server gets from it, record by record.
func TestLedger(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_800_000_000_000)
	hour := int64(3600)
	issued := func(user, by string, expires int64) *schemas.WorkerCredentialsIssued {
		return &schemas.WorkerCredentialsIssued{User: user, By: by, TaskTypes: []string{"t"}, Expires: expires, Time: now.UnixMilli() - 1000}
	}
	revoked := func(user, by string, at int64) *schemas.WorkerCredentialsRevoked {
		return &schemas.WorkerCredentialsRevoked{User: user, By: by, Time: at}
	}
	for _, tt := range []struct {
		name    string
		records [][]schemas.Event
		subject string // of every record; AuditSubject when empty
		listed  []string
		revoked map[string]int64
		// unrevoked: the users whose credentials still work, not revoked
		unrevoked []string
	}{
		{name: "issued", records: [][]schemas.Event{{issued("UA", "app:a", now.Unix()+hour)}},
			listed: []string{"UA"}, revoked: map[string]int64{}, unrevoked: []string{"UA"}},
		{name: "revoked until its expiry", records: [][]schemas.Event{
			{issued("UA", "app:a", now.Unix()+hour), issued("UB", "app:a", now.Unix()+hour)},
			{revoked("UA", "app:b", now.UnixMilli())}},
			listed: []string{"UA", "UB"}, revoked: map[string]int64{"UA": now.Unix() + hour}, unrevoked: []string{"UB"}},
		{name: "expired ones leave the list", records: [][]schemas.Event{
			{issued("UA", "app:a", now.Unix())}, {revoked("UA", "app:a", now.UnixMilli()-10)}},
			listed: []string{"UA"}, revoked: map[string]int64{}},
		{name: "expired at now, a second before or after", records: [][]schemas.Event{
			{issued("UA", "app:a", now.Unix()), issued("UB", "app:a", now.Unix()-1), issued("UC", "app:a", now.Unix()+1)},
			{issued("UD", "app:a", now.Unix()-1), issued("UE", "app:a", now.Unix()+1), issued("UF", "app:a", 0)},
			{revoked("UD", "app:a", 1), revoked("UE", "app:a", 1), revoked("UF", "app:a", 1)}},
			listed: []string{"UA", "UB", "UC", "UD", "UE", "UF"}, revoked: map[string]int64{"UE": now.Unix() + 1, "UF": math.MaxInt64},
			unrevoked: []string{"UC"}},
		{name: "never expires", records: [][]schemas.Event{{issued("UA", "app:a", 0)}},
			listed: []string{"UA"}, revoked: map[string]int64{}, unrevoked: []string{"UA"}},
		{name: "revoked without issuance: every JWT refused, not listed", records: [][]schemas.Event{
			{revoked("UX", "app:a", now.UnixMilli())}},
			revoked: map[string]int64{"UX": math.MaxInt64}},
		{name: "issuance after its revocation keeps it", records: [][]schemas.Event{
			{revoked("UA", "app:a", now.UnixMilli())}, {issued("UA", "app:a", now.Unix()+hour)}},
			listed: []string{"UA"}, revoked: map[string]int64{"UA": now.Unix() + hour}},
		{name: "issuance after its revocation, expired", records: [][]schemas.Event{
			{revoked("UA", "app:a", now.UnixMilli())}, {issued("UA", "app:a", now.Unix()-1)}},
			listed: []string{"UA"}, revoked: map[string]int64{}},
		{name: "revoked twice, issued twice: one entry", records: [][]schemas.Event{
			{issued("UA", "app:a", now.Unix()+hour)}, {revoked("UA", "app:a", now.UnixMilli())},
			{revoked("UA", "app:b", now.UnixMilli()+1)}, {issued("UA", "app:a", now.Unix()+hour)}},
			listed: []string{"UA"}, revoked: map[string]int64{"UA": now.Unix() + hour}},
		{name: "other subjects are not the ledger's", subject: "fv.audit.auth.token", records: [][]schemas.Event{
			{issued("UA", "app:a", now.Unix()+hour)}, {revoked("UA", "app:a", now.UnixMilli())}},
			revoked: map[string]int64{}},
		{name: "other facts on the subject are skipped", records: [][]schemas.Event{
			{&schemas.TokenRefused{KeyID: "k", Reason: "x"}, issued("UA", "app:a", now.Unix()+hour)}},
			listed: []string{"UA"}, revoked: map[string]int64{}, unrevoked: []string{"UA"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store := testutil.OpenStore(t)
			subject := tt.subject
			if subject == "" {
				subject = natsauth.AuditSubject
			}
			for i, evs := range tt.records {
				rec := testutil.Record(t, subject, uint64(i+1), evs...)
				if err := store.Update(natsauth.ProjectionName, func(b *projections.Batch) error { return natsauth.Projection{}.Apply(b, rec) }); err != nil {
					t.Fatal(err)
				}
			}
			l := natsauth.NewLedger(store)
			list, err := l.List(func(natsauth.Issued) bool { return true })
			if err != nil {
				t.Fatal(err)
			}
			var users []string
			for _, c := range list {
				users = append(users, c.User)
			}
			slices.Sort(users)
			if !slices.Equal(users, tt.listed) {
				t.Fatalf("listed %v, want %v", users, tt.listed)
			}
			got, err := l.Revoked(now)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.revoked) {
				t.Fatalf("revocation list %v, want %v", got, tt.revoked)
			}
			live, err := l.Unrevoked(now)
			if err != nil {
				t.Fatal(err)
			}
			users = nil
			for _, c := range live {
				if c.RevokedAt != 0 || c.Expired(now) || c.IssuedAt == 0 {
					t.Fatalf("unrevoked %+v", c)
				}
				users = append(users, c.User)
			}
			slices.Sort(users)
			if !slices.Equal(users, tt.unrevoked) {
				t.Fatalf("unrevoked %v, want %v", users, tt.unrevoked)
			}
		})
	}
}

// The first revocation stands; Get shows it, and misses what was never
// issued.
func TestLedgerGet(t *testing.T) {
	t.Parallel()
	store := testutil.OpenStore(t)
	recs := []eventlog.Record{
		testutil.Record(t, natsauth.AuditSubject, 1, &schemas.WorkerCredentialsIssued{User: "UA", Name: "resizer", By: "app:a", TaskTypes: []string{"resize"},
			Expires: 2_000_000_000, Time: 1_000}),
		testutil.Record(t, natsauth.AuditSubject, 2, &schemas.WorkerCredentialsRevoked{User: "UA", By: "app:b", Time: 2_000}),
		testutil.Record(t, natsauth.AuditSubject, 3, &schemas.WorkerCredentialsRevoked{User: "UA", By: "app:c", Time: 3_000}),
	}
	for _, rec := range recs {
		if err := store.Update(natsauth.ProjectionName, func(b *projections.Batch) error { return natsauth.Projection{}.Apply(b, rec) }); err != nil {
			t.Fatal(err)
		}
	}
	l := natsauth.NewLedger(store)
	c, err := l.Get("UA")
	if err != nil {
		t.Fatal(err)
	}
	want := natsauth.Issued{User: "UA", Name: "resizer", TaskTypes: []string{"resize"}, IssuedBy: "app:a", IssuedAt: 1_000,
		Expires: 2_000_000_000_000, RevokedBy: "app:b", RevokedAt: 2_000}
	if !equalIssued(c, want) {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	if _, err := l.Get("UZ"); !errors.Is(err, fault.ErrNotFound) {
		t.Fatalf("never issued: %v", err)
	}
}

func equalIssued(a, b natsauth.Issued) bool {
	return a.User == b.User && a.Name == b.Name && slices.Equal(a.TaskTypes, b.TaskTypes) && a.IssuedBy == b.IssuedBy &&
		a.IssuedAt == b.IssuedAt && a.Expires == b.Expires && a.RevokedBy == b.RevokedBy && a.RevokedAt == b.RevokedAt
}

// A record the ledger cannot decode is refused, so the runner parks it.
func TestLedgerRefusesCorruptRecords(t *testing.T) {
	t.Parallel()
	store := testutil.OpenStore(t)
	rec := testutil.Record(t, natsauth.AuditSubject, 1, &schemas.WorkerCredentialsRevoked{User: "UA", By: "x", Time: 1})
	rec.Events[0].Data = []byte{0xc1}
	err := store.Update(natsauth.ProjectionName, func(b *projections.Batch) error { return natsauth.Projection{}.Apply(b, rec) })
	if !errors.Is(err, schemas.ErrCorrupt) {
		t.Fatalf("corrupt record: %v, want schemas.ErrCorrupt", err)
	}
}

// The gate hears of commits that applied credentials' facts, and of no
// other: every notice has it read every credential issued, and the audit
// stream's other facts (a secret's every resolution) come far more often.
func TestProjectionNotifiesOfCredentialsOnly(t *testing.T) {
	t.Parallel()
	store := testutil.OpenStore(t)
	notices := 0
	p := natsauth.NewProjection(func() { notices++ })
	for i, tt := range []struct {
		subject string
		ev      schemas.Event
		want    int
	}{
		{"fv.audit.secret.resolved", &schemas.TokenRefused{KeyID: "k", Reason: "x"}, 0},
		{natsauth.AuditSubject, &schemas.WorkerCredentialsIssued{User: "UA", By: "app:a", TaskTypes: []string{"t"}, Time: 1}, 1},
		{"fv.audit.auth.token", &schemas.TokenRefused{KeyID: "k", Reason: "x"}, 1},
		{natsauth.AuditSubject, &schemas.WorkerCredentialsRevoked{User: "UA", By: "app:a", Time: 2}, 2},
	} {
		rec := testutil.Record(t, tt.subject, uint64(i+1), tt.ev)
		if err := store.Update(natsauth.ProjectionName, func(b *projections.Batch) error { return p.Apply(b, rec) }); err != nil {
			t.Fatal(err)
		}
		p.Committed(rec.Seq)
		if notices != tt.want {
			t.Fatalf("after a commit of %s: %d notices, want %d", tt.subject, notices, tt.want)
		}
	}
}
