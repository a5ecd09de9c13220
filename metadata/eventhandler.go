package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/taglimit"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// AddEventHandlers creates each event handler (POST /api/event). Every
// handler is validated, and every name looked up, before anything is
// written; a name that exists already is a conflict, as in Conductor,
// which has PUT for a change. The handlers are then stored one by one: if
// storing one fails (a name created meanwhile included), those before it
// stay stored.
func (s *Store) AddEventHandlers(ctx context.Context, handlers []*conductor.EventHandler, principal string) error {
	if len(handlers) == 0 {
		return fault.Invalid("event handler list must not be empty")
	}
	regs := make([]registration, len(handlers))
	ve := &fault.ValidationError{}
	for i, h := range handlers {
		reg, err := s.prepareEventHandler(h, fmt.Sprintf("[%d]", i))
		if err := collect(ve, err); err != nil {
			return err
		}
		regs[i] = reg
		for _, prior := range regs[:i] {
			if prior.name == reg.name && reg.name != "" {
				ve.Add(fmt.Sprintf("[%d].name", i), "event handler %s is in the list twice", reg.name)
			}
		}
	}
	if err := ve.Err(); err != nil {
		return err
	}
	for _, reg := range regs {
		_, exists, err := readDef(s.reader, eventHandlerKey(reg.name))
		switch {
		case err != nil:
			return err
		case exists:
			return eventHandlerExists(reg.name)
		}
	}
	for _, reg := range regs {
		if err := s.putEventHandler(ctx, reg, principal, false); err != nil {
			return err
		}
	}
	return nil
}

// UpdateEventHandler replaces event handler h.Name (PUT /api/event),
// which must exist.
func (s *Store) UpdateEventHandler(ctx context.Context, h *conductor.EventHandler, principal string) error {
	reg, err := s.prepareEventHandler(h, "")
	if err != nil {
		return err
	}
	return s.putEventHandler(ctx, reg, principal, true)
}

func (s *Store) putEventHandler(ctx context.Context, reg registration, principal string, replace bool) error {
	return s.update(ctx, EventHandlerSubject(reg.name), principal, writeOpts(nil), func(v view) ([]schemas.Event, error) {
		_, exists, err := readDef(v.KV, eventHandlerKey(reg.name))
		switch {
		case err != nil:
			return nil, err
		case exists && !replace:
			return nil, eventHandlerExists(reg.name)
		case !exists && replace:
			return nil, eventHandlerNotFound(reg.name)
		}
		return []schemas.Event{&schemas.EventHandlerSaved{Name: reg.name, Def: reg.raw, Time: s.millis(), By: principal}}, nil
	})
}

// RemoveEventHandler removes event handler name (DELETE /api/event/{name}).
// An unknown name fails with fault.ErrNotFound.
func (s *Store) RemoveEventHandler(ctx context.Context, name, principal string) error {
	return s.update(ctx, EventHandlerSubject(name), principal, writeOpts(nil), func(v view) ([]schemas.Event, error) {
		_, exists, err := readDef(v.KV, eventHandlerKey(name))
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, eventHandlerNotFound(name)
		}
		return []schemas.Event{&schemas.EventHandlerRemoved{Name: name, Time: s.millis(), By: principal}}, nil
	})
}

// GetEventHandler returns event handler name, or fault.ErrNotFound.
func (s *Store) GetEventHandler(_ context.Context, name string) (*conductor.EventHandler, error) {
	d, found, err := readDef(s.reader, eventHandlerKey(name))
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, eventHandlerNotFound(name)
	}
	return parseEventHandler(d.JSON)
}

// EventHandlers returns every event handler, sorted by name.
func (s *Store) EventHandlers(_ context.Context) ([]*conductor.EventHandler, error) {
	return listAll(s.reader, eventKeyPrefix, "event handlers", parseEventHandler)
}

// EventHandlerTags returns the tags of event handler name ([] when it has
// none), or fault.ErrNotFound.
func (s *Store) EventHandlerTags(ctx context.Context, name string) ([]conductor.Tag, error) {
	h, err := s.GetEventHandler(ctx, name)
	if err != nil {
		return nil, err
	}
	if h.Tags == nil {
		return []conductor.Tag{}, nil
	}
	return h.Tags, nil
}

// AddEventHandlerTags adds tags to event handler name (PUT
// /api/event/{name}/tags); those it has are kept once.
func (s *Store) AddEventHandlerTags(ctx context.Context, name string, tags []conductor.Tag, principal string) error {
	return s.changeEventHandlerTags(ctx, name, tags, principal, false, withTags)
}

// DeleteEventHandlerTags removes tags from event handler name (DELETE
// /api/event/{name}/tags); those it lacks are ignored.
func (s *Store) DeleteEventHandlerTags(ctx context.Context, name string, tags []conductor.Tag, principal string) error {
	return s.changeEventHandlerTags(ctx, name, tags, principal, true, withoutTags)
}

// changeEventHandlerTags saves the handler again with the tag set op
// computes (changeTagsOf).
func (s *Store) changeEventHandlerTags(ctx context.Context, name string, tags []conductor.Tag, principal string,
	removal bool, op func(cur, given []schemas.DefTag) []schemas.DefTag) error {
	return s.changeTagsOf(ctx, "event handler "+name, EventHandlerSubject(name), eventHandlerKey(name), eventHandlerNotFound(name), tags, principal, removal, op,
		func(def []byte, now int64) schemas.Event {
			return &schemas.EventHandlerSaved{Name: name, Def: def, Time: now, By: principal}
		})
}

