package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/flowvault/flowvault/audit"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// SecretWriter stores secret values.
type SecretWriter interface {
	Put(ctx context.Context, name string, value []byte, principal string, opts ...secrets.WriteOption) (int, error)
	Revision(ctx context.Context, name string) (secrets.Revision, error)
	WrittenByTask(ctx context.Context, name, wfID, taskID string) (version int, found bool, err error)
}

// Refusals records refusals in the audit log in the background, within
// its flood limits. *audit.Recorder implements it.
type Refusals interface {
	Refused(addr, principal string, ev schemas.Event)
}

// UpdateSecret is the UPDATE_SECRET system task (Orkes): input
// {"_secrets":{"secretKey":…,"secretValue":…}} — sealed in the stored
// input, opened at hand-off — creates or updates the secret as the
// workflow's creator, who needs UPDATE on it (CREATE when it does not exist
// yet). Missing fields or a refusal fail the task for good, and with it the
// workflow. The task has no output.
//
// Its audit trail names the workflow and task: the version it writes
// records them (secrets.ByTask), and a refusal is recorded in Refusals
// as an API's 403 is, naming them in place of a request.
type UpdateSecret struct {
	Store    SecretWriter
	Authz    Authorizer
	Refusals Refusals // nil records no refusal
}

// Execute implements executor.SystemTask.
func (u UpdateSecret) Execute(ctx context.Context, t *conductor.Task) conductor.TaskResult {
	in, _ := t.InputData["_secrets"].(map[string]any)
	name, _ := in["secretKey"].(string)
	value, err := secretValueOf(in["secretValue"])
	switch {
	case err != nil:
		return *terminal("UPDATE_SECRET %s: _secrets.secretValue %v", t.ReferenceTaskName, err)
	case name == "" || value == "":
		return *terminal("UPDATE_SECRET %s needs _secrets.secretKey and _secrets.secretValue", t.ReferenceTaskName)
	}
	// Before access is checked: a refusal names the secret, in the
	// task's reason and the audit log, and a name that is no name may be
	// a value given in the wrong field.
	if err := secrets.CheckSecretName(name); err != nil {
		return *terminal("UPDATE_SECRET %s: %v", t.ReferenceTaskName, err)
	}
	principals := executor.PrincipalsFrom(ctx)
	if len(principals) == 0 {
		principals = []string{""}
	}
	v := []byte(value)
	defer clear(v)
	// Checked on a revision, written on it alone (secrets.At): one that
	// changed meanwhile (another UPDATE_SECRET of a fork's branch, or of
	// another workflow) is checked again on its new state. Writers that
	// meet win one at a time, so the others keep trying, spread apart,
	// for as long as updateRetryBudget: the last write wins, as a task
	// expects, where a REST client is told to send it again (409).
	deadline := time.Now().Add(updateRetryBudget)
	backoff := 10 * time.Millisecond
	for {
		var res *conductor.TaskResult
		if res, err = u.write(ctx, t, name, v, principals); res != nil {
			return *res
		}
		if !errors.Is(err, fault.ErrConflict) || time.Now().After(deadline) {
			break
		}
		// The read model the check reads catches up with the change.
		select {
		case <-time.After(backoff/2 + rand.N(backoff)):
		case <-ctx.Done():
			err = ctx.Err()
		}
		if ctx.Err() != nil {
			break
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
	return conductor.TaskResult{Status: conductor.TaskFailed, ReasonForIncompletion: fmt.Sprintf("UPDATE_SECRET %s: %v", t.ReferenceTaskName, err)}
}

// updateRetryBudget bounds how long an UPDATE_SECRET tries to write a
// secret that keeps changing under it.
const updateRetryBudget = 20 * time.Second

// write checks access to secret name on its current revision and writes v
// there. It returns the task's result when that is settled (a refusal, a
// value the store refuses), or the write's error.
func (u UpdateSecret) write(ctx context.Context, t *conductor.Task, name string, v []byte, principals []string) (*conductor.TaskResult, error) {
	// A run again of a task that wrote already (its engine died before
	// the result was recorded, or the write's answer was lost) is done:
	// another version would be a duplicate, and would overwrite what was
	// written since, or create again a secret deleted since (its write
	// counts when its version is gone: see WrittenByTask).
	if t.TaskID != "" {
		if _, done, err := u.Store.WrittenByTask(ctx, name, t.WorkflowInstanceID, t.TaskID); err != nil && !errors.Is(err, fault.ErrInvalid) {
			return nil, err
		} else if done {
			return &conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: map[string]any{}}, nil
		}
	}
	rev, err := u.Store.Revision(ctx, name)
	if err != nil && !errors.Is(err, fault.ErrInvalid) {
		return nil, err
	}
	access := auth.Update
	if !rev.Exists {
		access = auth.Create
	}
	// Every principal the workflow runs as must be allowed the write.
	for _, principal := range principals {
		if _, err := u.Authz.Authorize(ctx, principal, access, auth.Target{Type: auth.TargetSecret, ID: name}); errors.Is(err, fault.ErrForbidden) {
			u.recordRefusal(t, principal, access, name, err)
			return terminal("UPDATE_SECRET %s: 403: %s may not %s secret %s", t.ReferenceTaskName, principalName(principal), access, name), nil
		} else if err != nil {
			return nil, err
		}
	}
	// Written as the workflow's creator (the first principal), who owns a
	// secret it creates; the others were checked above.
	_, err = u.Store.Put(ctx, name, v, principals[0], secrets.At(rev), secrets.ByTask(t.WorkflowInstanceID, t.TaskID))
	switch {
	case err == nil:
		return &conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: map[string]any{}}, nil
	case errors.Is(err, fault.ErrInvalid), errors.Is(err, fault.ErrTooLarge):
		return terminal("UPDATE_SECRET %s: %v", t.ReferenceTaskName, err), nil
	}
	return nil, err
}

