package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// EventHandlers keeps the event handlers (*metadata.Store).
type EventHandlers interface {
	AddEventHandlers(ctx context.Context, handlers []*conductor.EventHandler, principal string) error
	UpdateEventHandler(ctx context.Context, h *conductor.EventHandler, principal string) error
	RemoveEventHandler(ctx context.Context, name, principal string) error
	GetEventHandler(ctx context.Context, name string) (*conductor.EventHandler, error)
	EventHandlers(ctx context.Context) ([]*conductor.EventHandler, error)
	EventHandlerTags(ctx context.Context, name string) ([]conductor.Tag, error)
	AddEventHandlerTags(ctx context.Context, name string, tags []conductor.Tag, principal string) error
	DeleteEventHandlerTags(ctx context.Context, name string, tags []conductor.Tag, principal string) error
}

var _ EventHandlers = (*metadata.Store)(nil)

// eventRoutes serve Conductor's event handlers. Managing them is the
// ADMIN role's (Orkes's EVENT_HANDLER_MANAGEMENT): a handler's actions run
// as whoever saved it last, on events any workflow's EVENT task may send.
func (s *Server) eventRoutes() {
	s.route("GET /api/event", auth.Admin, s.listEventHandlers)
	s.route("POST /api/event", auth.Admin, s.addEventHandlers)
	s.route("PUT /api/event", auth.Admin, s.updateEventHandler)
	// GET /api/event/handler/{name} and GET /api/event/{name}/tags both
	// match /api/event/handler/tags, which net/http refuses to register:
	// one pattern serves both, the literal "handler" first, as Spring
	// matches Orkes's.
	s.route("GET /api/event/{a}/{b}", auth.Admin, s.pathPair(
		map[string]http.HandlerFunc{"handler": s.getEventHandler},
		map[string]http.HandlerFunc{"tags": s.getEventHandlerTags}))
	s.route("GET /api/event/{event}", auth.Admin, s.eventHandlersFor)
	// Orkes's paths for event executions and messages, queue
	// configuration and incoming events, which are not served: not
	// handlers of events named "execution" or "message", and a POST is
	// not answered 405 as if the SDK had used the wrong method of a path
	// served for GET.
	for _, p := range []struct{ pattern, feature string }{
		{"GET /api/event/execution", "event executions"},
		{"GET /api/event/execution/{name}", "event executions"},
		{"GET /api/event/message", "event messages"},
		{"GET /api/event/message/{event}", "event messages"},
		{"GET /api/event/queue/config", "event queue configurations"},
		{"GET /api/event/queue/config/{queueType}/{queueName}", "event queue configurations"},
		{"PUT /api/event/queue/config/{queueType}/{queueName}", "event queue configurations"},
		{"DELETE /api/event/queue/config/{queueType}/{queueName}", "event queue configurations"},
		{"POST /api/event/queue/connectivity", "event queue connectivity tests"},
		{"POST /api/event/handleIncomingEvent", "incoming events"},
	} {
		s.route(p.pattern, auth.Admin, s.notServed(p.feature))
	}
	s.route("DELETE /api/event/{name}", auth.Admin, s.removeEventHandler)
	s.route("PUT /api/event/{name}/tags", auth.Admin, s.changeEventHandlerTags(s.deps.EventHandlers.AddEventHandlerTags))
	s.route("DELETE /api/event/{name}/tags", auth.Admin, s.changeEventHandlerTags(s.deps.EventHandlers.DeleteEventHandlerTags))
}

