package metadata

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// Projection folds the FV_META stream into the metadata read model. It is
// stateless; run it with a projections.Runner over eventlog.Metadata.
//
// A Projection made by NewProjection calls its notify after each commit
// that applied an event handler's record (from the runner's goroutine: it
// must not block), so that the event handlers' listener hears of changes
// made through any engine. The stream's other records, a schedule's every
// fire among them, call nothing: each call has the listener read every
// handler and make a round trip to NATS.
type Projection struct {
	notify  func()
	applied *atomic.Bool // set by Apply, taken by Committed
}

// NewProjection returns a Projection that calls notify after each commit
// of an event handler's record.
func NewProjection(notify func()) Projection {
	return Projection{notify: notify, applied: new(atomic.Bool)}
}

var _ projections.Projection = Projection{}

// Committed implements projections.Committer.
func (p Projection) Committed(uint64) {
	if p.notify != nil && p.applied.Swap(false) {
		p.notify()
	}
}

// Name implements projections.Projection.
func (Projection) Name() string { return ProjectionName }

// Apply implements projections.Projection. A record that cannot be decoded
// is refused as poison before anything is written for it; events of types
// this version does not know are ignored, so that a newer writer's
// additions do not stop an older reader.
//
// The reference indexes (see indexDef) are kept with the definitions.
func (p Projection) Apply(b *projections.Batch, rec eventlog.Record) error {
	if err := applyRecord(b, rec); err != nil {
		return err
	}
	if p.applied != nil && strings.HasPrefix(rec.Subject, eventSubjectPrefix) {
		p.applied.Store(true)
	}
	return nil
}

// Layout implements projections.Layouter: 2 indexes the workflows a
// definition starts by name (Starters); 3 indexes what a dynamic fork
// and a DYNAMIC task start and the tasks a dynamic fork forks by
// forkTaskName beside a dynamicForkTasksParam its input does not hold. A
// read model in an earlier layout, which lacks them, is rebuilt from the
// log.
func (Projection) Layout() int { return 3 }

// storedDef is the read model's value for one definition.
type storedDef struct {
	// JSON is what GET returns: the registered JSON with the server-owned
	// keys set and, but for an event handler's, the tag keys removed.
	JSON       []byte `msgpack:"j"`
	CreateTime int64  `msgpack:"ct"`
	UpdateTime int64  `msgpack:"ut"`
	CreatedBy  string `msgpack:"cb,omitempty"`
	UpdatedBy  string `msgpack:"ub,omitempty"`
}

// Keys of a registration that the read model owns or strips.
const (
	jsonVersion       = "version"
	jsonCreateTime    = "createTime"
	jsonUpdateTime    = "updateTime"
	jsonCreatedBy     = "createdBy"
	jsonUpdatedBy     = "updatedBy"
	jsonTags          = "tags"
	jsonOverwriteTags = "overwriteTags"
)

func isMetadataSubject(s string) bool {
	return strings.HasPrefix(s, workflowSubjectPrefix) || strings.HasPrefix(s, taskSubjectPrefix) || strings.HasPrefix(s, eventSubjectPrefix) ||
		strings.HasPrefix(s, webhookSubjectPrefix) || strings.HasPrefix(s, schemaSubjectPrefix)
}

// applyRecord applies rec to kv: the Pebble batch of the projection, or the
// in-memory fold of one subject. Both must produce the same keys and values.
func applyRecord(kv kvWriter, rec eventlog.Record) error {
	if !isMetadataSubject(rec.Subject) {
		return nil
	}
	// Decode and check every event before writing anything.
	events := make([]schemas.Event, 0, len(rec.Events))
	for _, env := range rec.Events {
		if !isMetadataType(env.Type) {
			continue
		}
		ev, err := schemas.Default.Decode(env)
		if err != nil {
			return err
		}
		if err := checkEvent(rec.Subject, ev); err != nil {
			return fmt.Errorf("%s #%d event %s: %w", rec.Subject, rec.Seq, env.ID, err)
		}
		events = append(events, ev)
	}
	for _, ev := range events {
		if err := applyEvent(kv, ev); err != nil {
			return fmt.Errorf("%s #%d: %w", rec.Subject, rec.Seq, err)
		}
	}
	return kv.Set(seqKey(rec.Subject), binary.BigEndian.AppendUint64(nil, rec.Seq))
}

func isMetadataType(t string) bool {
	switch t {
	case schemas.TypeWorkflowDefRegistered, schemas.TypeWorkflowDefRemoved,
		schemas.TypeTaskDefRegistered, schemas.TypeTaskDefRemoved, schemas.TypeDefTagsSet,
		schemas.TypeEventHandlerSaved, schemas.TypeEventHandlerRemoved,
		schemas.TypeWebhookSaved, schemas.TypeWebhookRemoved,
		schemas.TypeSchemaSaved, schemas.TypeSchemaRemoved:
		return true
	}
	return false
}

