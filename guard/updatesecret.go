package guard

import (
	"context"
	"errors"
	"fmt"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// SecretWriter stores secret values.
type SecretWriter interface {
	Put(ctx context.Context, name string, value []byte, principal string, opts ...secrets.WriteOption) (int, error)
	Revision(ctx context.Context, name string) (secrets.Revision, error)
}

// UpdateSecret is the UPDATE_SECRET system task (Orkes): input
// {"_secrets":{"secretKey":…,"secretValue":…}} — sealed in the stored
// input, opened at hand-off — creates or updates the secret as the
// workflow's creator, who needs UPDATE on it (CREATE when it does not exist
// yet). Missing fields or a refusal fail the task for good, and with it the
// workflow. The task has no output.
type UpdateSecret struct {
	Store SecretWriter
	Authz Authorizer
}

// Execute implements executor.SystemTask.
func (u UpdateSecret) Execute(ctx context.Context, t *conductor.Task) conductor.TaskResult {
	terminal := func(format string, args ...any) conductor.TaskResult {
		return conductor.TaskResult{Status: conductor.TaskFailedWithTerminalError, ReasonForIncompletion: fmt.Sprintf(format, args...)}
	}
	in, _ := t.InputData["_secrets"].(map[string]any)
	name, _ := in["secretKey"].(string)
	value, _ := in["secretValue"].(string)
	if name == "" || value == "" {
		return terminal("UPDATE_SECRET %s needs _secrets.secretKey and _secrets.secretValue", t.ReferenceTaskName)
	}
	principals := executor.PrincipalsFrom(ctx)
	// Checked on this revision, written on it alone (secrets.At).
	rev, err := u.Store.Revision(ctx, name)
	if err != nil && !errors.Is(err, fault.ErrInvalid) {
		return conductor.TaskResult{Status: conductor.TaskFailed, ReasonForIncompletion: fmt.Sprintf("UPDATE_SECRET %s: %v", t.ReferenceTaskName, err)}
	}
	access := auth.Update
	if !rev.Exists {
		access = auth.Create
	}
	if len(principals) == 0 {
		principals = []string{""}
	}
	// Every principal the workflow runs as must be allowed the write.
	for _, principal := range principals {
		if _, err := u.Authz.Authorize(ctx, principal, access, auth.Target{Type: auth.TargetSecret, ID: name}); errors.Is(err, fault.ErrForbidden) {
			return terminal("UPDATE_SECRET %s: 403: %s may not %s secret %s", t.ReferenceTaskName, principalName(principal), access, name)
		} else if err != nil {
			return conductor.TaskResult{Status: conductor.TaskFailed, ReasonForIncompletion: fmt.Sprintf("UPDATE_SECRET %s: %v", t.ReferenceTaskName, err)}
		}
	}
	v := []byte(value)
	defer clear(v)
	// Written as the workflow's creator (the first principal), who owns a
	// secret it creates; the others were checked above.
	if _, err := u.Store.Put(ctx, name, v, principals[0], secrets.At(rev)); err != nil {
		if errors.Is(err, fault.ErrInvalid) || errors.Is(err, fault.ErrTooLarge) {
			return terminal("UPDATE_SECRET %s: %v", t.ReferenceTaskName, err)
		}
		return conductor.TaskResult{Status: conductor.TaskFailed, ReasonForIncompletion: fmt.Sprintf("UPDATE_SECRET %s: %v", t.ReferenceTaskName, err)}
	}
	return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: map[string]any{}}
}