// refusalKeyPrefix keys the flood limit of a refusal inside a workflow,
// which has no client address to be limited by: it is limited by the
// principal refused, whose workflows could flood the log as one client's
// requests could. The space keeps it apart from every address.
const refusalKeyPrefix = "principal "

// recordRefusal records that principal may not write secret name (err,
// the authorizer's refusal, says why) for task t of its workflow: the
// audit entry an API's 403 gets, naming the workflow and task instead of
// a request.
func (u UpdateSecret) recordRefusal(t *conductor.Task, principal string, access auth.Access, name string, err error) {
	if u.Refusals == nil {
		return
	}
	reason := err.Error()
	var fe *auth.ForbiddenError
	if errors.As(err, &fe) {
		reason = fe.Reason
	}
	u.Refusals.Refused(refusalKeyPrefix+principal, principal, &schemas.AccessDenied{
		Access: string(access), TargetType: auth.TargetSecret, TargetID: audit.Bounded(name), Reason: audit.Bounded(reason),
		Time: time.Now().UnixMilli(), By: principal, Workflow: t.WorkflowInstanceID, Task: t.TaskID})
}

// secretValueOf is the text UPDATE_SECRET stores: a string as it is, a
// number or a boolean as JSON writes it (Orkes reads the field into a
// String, which Jackson coerces them to). An object or a list is refused
// (its type named, never its content): which text of it was meant is
// anyone's guess.
func secretValueOf(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool, int64, float64, json.Number:
		b, err := json.Marshal(v)
		return string(b), err
	}
	return "", fmt.Errorf("is %s, not text", kindOf(v))
}

func kindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("a %T", v)
}

// terminal is a failure no retry mends.
func terminal(format string, args ...any) *conductor.TaskResult {
	return &conductor.TaskResult{Status: conductor.TaskFailedWithTerminalError, ReasonForIncompletion: fmt.Sprintf(format, args...)}
}
