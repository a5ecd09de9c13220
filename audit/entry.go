package audit

import (
	"strconv"
	"strings"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/schemas"
)

// Entry is one line of the audit trail: who did what to which target,
// when, with details that identify without revealing (versions, keyed
// fingerprints, how access was granted, why it was refused). An entry
// never holds a value.
type Entry struct {
	Time time.Time `json:"time"`
	// Principal is who acted: a user id, "app:<id>", "anonymous" (insecure
	// dev mode), or "" when nobody could be identified (a refused token).
	Principal string `json:"principal"`
	Action    string `json:"action"`
	// Target is "<TYPE>:<id>" with Orkes's target types (SECRET_NAME,
	// ENV_VARIABLE, APPLICATION, USER, GROUP, TAG, WORKFLOW_DEF, TASK_DEF,
	// WORKFLOW_SCHEDULE, WORKFLOW) plus ACCESS_KEY and REQUEST (a path);
	// "" for none.
	Target string            `json:"target"`
	Detail map[string]string `json:"detail,omitempty"`
	// Stream and Seq locate the record the entry was read from.
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
}

// Actions of the trail. They are part of the trail's documented format.
const (
	ActSecretPut     = "secret.put"
	ActSecretDelete  = "secret.delete"
	ActSecretTags    = "secret.tags"
	ActSecretRead    = "secret.read"
	ActSecretResolve = "secret.resolve"
	ActSecretRefuse  = "secret.resolve_refused"
	// ActWorkflowRunAs: a principal joined those a workflow runs as.
	ActWorkflowRunAs  = "workflow.run_as"
	ActEnvPut         = "env.put"
	ActEnvDelete      = "env.delete"
	ActEnvTags        = "env.tags"
	ActEnvRead        = "env.read"
	ActEnvList        = "env.list"
	ActEnvResolve     = "env.resolve"
	ActEnvRefuse      = "env.resolve_refused"
	ActTokenIssue     = "token.issue"
	ActTokenRefuse    = "token.refuse"
	ActAuthFail       = "auth.fail"
	ActAccessDeny     = "access.deny"
	ActAccessGrant    = "access.grant"
	ActAccessRevoke   = "access.revoke"
	ActRefusalsDrop   = "audit.dropped"
	ActAppCreate      = "app.create"
	ActAppUpdate      = "app.update"
	ActAppDelete      = "app.delete"
	ActAppRoles       = "app.roles"
	ActAppTags        = "app.tags"
	ActKeyCreate      = "key.create"
	ActKeyStatus      = "key.status"
	ActKeyDelete      = "key.delete"
	ActUserUpsert     = "user.upsert"
	ActUserGroups     = "user.groups"
	ActUserDelete     = "user.delete"
	ActGroupUpsert    = "group.upsert"
	ActGroupDelete    = "group.delete"
	ActWorkflowDefReg = "workflowdef.register"
	ActWorkflowDefRm  = "workflowdef.remove"
	ActTaskDefReg     = "taskdef.register"
	ActTaskDefRm      = "taskdef.remove"
	ActDefTags        = "def.tags"
	ActScheduleSave   = "schedule.save"
	ActScheduleDelete = "schedule.delete"
	ActSchedulePause  = "schedule.pause"
	ActScheduleResume = "schedule.resume"
	ActScheduleTags   = "schedule.tags"
	// ActEventHandlerSave and ActEventHandlerRm are changes to event
	// handlers, whose actions run as who saved them.
	ActEventHandlerSave = "eventhandler.save"
	ActEventHandlerRm   = "eventhandler.remove"
	// ActWebhookSave and ActWebhookRm are changes to incoming webhooks,
	// whose deliveries act as who created them.
	ActWebhookSave = "webhook.save"
	ActWebhookRm   = "webhook.remove"
	// ActSchemaSave and ActSchemaRm are changes to the schemas that
	// definitions enforce; a removal of every version has no "version".
	ActSchemaSave = "schema.save"
	ActSchemaRm   = "schema.remove"
	// ActNATSCredentials is the issuance of NATS worker credentials.
	ActNATSCredentials = "nats.credentials"
	// ActNATSRevoke is the revocation of NATS worker credentials.
	ActNATSRevoke = "nats.credentials.revoke"
	// ActKeysRotate is a rotation of the keyring to a new master-key term.
	ActKeysRotate = "keys.rotate"
	// ActKeysRekey is the keyring sealed under a new master key.
	ActKeysRekey = "keys.rekey"
)

