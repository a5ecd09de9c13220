package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/google/uuid"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/webhooks"
)

// Webhooks stores incoming webhooks' configurations (*metadata.Store).
type Webhooks interface {
	SaveWebhook(ctx context.Context, cfg *conductor.WebhookConfig, principal string, replace bool) error
	RemoveWebhook(ctx context.Context, id, principal string) error
	Webhook(ctx context.Context, id string) (*conductor.WebhookConfig, error)
	Webhooks(ctx context.Context) ([]*conductor.WebhookConfig, error)
	AddWebhookTags(ctx context.Context, id string, tags []conductor.Tag, principal string) error
	DeleteWebhookTags(ctx context.Context, id string, tags []conductor.Tag, principal string) error
}

// WebhookReceiver acts on deliveries (*webhooks.Receiver).
type WebhookReceiver interface {
	Deliver(ctx context.Context, id string, header http.Header, body []byte) (*webhooks.Delivered, error)
}

// maxWebhookBody bounds a delivery's payload.
const maxWebhookBody = 1 << 20

// webhookRoutes serve Orkes's incoming webhooks. Managing them is the
// ADMIN role's, as event handlers are: a delivery acts as whoever saved
// the webhook last. POST /webhook/{id} takes no token: its verifier
// decides.
func (s *Server) webhookRoutes() {
	s.route("GET /api/metadata/webhook", auth.Admin, s.listWebhooks)
	s.route("POST /api/metadata/webhook", auth.Admin, s.saveWebhook(false))
	s.route("GET /api/metadata/webhook/{id}", auth.Admin, s.getWebhook)
	s.route("PUT /api/metadata/webhook/{id}", auth.Admin, s.saveWebhook(true))
	s.route("DELETE /api/metadata/webhook/{id}", auth.Admin, s.removeWebhook)
	s.route("GET /api/metadata/webhook/{id}/tags", auth.Admin, s.getWebhookTags)
	s.route("PUT /api/metadata/webhook/{id}/tags", auth.Admin, s.changeWebhookTags(s.deps.Webhooks.AddWebhookTags))
	s.route("DELETE /api/metadata/webhook/{id}/tags", auth.Admin, s.changeWebhookTags(s.deps.Webhooks.DeleteWebhookTags))
	if s.deps.WebhookReceiver != nil {
		s.route("POST /webhook/{id}", auth.Rule{Public: true}, s.deliverWebhook)
	}
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) {
	list, err := s.deps.Webhooks.Webhooks(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	shown := make([]*conductor.WebhookConfig, 0, len(list))
	for _, c := range list {
		shown = append(shown, webhooks.Shown(c))
	}
	writeJSON(w, http.StatusOK, shown)
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request) {
	c, err := s.deps.Webhooks.Webhook(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, webhooks.Shown(c))
}

// saveWebhook creates a webhook under a new id and answers it as stored,
// or replaces the one in the path.
func (s *Server) saveWebhook(replace bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var c conductor.WebhookConfig
		err := decodeJSON(w, r, maxBodyBytes, &c)
		if err == nil {
			err = webhooks.Validate(&c)
		}
		if err == nil {
			c.ID = uuid.NewString()
			if replace {
				c.ID = r.PathValue("id")
			}
			err = s.deps.Webhooks.SaveWebhook(r.Context(), &c, principal(r), replace)
		}
		var saved *conductor.WebhookConfig
		if err == nil {
			saved, err = s.deps.Webhooks.Webhook(r.Context(), c.ID)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, webhooks.Shown(saved))
	}
}

func (s *Server) getWebhookTags(w http.ResponseWriter, r *http.Request) {
	c, err := s.deps.Webhooks.Webhook(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	tags := c.Tags
	if tags == nil {
		tags = []conductor.Tag{}
	}
	writeJSON(w, http.StatusOK, tags)
}

// changeWebhookTags adds (PUT) or removes (DELETE) tags, a list or one,
// as Orkes's webhook tags API and its SDKs send them.
func (s *Server) changeWebhookTags(change func(ctx context.Context, id string, tags []conductor.Tag, principal string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var tags tagList
		err := decodeJSON(w, r, maxMetadataBody, &tags)
		if err == nil {
			err = change(r.Context(), r.PathValue("id"), tags, principal(r))
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeNoContent(w)
	}
}

func (s *Server) removeWebhook(w http.ResponseWriter, r *http.Request) {
	if err := s.deps.Webhooks.RemoveWebhook(r.Context(), r.PathValue("id"), principal(r)); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

// deliverWebhook takes a delivery. A refused one is answered 401 and
// nothing more; why it was refused goes to the log, as why the server
// failed one does (answered 5xx with a generic message).
func (s *Server) deliverWebhook(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, maxWebhookBody)
	var out *webhooks.Delivered
	if err == nil {
		out, err = s.deps.WebhookReceiver.Deliver(r.Context(), r.PathValue("id"), r.Header, body)
	}
	switch {
	case errors.Is(err, webhooks.ErrUnverified):
		// A wrong signature is the sender's; a secret that cannot be read
		// is the webhook's, for an operator to mend.
		level := slog.LevelDebug
		if errors.Is(err, webhooks.ErrSecretUnreadable) {
			level = slog.LevelWarn
		}
		s.deps.Logger.Log(r.Context(), level, "webhook delivery refused", logkey.Webhook, r.PathValue("id"), logkey.Err, err)
		s.writeError(w, r, webhooks.ErrUnverified)
	case err != nil && out == nil:
		s.writePublicError(w, r, err)
	default:
		switch {
		case errors.Is(err, webhooks.ErrDuplicate):
			// A sender's retried delivery: its workflows were started by
			// the first, as the idempotency key is there to ensure.
			s.deps.Logger.Info("webhook delivery was a duplicate", logkey.Webhook, r.PathValue("id"), logkey.Err, err)
		case err != nil:
			// What it did is done; what it could not do is the server's
			// to report, not the sender's to retry.
			s.deps.Logger.Warn("webhook delivery partly failed", logkey.Webhook, r.PathValue("id"), logkey.Err, err)
		}
		writeJSON(w, http.StatusOK, out)
	}
}