// checkEvent refuses events that applyEvent could not apply, or that belong
// to another subject (the subject's sequence guards only its own names).
func checkEvent(subject string, ev schemas.Event) error {
	poison := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), projections.ErrPoison)
	}
	var name, want string
	switch e := ev.(type) {
	case *schemas.WorkflowDefRegistered:
		if _, err := splitObject(e.Def); err != nil {
			return poison("definition is not a JSON object: %v", err)
		}
		if !validVersion(e.Version) {
			return poison("version %d out of range", e.Version)
		}
		name, want = e.Name, WorkflowSubject(e.Name)
	case *schemas.WorkflowDefRemoved:
		if !validVersion(e.Version) {
			return poison("version %d out of range", e.Version)
		}
		name, want = e.Name, WorkflowSubject(e.Name)
	case *schemas.TaskDefRegistered:
		if _, err := splitObject(e.Def); err != nil {
			return poison("definition is not a JSON object: %v", err)
		}
		name, want = e.Name, TaskSubject(e.Name)
	case *schemas.TaskDefRemoved:
		name, want = e.Name, TaskSubject(e.Name)
	case *schemas.EventHandlerSaved:
		if _, err := splitObject(e.Def); err != nil {
			return poison("event handler is not a JSON object: %v", err)
		}
		name, want = e.Name, EventHandlerSubject(e.Name)
	case *schemas.EventHandlerRemoved:
		name, want = e.Name, EventHandlerSubject(e.Name)
	case *schemas.WebhookSaved:
		if _, err := splitObject(e.Def); err != nil {
			return poison("webhook is not a JSON object: %v", err)
		}
		name, want = e.ID, WebhookSubject(e.ID)
	case *schemas.WebhookRemoved:
		name, want = e.ID, WebhookSubject(e.ID)
	case *schemas.SchemaSaved:
		if _, err := splitObject(e.Def); err != nil {
			return poison("schema is not a JSON object: %v", err)
		}
		if !validVersion(e.Version) {
			return poison("version %d out of range", e.Version)
		}
		name, want = e.Name, SchemaSubject(e.Name)
	case *schemas.SchemaRemoved:
		if e.Version != 0 && !validVersion(e.Version) {
			return poison("version %d out of range", e.Version)
		}
		name, want = e.Name, SchemaSubject(e.Name)
	case *schemas.DefTagsSet:
		switch Kind(e.Kind) {
		case KindWorkflow:
			want = WorkflowSubject(e.Name)
		case KindTask:
			want = TaskSubject(e.Name)
		default:
			return poison("unknown definition kind %q", e.Kind)
		}
		name = e.Name
	default:
		return poison("unexpected event %T", ev)
	}
	if name == "" || subject != want {
		return poison("definition %q does not belong on subject %s", name, subject)
	}
	return nil
}

func validVersion(v int) bool { return v >= 1 && v <= math.MaxInt32 }

// claimOwner records by as the owner of workflow name when the name has
// none: its first version. (A read model from before owners were recorded
// is in no layout, and rebuilt at start: see projections.Layouter.)
func claimOwner(kv kvWriter, name, by string) error {
	if _, err := kv.Get(ownerKey(name)); err == nil || !errors.Is(err, projections.ErrNotFound) {
		return err
	}
	return kv.Set(ownerKey(name), []byte(by))
}

func applyEvent(kv kvWriter, ev schemas.Event) error {
	switch e := ev.(type) {
	case *schemas.WorkflowDefRegistered:
		if err := claimOwner(kv, e.Name, e.By); err != nil {
			return err
		}
		d, err := putDef(kv, workflowKey(e.Name, e.Version), e.Def, e.Time, e.By, intField(jsonVersion, int64(e.Version)))
		if err != nil {
			return err
		}
		return indexDef(kv, e.Name, e.Version, d)
	case *schemas.WorkflowDefRemoved:
		if err := unindexDef(kv, e.Name, e.Version); err != nil {
			return err
		}
		if err := kv.Delete(workflowKey(e.Name, e.Version)); err != nil {
			return err
		}
		versions, err := workflowVersions(kv, e.Name)
		if err != nil || len(versions) > 0 {
			return err
		}
		if err := kv.Delete(ownerKey(e.Name)); err != nil {
			return err
		}
		return kv.Delete(tagsKey(KindWorkflow, e.Name))
	case *schemas.TaskDefRegistered:
		_, err := putDef(kv, taskKey(e.Name), e.Def, e.Time, e.By)
		return err
	case *schemas.TaskDefRemoved:
		if err := kv.Delete(taskKey(e.Name)); err != nil {
			return err
		}
		return kv.Delete(tagsKey(KindTask, e.Name))
	case *schemas.EventHandlerSaved:
		// An event handler's tags are part of it, as the client sent them.
		_, err := storeDef(kv, eventHandlerKey(e.Name), e.Def, e.Time, e.By, nil)
		return err
	case *schemas.EventHandlerRemoved:
		return kv.Delete(eventHandlerKey(e.Name))
	case *schemas.WebhookSaved:
		_, err := storeDef(kv, webhookKey(e.ID), e.Def, e.Time, e.By, nil)
		return err
	case *schemas.WebhookRemoved:
		return kv.Delete(webhookKey(e.ID))
	case *schemas.SchemaSaved:
		_, err := storeDef(kv, schemaKey(e.Name, e.Version), e.Def, e.Time, e.By, nil, intField(jsonVersion, int64(e.Version)))
		return err
	case *schemas.SchemaRemoved:
		if e.Version != 0 {
			return kv.Delete(schemaKey(e.Name, e.Version))
		}
		versions, err := schemaVersions(kv, e.Name)
		if err != nil {
			return err
		}
		for _, v := range versions {
			if err := kv.Delete(schemaKey(e.Name, v)); err != nil {
				return err
			}
		}
		return nil
	case *schemas.DefTagsSet:
		key := tagsKey(Kind(e.Kind), e.Name)
		if len(e.Tags) == 0 {
			return kv.Delete(key)
		}
		v, err := msgpack.Marshal(e.Tags)
		if err != nil {
			return err
		}
		return kv.Set(key, v)
	}
	return nil
}