// Target types the trail adds to Orkes's.
const (
	TargetAccessKey = "ACCESS_KEY"
	TargetRequest   = targetRequest
	// TargetNATSUser is a NATS user of the embedded server, by public key.
	TargetNATSUser = "NATS_USER"
	// TargetEventHandler is an event handler, by name (Orkes's target type).
	TargetEventHandler = "EVENT_HANDLER"
	// TargetWebhook is an incoming webhook, by id (Orkes's target type).
	TargetWebhook = "WEBHOOK"
	// TargetSchema is a schema, by name.
	TargetSchema = "SCHEMA"
	// TargetKeyring is the keyring, by its new term.
	TargetKeyring = "KEYRING"
)

func target(typ, id string) string { return typ + ":" + id }

// fact is one event of a record and where it was read.
type fact struct {
	rec eventlog.Record
	env schemas.Envelope
	ev  schemas.Event
}

// entry starts the entry of f: time, principal (the envelope's, or the
// event's own "by"), stream position.
func (f fact) entry(action, target, by string, detail map[string]string) Entry {
	p := f.env.Principal
	if p == "" {
		p = by
	}
	at := f.rec.Time
	if f.env.Time != 0 {
		at = time.Unix(0, f.env.Time)
	}
	for k, v := range detail {
		if v == "" {
			delete(detail, k)
		}
	}
	return Entry{Time: at.UTC(), Principal: p, Action: action, Target: target, Detail: detail, Stream: f.rec.Stream, Seq: f.rec.Seq}
}

// entries maps one event to its trail entries (none for events the trail
// does not show: workflow progress, schedule fires, …).
func (f fact) entries() []Entry {
	switch e := f.ev.(type) {
	case *schemas.TaskStarted:
		// Who received the values: the worker as it names itself, and the
		// principal that polled, when it was authenticated (an HTTP poll;
		// a NATS worker's take carries only its worker id).
		d := map[string]string{"task": e.TaskID, "worker": e.WorkerID}
		if p := f.env.Principal; p != e.WorkerID {
			d["taken_by"] = p
		}
		return f.resolutions(e.Resolved, d)
	case *schemas.WorkflowStarted:
		return f.resolutions(e.Resolved, map[string]string{"parent": e.ParentWorkflowID})
	case *schemas.WorkflowRunAs:
		return []Entry{f.entry(ActWorkflowRunAs, target(auth.TargetWorkflow, f.workflow()), e.Principal, map[string]string{"run_as": e.Principal})}
	}
	if out, ok := f.secretEntries(); ok {
		return out
	}
	if out, ok := f.auditEntries(); ok {
		return out
	}
	if out, ok := f.authEntries(); ok {
		return out
	}
	return f.metadataEntries()
}

// workflow is the id of the workflow whose subject f was read from.
func (f fact) workflow() string {
	wf, _ := eventlog.Untoken(strings.TrimPrefix(f.rec.Subject, "fv.wf."))
	return wf
}

// resolutions are the entries of the values resolved (or refused) at a
// hand-off of workflow f's subject.
func (f fact) resolutions(refs []schemas.ResolvedRef, base map[string]string) []Entry {
	wf := f.workflow()
	out := make([]Entry, 0, len(refs))
	for _, ref := range refs {
		if ref.Kind != "secret" && ref.Kind != "env" {
			continue // a starter's sealed data opened for its child: no access to a secret or a variable
		}
		d := map[string]string{"workflow": wf, "granted_by": ref.GrantedBy, "reason": ref.Refused}
		for k, v := range base {
			d[k] = v
		}
		if ref.Version > 0 {
			d["version"] = strconv.Itoa(ref.Version)
		}
		typ, action := auth.TargetSecret, ActSecretResolve
		switch {
		case ref.Kind == "env" && ref.Refused != "":
			typ, action = auth.TargetEnvVariable, ActEnvRefuse
		case ref.Kind == "env":
			typ, action = auth.TargetEnvVariable, ActEnvResolve
		case ref.Refused != "":
			action = ActSecretRefuse
		}
		e := f.entry(action, target(typ, ref.Name), "", d)
		e.Principal = ref.Principal // resolutions run as the workflow's creator
		out = append(out, e)
	}
	return out
}