func (s *Server) getEventHandlerTags(w http.ResponseWriter, r *http.Request) {
	tags, err := s.deps.EventHandlers.EventHandlerTags(r.Context(), r.PathValue("name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tags)
}

// changeEventHandlerTags adds or removes the tags in the body (an array,
// as the SDKs send, or one tag).
func (s *Server) changeEventHandlerTags(change func(ctx context.Context, name string, tags []conductor.Tag, principal string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var tags tagList
		err := decodeJSON(w, r, maxMetadataBody, &tags)
		if err == nil {
			err = change(r.Context(), r.PathValue("name"), tags, principal(r))
		}
		s.eventHandlersChanged(w, r, err)
	}
}

// addEventHandlers is POST /api/event: a list of handlers, as Orkes and
// its SDKs send, or one handler, as Conductor OSS takes.
func (s *Server) addEventHandlers(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, maxMetadataBody)
	var handlers []*conductor.EventHandler
	if err == nil {
		if bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
			var h conductor.EventHandler
			err = decodeBody(body, &h)
			handlers = []*conductor.EventHandler{&h}
		} else {
			err = decodeBody(body, &handlers)
		}
	}
	if err == nil {
		err = s.refuseMaskedHandlerInput(r.Context(), handlers, true)
	}
	if err == nil {
		err = s.deps.EventHandlers.AddEventHandlers(r.Context(), handlers, principal(r))
	}
	s.eventHandlersChanged(w, r, err)
}

// updateEventHandler is PUT /api/event: a handler that exists.
func (s *Server) updateEventHandler(w http.ResponseWriter, r *http.Request) {
	var h conductor.EventHandler
	err := decodeJSON(w, r, maxMetadataBody, &h)
	if err == nil {
		err = s.refuseMaskedHandlerInput(r.Context(), []*conductor.EventHandler{&h}, false)
	}
	if err == nil {
		err = s.deps.EventHandlers.UpdateEventHandler(r.Context(), &h, principal(r))
	}
	s.eventHandlersChanged(w, r, err)
}

// removeEventHandler is DELETE /api/event/{name}.
func (s *Server) removeEventHandler(w http.ResponseWriter, r *http.Request) {
	s.eventHandlersChanged(w, r, s.deps.EventHandlers.RemoveEventHandler(r.Context(), r.PathValue("name"), principal(r)))
}

// eventHandlersChanged answers a change (err), once this server's
// listener follows it: an event published after the answer meets the
// handlers as they are now.
func (s *Server) eventHandlersChanged(w http.ResponseWriter, r *http.Request, err error) {
	if err == nil && s.deps.EventListener != nil {
		err = s.deps.EventListener.Sync(r.Context())
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

func (s *Server) listEventHandlers(w http.ResponseWriter, r *http.Request) {
	s.writeEventHandlers(w, r, func(*conductor.EventHandler) bool { return true })
}

// eventHandlersFor is GET /api/event/{event}: the handlers of one event,
// only the active ones unless activeOnly=false.
func (s *Server) eventHandlersFor(w http.ResponseWriter, r *http.Request) {
	activeOnly, err := queryBool(r, "activeOnly", true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	event := r.PathValue("event")
	s.writeEventHandlers(w, r, func(h *conductor.EventHandler) bool { return h.Event == event && (h.Active || !activeOnly) })
}

func (s *Server) writeEventHandlers(w http.ResponseWriter, r *http.Request, keep func(*conductor.EventHandler) bool) {
	all, err := s.deps.EventHandlers.EventHandlers(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	raws := []json.RawMessage{}
	for _, h := range all {
		if !keep(h) {
			continue
		}
		raw, err := s.maskedHandler(r.Context(), h)
		if err != nil {
			// A list whose masking cannot be decided is not shown at
			// all, as a schedules' list is not.
			s.writeError(w, r, err)
			return
		}
		raws = append(raws, raw)
	}
	writeRawArray(w, raws)
}

func (s *Server) getEventHandler(w http.ResponseWriter, r *http.Request) {
	h, err := s.deps.EventHandlers.GetEventHandler(r.Context(), r.PathValue("name"))
	var raw json.RawMessage
	if err == nil {
		raw, err = s.maskedHandler(r.Context(), h)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeRawJSON(w, http.StatusOK, raw)
}
