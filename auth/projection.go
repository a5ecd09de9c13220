package auth

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// Projection folds the FV_AUTH stream into the auth read model:
// applications (with their keys), users, groups, memberships and grants,
// indexed by target and by subject. It is stateless; run it with a
// projections.Runner over eventlog.Access.
//
// Notify, when set, is called after each commit (from the runner's
// goroutine: it must not block), for what follows principals' rights
// outside a request, such as the NATS server's subscribe credentials.
type Projection struct {
	Notify func()
}

var _ projections.Projection = Projection{}

// Name implements projections.Projection.
func (Projection) Name() string { return ProjectionName }

// Committed implements projections.Committer.
func (p Projection) Committed(uint64) {
	if p.Notify != nil {
		p.Notify()
	}
}

// Apply implements projections.Projection. Every event of the record is
// decoded and applied to the aggregate's stored state before anything is
// written, so a record that cannot apply is refused as poison whole.
func (Projection) Apply(b *projections.Batch, rec eventlog.Record) error {
	return applyRecord(b, rec)
}

func applyRecord(kv kvWriter, rec eventlog.Record) error {
	events, err := decodeRecord(rec.Subject, rec.Events)
	if err != nil {
		return fmt.Errorf("%s #%d: %w", rec.Subject, rec.Seq, err)
	}
	if len(events) > 0 {
		if err := applyEvents(kv, rec.Subject, events); err != nil {
			return fmt.Errorf("%s #%d: %w", rec.Subject, rec.Seq, err)
		}
	}
	return kv.Set(seqKey(rec.Subject), binary.BigEndian.AppendUint64(nil, rec.Seq))
}

func applyEvents(kv kvWriter, subject string, events []schemas.Event) error {
	switch {
	case strings.HasPrefix(subject, appSubjectPrefix):
		return applyApp(kv, events)
	case strings.HasPrefix(subject, userSubjectPrefix):
		return applyUser(kv, events)
	case strings.HasPrefix(subject, groupSubjectPrefix):
		return applyGroup(kv, events)
	case strings.HasPrefix(subject, grantSubjectPrefix):
		return applyGrants(kv, events)
	}
	return poison("identity events on unknown subject %s", subject)
}

// foldStored loads the stored state at key into st and applies events.
func foldStored(kv kvReader, key []byte, st aggregate, events []schemas.Event) (found bool, err error) {
	if found, err = getValue(kv, key, st); err != nil {
		return false, err
	}
	for _, ev := range events {
		if err := st.apply(ev); err != nil {
			return false, err
		}
	}
	return found, nil
}

func applyApp(kv kvWriter, events []schemas.Event) error {
	id := idOf(events[0])
	var before, after appState
	if _, err := getValue(kv, appKey(id), &before); err != nil {
		return err
	}
	if _, err := foldStored(kv, appKey(id), &after, events); err != nil {
		return err
	}
	var groupsAfter []string
	if !after.Deleted {
		groupsAfter = after.Groups
	}
	if err := indexMembership(kv, AppPrefix+id, before.Groups, groupsAfter); err != nil {
		return err
	}
	for _, k := range before.Keys {
		if _, still := after.key(k.ID); !still || after.Deleted {
			if err := kv.Delete(keyKey(k.ID)); err != nil {
				return err
			}
		}
	}
	if after.Deleted {
		return kv.Delete(appKey(id))
	}
	for _, k := range after.Keys {
		if _, had := before.key(k.ID); !had {
			if err := kv.Set(keyKey(k.ID), []byte(id)); err != nil {
				return err
			}
		}
	}
	return putValue(kv, appKey(id), &after)
}

func applyUser(kv kvWriter, events []schemas.Event) error {
	id := idOf(events[0])
	var before, after userState
	if _, err := getValue(kv, userKey(id), &before); err != nil {
		return err
	}
	if _, err := foldStored(kv, userKey(id), &after, events); err != nil {
		return err
	}
	var groupsAfter []string
	if !after.Deleted {
		groupsAfter = after.Groups
	}
	if err := indexMembership(kv, id, before.Groups, groupsAfter); err != nil {
		return err
	}
	if after.Deleted {
		return kv.Delete(userKey(id))
	}
	return putValue(kv, userKey(id), &after)
}

// indexMembership keeps the group → member index of member (a user id or
// "app:<id>") in step with its groups.
func indexMembership(kv kvWriter, member string, before, after []string) error {
	for _, g := range before {
		if !slices.Contains(after, g) {
			if err := kv.Delete(memberKey(g, member)); err != nil {
				return err
			}
		}
	}
	for _, g := range after {
		if !slices.Contains(before, g) {
			if err := kv.Set(memberKey(g, member), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func applyGroup(kv kvWriter, events []schemas.Event) error {
	id := idOf(events[0])
	var g groupState
	if _, err := foldStored(kv, groupKey(id), &g, events); err != nil {
		return err
	}
	if g.Deleted {
		return kv.Delete(groupKey(id))
	}
	return putValue(kv, groupKey(id), &g)
}

func applyGrants(kv kvWriter, events []schemas.Event) error {
	for _, ev := range events {
		e := ev.(*schemas.GrantSet) // decodeRecord put only GrantSet on grant subjects
		s := Subject{Type: e.SubjectType, ID: e.SubjectID}
		t := Target{Type: e.TargetType, ID: e.TargetID}
		if len(e.Access) == 0 {
			if err := kv.Delete(grantKey(t, s)); err != nil {
				return err
			}
			if err := kv.Delete(bySubjectKey(s, t)); err != nil {
				return err
			}
			continue
		}
		if err := putValue(kv, grantKey(t, s), e.Access); err != nil {
			return err
		}
		if err := putValue(kv, bySubjectKey(s, t), e.Access); err != nil {
			return err
		}
	}
	return nil
}