func (f fact) secretEntries() ([]Entry, bool) {
	var e Entry
	switch ev := f.ev.(type) {
	case *schemas.SecretVersionPut:
		// A version an UPDATE_SECRET wrote names its workflow and task, as
		// a resolution does; one written through the API names neither.
		e = f.entry(ActSecretPut, target(auth.TargetSecret, ev.Name), ev.By, map[string]string{
			"version": strconv.Itoa(ev.Version), "fingerprint": ev.Fingerprint, "size": strconv.Itoa(ev.Size),
			"workflow": ev.WorkflowID, "task": ev.TaskID})
	case *schemas.SecretDeleted:
		e = f.entry(ActSecretDelete, target(auth.TargetSecret, ev.Name), ev.By, map[string]string{"version": strconv.Itoa(ev.Version)})
	case *schemas.SecretTagsSet:
		e = f.entry(ActSecretTags, target(auth.TargetSecret, ev.Name), ev.By, map[string]string{"tags": secretTags(ev.Tags)})
	case *schemas.EnvValuePut:
		e = f.entry(ActEnvPut, target(auth.TargetEnvVariable, ev.Name), ev.By, map[string]string{"size": strconv.Itoa(len(ev.Value))})
	case *schemas.EnvValueDeleted:
		e = f.entry(ActEnvDelete, target(auth.TargetEnvVariable, ev.Name), ev.By, nil)
	case *schemas.EnvTagsSet:
		e = f.entry(ActEnvTags, target(auth.TargetEnvVariable, ev.Name), ev.By, map[string]string{"tags": secretTags(ev.Tags)})
	default:
		return nil, false
	}
	return []Entry{e}, true
}

func (f fact) auditEntries() ([]Entry, bool) {
	var e Entry
	switch ev := f.ev.(type) {
	case *schemas.SecretRead:
		e = f.entry(ActSecretRead, target(auth.TargetSecret, ev.Name), ev.By, map[string]string{
			"version": strconv.Itoa(ev.Version), "fingerprint": ev.Fingerprint, "addr": ev.Addr})
	case *schemas.EnvRead:
		e = f.entry(ActEnvRead, target(auth.TargetEnvVariable, ev.Name), ev.By, map[string]string{"addr": ev.Addr})
	case *schemas.EnvListed:
		out := make([]Entry, 0, len(ev.Names))
		for _, name := range ev.Names {
			out = append(out, f.entry(ActEnvList, target(auth.TargetEnvVariable, name), ev.By, map[string]string{"addr": ev.Addr}))
		}
		return out, true
	case *schemas.TokenIssued:
		e = f.entry(ActTokenIssue, target(TargetAccessKey, ev.KeyID), ev.Principal, map[string]string{
			"token_id": ev.TokenID, "expires": time.Unix(ev.Expires, 0).UTC().Format(time.RFC3339), "addr": ev.Addr})
		e.Principal = ev.Principal
	case *schemas.TokenRefused:
		e = f.entry(ActTokenRefuse, target(TargetAccessKey, ev.KeyID), "", map[string]string{"reason": ev.Reason, "addr": ev.Addr})
	case *schemas.AuthFailed:
		e = f.entry(ActAuthFail, target(TargetRequest, ev.Path), "", map[string]string{
			"code": ev.Code, "reason": ev.Reason, "method": ev.Method, "addr": ev.Addr})
	case *schemas.AccessDenied:
		t := target(TargetRequest, ev.Path)
		if ev.TargetType != "" {
			t = target(ev.TargetType, ev.TargetID)
		}
		// A request's refusal says where it came from; a workflow's
		// (UPDATE_SECRET), which task was refused.
		e = f.entry(ActAccessDeny, t, ev.By, map[string]string{"access": ev.Access, "reason": ev.Reason,
			"method": ev.Method, "path": ev.Path, "addr": ev.Addr, "workflow": ev.Workflow, "task": ev.Task})
	case *schemas.WorkerCredentialsIssued:
		expires, domainsOnly := "", ""
		if ev.Expires != 0 {
			expires = time.Unix(ev.Expires, 0).UTC().Format(time.RFC3339)
		}
		if ev.DomainsOnly {
			domainsOnly = "true"
		}
		e = f.entry(ActNATSCredentials, target(TargetNATSUser, ev.User), ev.By, map[string]string{
			"task_types": list(ev.TaskTypes), "domains": list(ev.Domains), "domains_only": domainsOnly,
			"start_workflows": list(ev.StartWorkflows), "subscribe": list(ev.Subscribe),
			"name": ev.Name, "expires": expires})
	case *schemas.WorkerCredentialsRevoked:
		e = f.entry(ActNATSRevoke, target(TargetNATSUser, ev.User), ev.By, nil)
	case *schemas.KeyringRotated:
		e = f.entry(ActKeysRotate, target(TargetKeyring, strconv.Itoa(ev.Term)), ev.By, map[string]string{
			"previous": strconv.Itoa(ev.Previous), "rewrapped": strconv.Itoa(ev.Rewrapped)})
	case *schemas.KeyringRekeyed:
		e = f.entry(ActKeysRekey, target(TargetKeyring, strconv.Itoa(ev.Term)), ev.By, map[string]string{
			"master_key": ev.Key, "previous_master_key": ev.Previous})
	case *schemas.RefusalsDropped:
		e = f.entry(ActRefusalsDrop, "", "", map[string]string{"count": strconv.FormatUint(ev.Count, 10)})
	default:
		return nil, false
	}
	return []Entry{e}, true
}