// changeTagsOf saves the definition at key (an event handler, a webhook,
// which keep their tags in their own JSON, as the client sent them) again
// with the tag set op computes, unless it is the set it has: the rest of
// that JSON is kept byte for byte. The set is held to MaxTags, as a
// definition name's is; what names the definition in a refusal. A
// removal's tags are taken as sent (givenTags). saved makes the event
// that saves it.
func (s *Store) changeTagsOf(ctx context.Context, what, subject string, key []byte, notFound error, tags []conductor.Tag, principal string,
	removal bool, op func(cur, given []schemas.DefTag) []schemas.DefTag, saved func(def []byte, now int64) schemas.Event) error {
	given, err := givenTags(tags, removal)
	if err != nil {
		return err
	}
	return s.update(ctx, subject, principal, writeOpts(nil), func(v view) ([]schemas.Event, error) {
		d, exists, err := readDef(v.KV, key)
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, notFound
		}
		var stored struct {
			Tags []conductor.Tag `json:"tags"`
		}
		// Read as the handler or webhook is: "Tags" is not its tags.
		if err := conductor.UnmarshalStored(d.JSON, &stored); err != nil {
			return nil, fmt.Errorf("%s: %w", subject, err)
		}
		cur := make([]schemas.DefTag, len(stored.Tags))
		for i, t := range stored.Tags {
			cur[i] = schemas.DefTag{Key: t.Key, Value: t.Value}
		}
		next := op(cur, given)
		if slices.Equal(cur, next) {
			return nil, nil
		}
		if err := taglimit.Fit("", what, len(cur), len(next)); err != nil {
			return nil, err
		}
		encoded, err := json.Marshal(conductorTags(next))
		if err != nil {
			return nil, err
		}
		// The definition as its client sent it: what the server adds to
		// the stored JSON, it adds again.
		def, err := mergeObject(d.JSON, []field{{key: jsonTags, value: encoded}}, jsonCreateTime, jsonUpdateTime, jsonCreatedBy, jsonUpdatedBy)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", subject, err)
		}
		return []schemas.Event{saved(def, s.millis())}, nil
	})
}

func (s *Store) prepareEventHandler(h *conductor.EventHandler, prefix string) (registration, error) {
	if h == nil {
		return registration{}, nullDef(prefix)
	}
	raw, _, err := rawJSON(h.Raw, h)
	if err != nil {
		return registration{}, err
	}
	if _, err := topLevel(raw, prefix); err != nil {
		return registration{}, err
	}
	ve := &fault.ValidationError{}
	checkName(ve, at(prefix, "name"), h.Name)
	// Kept in the handler's JSON, its tags are held to what a tag change
	// of it (changeTagsOf) and a definition's are, and kept as checkTags
	// keeps them: a tag's deprecated type (any length) and repeats
	// (any number) are not.
	tags := checkTags(ve, at(prefix, jsonTags), h.Tags)
	if h.Tags != nil && len(ve.Fields) == 0 {
		encoded, err := json.Marshal(conductorTags(tags))
		if err == nil {
			raw, err = mergeObject(raw, []field{{key: jsonTags, value: encoded}})
		}
		if err != nil {
			return registration{}, fmt.Errorf("event handler %s: %w", h.Name, err)
		}
	}
	if s.opts.ValidateEventHandler != nil {
		err := s.opts.ValidateEventHandler(h)
		var hv *fault.ValidationError
		switch {
		case errors.As(err, &hv):
			for _, f := range hv.Fields {
				ve.Add(at(prefix, f.Path), "%s", f.Message)
			}
		case err != nil:
			ve.Add(at(prefix, ""), "%v", err)
		}
	}
	for i, a := range h.Actions {
		if def := a.Params()[conductor.InlineWorkflowDef]; a.Action == conductor.ActionStartWorkflow && def != nil {
			s.checkInlineDef(ve, at(prefix, fmt.Sprintf("actions[%d].%s.%s", i, a.Action, conductor.InlineWorkflowDef)), def, a.Params()["name"])
		}
	}
	return registration{name: h.Name, raw: raw}, ve.Err()
}

// checkInlineDef validates the definition a start_workflow action starts
// inline as a start's would be: stored unchecked, one without tasks
// failed every event's start.
func (s *Store) checkInlineDef(ve *fault.ValidationError, path string, v, name any) {
	b, err := json.Marshal(v)
	var def conductor.WorkflowDef
	if err == nil {
		err = conductor.Unmarshal(b, &def)
	}
	if err != nil {
		ve.Add(path, "not a workflow definition: %v", err)
		return
	}
	if n, ok := name.(string); ok && def.Name == "" {
		def.Name = n // as the start takes it
		if strings.Contains(n, "${") {
			def.Name = "named_by_the_event" // any valid name stands in for the event's
		}
	}
	if _, err := checkWorkflow(&def, path, s.opts.ValidateWorkflow, false); collect(ve, err) != nil {
		ve.Add(path, "%v", err)
	}
}

func eventHandlerExists(name string) error {
	return fault.Conflict("EventHandler with name %s already exists!", name)
}

func eventHandlerNotFound(name string) error {
	return fault.NotFound("EventHandler with name %s not found!", name)
}

// parseEventHandler decodes stored JSON; the result's Raw is that JSON.
func parseEventHandler(b []byte) (*conductor.EventHandler, error) {
	var h conductor.EventHandler
	if err := conductor.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("parse stored event handler: %w", err)
	}
	return &h, nil
}
