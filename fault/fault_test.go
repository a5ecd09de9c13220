package fault_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/flowvault/flowvault/fault"
)

func TestMessage(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fault.Conflict("definition w changed"), "definition w changed"},
		{fmt.Errorf("store w: %w", fault.ErrUnavailable), "store w: unavailable"},
		{&fault.ValidationError{Fields: []fault.FieldError{{Path: "name", Message: "is required"}}}, (&fault.ValidationError{Fields: []fault.FieldError{{Path: "name", Message: "is required"}}}).Error()},
		{errors.New("append fv.meta.wf.w: nats: no responders on $JS.API"), "internal error"},
		{fmt.Errorf("open /var/lib/flowvault/x: %w", errors.New("permission denied")), "internal error"},
	} {
		if got := fault.Message(tt.err); got != tt.want {
			t.Errorf("Message(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// A stale write is a conflict a client may send again: both kinds hold,
// and its message reads without them.
func TestStale(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("write: %w", fault.Stale("definition %s changed", "w"))
	if !errors.Is(err, fault.ErrConflict) || !errors.Is(err, fault.ErrStale) {
		t.Errorf("%v is not both a conflict and stale", err)
	}
	if got := fault.Message(err); got != "write: definition w changed" {
		t.Errorf("Message = %q", got)
	}
	if got := fault.Kind(err); got != "conflict" {
		t.Errorf("Kind = %q", got)
	}
	if errors.Is(fault.Conflict("x"), fault.ErrStale) {
		t.Errorf("a plain conflict is stale")
	}
}

// A refusal is what the sender can mend; a server's own failure, a 503
// included, is not.
func TestRefused(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{fault.Invalid("start workflow w: its correlationId holds a sealed value"), true},
		{fmt.Errorf("start: %w", fault.Stale("definition w changed")), true},
		{fault.SecretInName("a task would be named with a value"), true},
		{fault.RateLimited("too many"), true},
		{fmt.Errorf("seal: %w", fault.ErrForbidden), true},
		{fmt.Errorf("seal: %w", fault.ErrUnavailable), false},
		{errors.New("seal: nats: timeout"), false},
	} {
		if got := fault.Refused(tt.err); got != tt.want {
			t.Errorf("Refused(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
