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
