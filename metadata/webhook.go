package metadata

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// SaveWebhook stores webhook cfg under cfg.ID: a new one (POST
// /api/metadata/webhook), or, with replace, one that exists (PUT). The
// caller validates it (webhooks.Validate); its tags are held here to what
// a tag change of it (changeTagsOf) and a definition's are, and kept as
// checkTags keeps them (key and value, once). The read model adds who
// saved it and when.
func (s *Store) SaveWebhook(ctx context.Context, cfg *conductor.WebhookConfig, principal string, replace bool) error {
	ve := &fault.ValidationError{}
	tags := checkTags(ve, jsonTags, cfg.Tags)
	if err := ve.Err(); err != nil {
		return err
	}
	c := *cfg
	if c.Tags != nil {
		c.Tags = conductorTags(tags)
	}
	c.CreatedBy, c.UpdatedBy, c.CreateTime, c.UpdateTime = "", "", 0, 0
	raw, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	return s.update(ctx, WebhookSubject(c.ID), principal, writeOpts(nil), func(v view) ([]schemas.Event, error) {
		if err := webhookPresence(v, c.ID, replace); err != nil {
			return nil, err
		}
		return []schemas.Event{&schemas.WebhookSaved{ID: c.ID, Def: raw, Time: s.millis(), By: principal}}, nil
	})
}

// RemoveWebhook removes webhook id (DELETE /api/metadata/webhook/{id}).
func (s *Store) RemoveWebhook(ctx context.Context, id, principal string) error {
	return s.update(ctx, WebhookSubject(id), principal, writeOpts(nil), func(v view) ([]schemas.Event, error) {
		if err := webhookPresence(v, id, true); err != nil {
			return nil, err
		}
		return []schemas.Event{&schemas.WebhookRemoved{ID: id, Time: s.millis(), By: principal}}, nil
	})
}

// AddWebhookTags adds tags to webhook id (PUT
// /api/metadata/webhook/{id}/tags, Orkes's); those it has are kept once.
// Like any save of the webhook, it makes principal the one its deliveries
// act as.
func (s *Store) AddWebhookTags(ctx context.Context, id string, tags []conductor.Tag, principal string) error {
	return s.changeWebhookTags(ctx, id, tags, principal, false, withTags)
}

// DeleteWebhookTags removes tags from webhook id (DELETE
// /api/metadata/webhook/{id}/tags); those it lacks are ignored.
func (s *Store) DeleteWebhookTags(ctx context.Context, id string, tags []conductor.Tag, principal string) error {
	return s.changeWebhookTags(ctx, id, tags, principal, true, withoutTags)
}

func (s *Store) changeWebhookTags(ctx context.Context, id string, tags []conductor.Tag, principal string,
	removal bool, op func(cur, given []schemas.DefTag) []schemas.DefTag) error {
	return s.changeTagsOf(ctx, "webhook "+id, WebhookSubject(id), webhookKey(id), webhookNotFound(id), tags, principal, removal, op,
		func(def []byte, now int64) schemas.Event {
			return &schemas.WebhookSaved{ID: id, Def: def, Time: now, By: principal}
		})
}

// webhookPresence refuses to create webhook id if it exists, or to change
// it if it does not.
func webhookPresence(v view, id string, want bool) error {
	_, exists, err := readDef(v.KV, webhookKey(id))
	switch {
	case err != nil:
		return err
	case exists && !want:
		return fault.Conflict("webhook %s already exists", id)
	case !exists && want:
		return webhookNotFound(id)
	}
	return nil
}

// Webhook returns webhook id, or fault.ErrNotFound.
func (s *Store) Webhook(_ context.Context, id string) (*conductor.WebhookConfig, error) {
	d, found, err := readDef(s.reader, webhookKey(id))
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, webhookNotFound(id)
	}
	return parseWebhook(d.JSON)
}

// Webhooks returns every webhook, sorted by id.
func (s *Store) Webhooks(_ context.Context) ([]*conductor.WebhookConfig, error) {
	return listAll(s.reader, webhookKeyPrefix, "webhooks", parseWebhook)
}

func webhookNotFound(id string) error { return fault.NotFound("webhook %s not found", id) }

func parseWebhook(b []byte) (*conductor.WebhookConfig, error) {
	var c conductor.WebhookConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parse stored webhook: %w", err)
	}
	return &c, nil
}