func (f fact) authEntries() ([]Entry, bool) {
	app := func(id string) string { return target(auth.TargetApplication, id) }
	var e Entry
	switch ev := f.ev.(type) {
	case *schemas.ApplicationCreated:
		e = f.entry(ActAppCreate, app(ev.ID), ev.By, map[string]string{"name": ev.Name})
	case *schemas.ApplicationUpdated:
		e = f.entry(ActAppUpdate, app(ev.ID), ev.By, map[string]string{"name": ev.Name})
	case *schemas.ApplicationDeleted:
		e = f.entry(ActAppDelete, app(ev.ID), ev.By, nil)
	case *schemas.ApplicationRolesSet:
		e = f.entry(ActAppRoles, app(ev.ID), ev.By, map[string]string{"roles": list(ev.Roles), "added": list(ev.Added), "removed": list(ev.Removed)})
	case *schemas.ApplicationTagsSet:
		e = f.entry(ActAppTags, app(ev.ID), ev.By, map[string]string{"tags": defTags(ev.Tags)})
	case *schemas.AccessKeyCreated: // never the hash
		e = f.entry(ActKeyCreate, target(TargetAccessKey, ev.KeyID), ev.By, map[string]string{"application": ev.AppID})
	case *schemas.AccessKeyStatusSet:
		e = f.entry(ActKeyStatus, target(TargetAccessKey, ev.KeyID), ev.By, map[string]string{"application": ev.AppID, "status": ev.Status})
	case *schemas.AccessKeyDeleted:
		e = f.entry(ActKeyDelete, target(TargetAccessKey, ev.KeyID), ev.By, map[string]string{"application": ev.AppID})
	case *schemas.UserUpserted:
		e = f.entry(ActUserUpsert, target(auth.SubjectUser, ev.ID), ev.By, map[string]string{"roles": list(ev.Roles), "groups": list(ev.Groups)})
	case *schemas.UserGroupsSet:
		e = f.entry(ActUserGroups, target(auth.SubjectUser, ev.ID), ev.By, map[string]string{"groups": list(ev.Groups)})
	case *schemas.UserDeleted:
		e = f.entry(ActUserDelete, target(auth.SubjectUser, ev.ID), ev.By, nil)
	case *schemas.GroupUpserted:
		e = f.entry(ActGroupUpsert, target(auth.SubjectGroup, ev.ID), ev.By, map[string]string{"roles": list(ev.Roles)})
	case *schemas.GroupDeleted:
		e = f.entry(ActGroupDelete, target(auth.SubjectGroup, ev.ID), ev.By, nil)
	case *schemas.GrantSet:
		action := ActAccessGrant
		if len(ev.Revoked) > 0 || len(ev.Access) == 0 {
			action = ActAccessRevoke
		}
		e = f.entry(action, target(ev.TargetType, ev.TargetID), ev.By, map[string]string{
			"subject": target(ev.SubjectType, ev.SubjectID), "granted": list(ev.Granted), "revoked": list(ev.Revoked), "access": list(ev.Access)})
	default:
		return nil, false
	}
	return []Entry{e}, true
}

