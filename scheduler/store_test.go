package scheduler

import (
	"context"
	"errors"
	"testing"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A user's pause reason cannot pass for the firer's security pause ("Security
// Error: …", by flowvault), however it is spaced, cased, punctuated,
// accented or spelled in look-alike letters; any other reason is kept as
// given.
func TestPauseReasonCannotPassForSecurityPause(t *testing.T) {
	tests := []struct {
		reason  string
		refused bool
	}{
		{"Security Error: alice may not EXECUTE w", true},
		{"Security Error", true},
		{"security error: lost access", true},
		{"  SECURITY-ERROR", true},
		{"\u200bSecurity\u00a0Error: spoofed", true},
		{"[Security] Error", true},
		{"Sécurity Érror", true},
		{"\uff33ecurity Error", true},           // full-width S
		{"\U0001d412ecurity Error", true},       // mathematical bold S
		{"\u0405\u0435\u0441urity Error", true}, // Cyrillic Ѕ, е, с
		{"Secur\u0456t\u0443 \u0435rr\u043er", true},
		{"\u0421afe to pause", false}, // a Cyrillic С elsewhere changes nothing
		{"maintenance window", false},
		{"Security review pending", false},
		{"Securit Error", false},
		{"", false},
	}
	ctx := context.Background()
	s, _ := newTestStore(t)
	def := &conductor.WorkflowSchedule{Name: "nightly", CronExpression: "0 0 0 * * ?",
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "w"}}
	if err := s.Save(ctx, def, "alice", nil); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			if err := s.SetPaused(ctx, "nightly", false, "", "alice"); err != nil {
				t.Fatal(err)
			}
			err := s.SetPaused(ctx, "nightly", true, tt.reason, "alice")
			st, lerr := s.load(ctx, "nightly")
			if lerr != nil {
				t.Fatal(lerr)
			}
			if !tt.refused {
				if err != nil || !st.Def.Paused || st.Def.PausedReason != tt.reason {
					t.Fatalf("err %v; paused %v with %q, want paused with the reason given", err, st.Def.Paused, st.Def.PausedReason)
				}
				return
			}
			var ve *fault.ValidationError
			if !errors.Is(err, fault.ErrInvalid) || !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Path != "reason" {
				t.Fatalf("err %v, want a validation error on reason", err)
			}
			if st.Def.Paused || st.Def.PausedReason != "" {
				t.Fatalf("refused, yet paused %v with %q", st.Def.Paused, st.Def.PausedReason)
			}
		})
	}
}