// putDef stores a registration at key and returns what it stored.
// Overwriting keeps the creation time and creator of the definition it
// replaces. Its tags are kept apart (the g/ keys): the stored JSON has
// none.
func putDef(kv kvWriter, key, def []byte, at int64, by string, extra ...field) (storedDef, error) {
	return storeDef(kv, key, def, at, by, []string{jsonTags, jsonOverwriteTags}, extra...)
}

// storeDef is putDef dropping the top-level keys drop (none: the JSON as
// registered, plus the server-owned keys).
func storeDef(kv kvWriter, key, def []byte, at int64, by string, drop []string, extra ...field) (storedDef, error) {
	d := storedDef{CreateTime: at, UpdateTime: at, CreatedBy: by, UpdatedBy: by}
	prior, found, err := readDef(kv, key)
	if err != nil {
		return storedDef{}, err
	}
	if found {
		d.CreateTime, d.CreatedBy = prior.CreateTime, prior.CreatedBy
	}
	set := append(append(make([]field, 0, len(extra)+4), extra...),
		intField(jsonCreateTime, d.CreateTime), intField(jsonUpdateTime, d.UpdateTime),
		stringField(jsonCreatedBy, d.CreatedBy), stringField(jsonUpdatedBy, d.UpdatedBy))
	if d.JSON, err = mergeObject(def, set, drop...); err != nil {
		return storedDef{}, fmt.Errorf("merge definition: %w", err) // checked by checkEvent
	}
	v, err := msgpack.Marshal(&d)
	if err != nil {
		return storedDef{}, err
	}
	return d, kv.Set(key, v)
}

// readDef returns the definition stored at key.
func readDef(r kvReader, key []byte) (storedDef, bool, error) {
	v, err := r.Get(key)
	if errors.Is(err, projections.ErrNotFound) {
		return storedDef{}, false, nil
	}
	if err != nil {
		return storedDef{}, false, err
	}
	return decodeStored(v)
}

func decodeStored(v []byte) (storedDef, bool, error) {
	var d storedDef
	if err := msgpack.Unmarshal(v, &d); err != nil {
		return storedDef{}, false, fmt.Errorf("decode stored definition: %w", err)
	}
	return d, true, nil
}

// listAll parses every stored definition under prefix, in key order.
func listAll[T any](r kvReader, prefix, what string, parse func([]byte) (*T, error)) ([]*T, error) {
	var out []*T
	var perr error
	err := r.Scan([]byte(prefix), func(_, v []byte) bool {
		var d storedDef
		if d, _, perr = decodeStored(slices.Clone(v)); perr != nil {
			return false
		}
		var x *T
		if x, perr = parse(d.JSON); perr != nil {
			return false
		}
		out = append(out, x)
		return true
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	if out == nil {
		out = []*T{}
	}
	return out, nil
}

// workflowVersions lists the stored versions of workflow name, ascending.
func workflowVersions(r kvReader, name string) ([]int, error) {
	var out []int
	err := r.Scan(workflowPrefix(name), func(k, _ []byte) bool {
		if _, v, ok := parseWorkflowKey(k); ok {
			out = append(out, v)
		}
		return true
	})
	return out, err
}

// readTags returns the tag set of a definition name (nil: none).
func readTags(r kvReader, kind Kind, name string) ([]schemas.DefTag, error) {
	v, err := r.Get(tagsKey(kind, name))
	if errors.Is(err, projections.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var tags []schemas.DefTag
	if err := msgpack.Unmarshal(v, &tags); err != nil {
		return nil, fmt.Errorf("decode tags: %w", err)
	}
	return tags, nil
}