func (f fact) metadataEntries() []Entry {
	schedule := target(auth.TargetWorkflowSchedule, scheduleName(f.rec.Subject))
	var e Entry
	switch ev := f.ev.(type) {
	case *schemas.WorkflowDefRegistered:
		e = f.entry(ActWorkflowDefReg, target(auth.TargetWorkflowDef, ev.Name), ev.By, map[string]string{"version": strconv.Itoa(ev.Version)})
	case *schemas.WorkflowDefRemoved:
		e = f.entry(ActWorkflowDefRm, target(auth.TargetWorkflowDef, ev.Name), ev.By, map[string]string{"version": strconv.Itoa(ev.Version)})
	case *schemas.TaskDefRegistered:
		e = f.entry(ActTaskDefReg, target(auth.TargetTaskDef, ev.Name), ev.By, nil)
	case *schemas.TaskDefRemoved:
		e = f.entry(ActTaskDefRm, target(auth.TargetTaskDef, ev.Name), ev.By, nil)
	case *schemas.EventHandlerSaved:
		e = f.entry(ActEventHandlerSave, target(TargetEventHandler, ev.Name), ev.By, nil)
	case *schemas.EventHandlerRemoved:
		e = f.entry(ActEventHandlerRm, target(TargetEventHandler, ev.Name), ev.By, nil)
	case *schemas.WebhookSaved:
		e = f.entry(ActWebhookSave, target(TargetWebhook, ev.ID), ev.By, nil)
	case *schemas.WebhookRemoved:
		e = f.entry(ActWebhookRm, target(TargetWebhook, ev.ID), ev.By, nil)
	case *schemas.SchemaSaved:
		e = f.entry(ActSchemaSave, target(TargetSchema, ev.Name), ev.By, map[string]string{"version": strconv.Itoa(ev.Version)})
	case *schemas.SchemaRemoved:
		var attrs map[string]string
		if ev.Version != 0 {
			attrs = map[string]string{"version": strconv.Itoa(ev.Version)}
		}
		e = f.entry(ActSchemaRm, target(TargetSchema, ev.Name), ev.By, attrs)
	case *schemas.DefTagsSet:
		typ := auth.TargetWorkflowDef
		if ev.Kind == schemas.DefKindTask {
			typ = auth.TargetTaskDef
		}
		e = f.entry(ActDefTags, target(typ, ev.Name), ev.By, map[string]string{"tags": defTags(ev.Tags)})
	case *schemas.ScheduleSaved:
		e = f.entry(ActScheduleSave, schedule, ev.By, nil)
	case *schemas.ScheduleDeleted:
		e = f.entry(ActScheduleDelete, schedule, ev.By, nil)
	case *schemas.SchedulePauseChanged:
		action := ActScheduleResume
		if ev.Paused {
			action = ActSchedulePause
		}
		e = f.entry(action, schedule, ev.By, map[string]string{"reason": ev.Reason})
	case *schemas.ScheduleTagsSet:
		e = f.entry(ActScheduleTags, schedule, ev.By, map[string]string{"tags": defTags(ev.Tags)})
	default:
		return nil
	}
	return []Entry{e}
}

func scheduleName(subject string) string {
	name, _ := eventlog.Untoken(strings.TrimPrefix(subject, "fv.meta.schedule."))
	return name
}

// list joins names with commas. A name holding a comma, '=', a quote or a
// backslash is Go-quoted, so that the list splits back into its names:
// role, group and tag names are the callers' own, and may hold any of them.
func list(s []string) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = listItem(v)
	}
	return strings.Join(parts, ",")
}

func listItem(s string) string {
	if strings.ContainsAny(s, `,="\`) {
		return strconv.Quote(s)
	}
	return s
}

func secretTags(tags []schemas.SecretTag) string {
	parts := make([]string, len(tags))
	for i, t := range tags {
		parts[i] = listItem(t.Key) + "=" + listItem(t.Value)
	}
	return strings.Join(parts, ",")
}

func defTags(tags []schemas.DefTag) string {
	parts := make([]string, len(tags))
	for i, t := range tags {
		parts[i] = listItem(t.Key) + "=" + listItem(t.Value)
	}
	return strings.Join(parts, ",")
}
