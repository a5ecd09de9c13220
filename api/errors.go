package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// refusal is a refusal whose answer says less than the refusal itself:
// the caller reads msg, the audit trail the cause (which access on which
// target was missing).
type refusal struct {
	msg   string
	cause error
}

func (e *refusal) Error() string { return e.msg }
func (e *refusal) Unwrap() error { return e.cause }

// uniformRefusal answers the refusal err with a message that is the same
// whatever access was missing.
func uniformRefusal(err error, format string, args ...any) error {
	return &refusal{msg: fmt.Sprintf(format, args...) + ": " + fault.ErrForbidden.Error(), cause: err}
}

// errMethodNotAllowed is a path served for other methods only.
var errMethodNotAllowed = errors.New("method not allowed")

// statusOf is the one place that maps errors to HTTP status codes.
func statusOf(err error) int {
	switch {
	case errors.Is(err, errMethodNotAllowed):
		return http.StatusMethodNotAllowed
	case errors.Is(err, fault.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, fault.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, fault.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, fault.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, fault.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, fault.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, fault.ErrRateLimited):
		return http.StatusTooManyRequests
	case errors.Is(err, fault.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		eventlog.Unavailable(err):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// errorBody is Conductor's error body, plus Orkes's "error" code on token
// problems (INVALID_TOKEN, EXPIRED_TOKEN: the SDKs refresh and retry on
// exactly these).
type errorBody struct {
	conductor.ErrorResponse
	Error string `json:"error,omitempty"`
}

// writeError answers with Conductor's error body. Server errors are logged
// and answered with a generic message: their text may name internals.
// A 503 says why (the NATS server out of reach, a read model behind), for
// its caller to judge when to try again.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	s.answerError(w, r, err, false)
}

// writePublicError is writeError for a caller nobody authenticated (a
// webhook's sender): a 503 too is answered with a generic message, since
// its text names internals as a 500's does, and the log alone says why.
func (s *Server) writePublicError(w http.ResponseWriter, r *http.Request, err error) {
	s.answerError(w, r, err, true)
}

func (s *Server) answerError(w http.ResponseWriter, r *http.Request, err error, public bool) {
	status := statusOf(err)
	body := errorBody{ErrorResponse: conductor.ErrorResponse{Status: status, Message: err.Error(), Instance: "flowvault",
		Retryable: status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests || errors.Is(err, fault.ErrStale)}}
	var te *auth.TokenError
	if errors.As(err, &te) {
		body.Error = te.Code
	}
	var rl *rateLimitedError
	if errors.As(err, &rl) {
		w.Header().Set("Retry-After", strconv.Itoa(rl.seconds()))
	}
	var ve *fault.ValidationError
	if errors.As(err, &ve) {
		body.Message = "Validation failed, check below errors for detail."
		for _, f := range ve.Fields {
			body.ValidationErrors = append(body.ValidationErrors, conductor.ValidationError{Path: f.Path, Message: f.Message, InvalidValue: f.Value})
		}
	}
	if status == http.StatusForbidden {
		s.recordDenied(r, err)
	}
	switch {
	case errors.Is(err, context.Canceled) && errors.Is(r.Context().Err(), context.Canceled):
		// The client closed its connection while the request waited (a
		// synchronous execution, a read of its own write): not the server's
		// failure, and nobody reads the answer.
		s.deps.Logger.Debug("request canceled by its client", logkey.Method, r.Method, logkey.Path, r.URL.Path)
	case status >= 500:
		s.deps.Logger.Error("request failed", logkey.Method, r.Method, logkey.Path, r.URL.Path, logkey.Err, err)
	}
	switch {
	case status == http.StatusInternalServerError:
		body.Message = "internal error"
	case public && status >= 500:
		body.Message = strings.ToLower(http.StatusText(status))
	}
	writeJSON(w, status, body)
}

// errorMessage is the message an error shows a client in a response that
// reports several outcomes (bulk results): its text, or a generic one for
// internal errors, whose text may name internals.
func errorMessage(err error) string {
	if statusOf(err) == http.StatusInternalServerError {
		return "internal error"
	}
	return err.Error()
}

// decodeJSON reads a JSON request body into v, limited to maxBytes. Errors
// are ErrInvalid or ErrTooLarge with a message that says what was wrong.
func decodeJSON(w http.ResponseWriter, r *http.Request, maxBytes int64, v any) error {
	body, err := readBody(w, r, maxBytes)
	if err != nil {
		return err
	}
	return decodeBody(body, v)
}

// decodeBody is decodeJSON of a body already read.
func decodeBody(body []byte, v any) error { return decodeBodyWith(conductor.Unmarshal, body, v) }

// decodeBodyWith is decodeBody decoding with unmarshal.
func decodeBodyWith(unmarshal func([]byte, any) error, body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return fault.Invalid("request body is empty")
	}
	if err := unmarshal(body, v); err != nil {
		return decodeError("body", err, v)
	}
	return nil
}

// atoi reads an integer query parameter as a body's integer field is
// read: 2, or a whole number written 2.0 or 1e2.
func atoi(v string) (int, error) {
	n, err := conductor.ParseInt(v, strconv.IntSize)
	return int(n), err
}

func readBody(w http.ResponseWriter, r *http.Request, maxBytes int64) ([]byte, error) {
	body, err := io.ReadAll(maxBytesReader(w, r.Body, maxBytes))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, fmt.Errorf("request body over %d bytes: %w", maxBytes, fault.ErrTooLarge)
	case err != nil:
		return nil, fault.Invalid("read body: %v", err)
	case nesting(body) > maxBodyNesting:
		return nil, fault.Invalid("request body nested too deep: more than %d arrays and objects", maxBodyNesting)
	}
	return body, nil
}

// maxBodyNesting bounds how deep a request body nests, checked before it
// is decoded: the log holds nothing deeper (its records nest a few levels
// more), and a definition's tasks each decode their own JSON, so decoding
// one costs its size times its depth.
const maxBodyNesting = 256

// nesting returns how deep the arrays and objects of JSON text b nest.
func nesting(b []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// writeText answers with a text/plain body (Conductor returns ids this way).
func writeText(w http.ResponseWriter, status int, s string) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(s))
}

// writeNoContent answers an empty success the way the SDKs accept.
func writeNoContent(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }
