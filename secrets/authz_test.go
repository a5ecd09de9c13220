package secrets

import (
	"context"
	"errors"
	"testing"

	"github.com/flowvault/flowvault/fault"
)

func TestDefaultAuthorizer(t *testing.T) {
	owners := map[Resource]string{
		{ResourceSecret, "mine"}: "user:ada",
		{ResourceEnv, "cfg"}:     "user:bob",
	}
	a := DefaultAuthorizer{
		Owner: func(_ context.Context, r Resource) (string, bool, error) {
			o, ok := owners[r]
			return o, ok, nil
		},
		IsAdmin: func(p string) bool { return p == "user:root" },
	}
	tests := []struct {
		principal string
		action    Action
		res       Resource
		allowed   bool
	}{
		{Anonymous, ActionDelete, Resource{ResourceSecret, "mine"}, true}, // today: every request
		{"user:root", ActionRead, Resource{ResourceSecret, "mine"}, true},
		{"user:root", ActionUpdate, Resource{ResourceSecret, AllResources}, true},
		{"user:ada", ActionRead, Resource{ResourceSecret, "mine"}, true},
		{"user:ada", ActionUpdate, Resource{ResourceSecret, "mine"}, true},
		{"user:ada", ActionDelete, Resource{ResourceSecret, "mine"}, true},
		{"user:ada", ActionCreate, Resource{ResourceSecret, "new"}, true},
		{"user:bob", ActionRead, Resource{ResourceSecret, "mine"}, false},
		{"user:ada", ActionRead, Resource{ResourceEnv, "cfg"}, false},
		{"user:bob", ActionRead, Resource{ResourceEnv, "cfg"}, true},
		{"user:ada", ActionRead, Resource{ResourceSecret, "unknown"}, false},
		{"user:ada", ActionUpdate, Resource{ResourceSecret, AllResources}, false},
	}
	for _, tt := range tests {
		err := a.Authorize(context.Background(), tt.principal, tt.action, tt.res)
		if (err == nil) != tt.allowed || (err != nil && !errors.Is(err, fault.ErrForbidden)) {
			t.Errorf("%q %s %s: %v, want allowed=%v", tt.principal, tt.action, tt.res, err, tt.allowed)
		}
	}
	if err := (DefaultAuthorizer{}).Authorize(context.Background(), "user:x", ActionRead, Resource{ResourceSecret, "s"}); !errors.Is(err, fault.ErrForbidden) {
		t.Fatalf("no owners: %v", err)
	}
}
