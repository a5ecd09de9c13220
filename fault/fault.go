// Package fault defines the kinds of failure that callers branch on across
// flowvault's packages. Domain packages wrap these sentinels with context
// (fmt.Errorf("workflow %s: %w", id, fault.ErrNotFound)); the api package maps
// them to HTTP status codes in one place.
package fault

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNotFound: the named resource does not exist (or, for callers who may
	// not know, is not visible to them).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request contradicts the resource's current state.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request is malformed or fails validation.
	ErrInvalid = errors.New("invalid")
	// ErrForbidden: the caller is known but may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthorized: the caller could not be authenticated.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrTooLarge: the request or a value exceeds a size limit.
	ErrTooLarge = errors.New("too large")
	// ErrUnavailable: a dependency is down; the request may be retried.
	ErrUnavailable = errors.New("unavailable")
	// ErrRateLimited: the caller sent too many requests; retry later.
	ErrRateLimited = errors.New("rate limited")
	// ErrStale: a write checked on one state of its target found another
	// when it applied, and wrote nothing; the same request, checked again,
	// may succeed. It is a conflict: errors.Is(err, ErrConflict) holds.
	ErrStale = errors.New("changed while checked")
	// ErrSecretInName: a decision would name a task (its name, reference
	// name or domain, which are shown, searched and make its queue's
	// subject), or the secret an UPDATE_SECRET writes, with a value
	// resolved from a secret or sealed by its workflow; nothing of it was
	// recorded. It is invalid: errors.Is(err,
	// ErrInvalid) holds.
	ErrSecretInName = errors.New("a task would be named with a secret value")
)

// FieldError names one invalid field by its JSON path.
type FieldError struct {
	Path    string
	Message string
	Value   any
}

// ValidationError lists every invalid field of a request. It wraps ErrInvalid.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Path + ": " + f.Message
	}
	return "validation failed: " + strings.Join(parts, "; ")
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Add records an invalid field.
func (e *ValidationError) Add(path, format string, args ...any) {
	e.Fields = append(e.Fields, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Err returns e when it holds errors and nil otherwise.
func (e *ValidationError) Err() error {
	if e == nil || len(e.Fields) == 0 {
		return nil
	}
	return e
}

// Within returns err with its fields' paths under prefix when it is a
// *ValidationError (a definition checked where another document holds
// it), and any other error as it is.
func Within(prefix string, err error) error {
	var ve *ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	out := &ValidationError{Fields: make([]FieldError, len(ve.Fields))}
	for i, f := range ve.Fields {
		out.Fields[i] = FieldError{Path: prefix + "." + f.Path, Message: f.Message}
		if f.Path == "" {
			out.Fields[i].Path = prefix
		}
	}
	return out
}

// Invalid returns an ErrInvalid error with a message.
func Invalid(format string, args ...any) error { return kinded(ErrInvalid, format, args) }

// NotFound returns an ErrNotFound error with a message.
func NotFound(format string, args ...any) error { return kinded(ErrNotFound, format, args) }

// Conflict returns an ErrConflict error with a message.
func Conflict(format string, args ...any) error { return kinded(ErrConflict, format, args) }

// RateLimited returns an ErrRateLimited error with a message.
func RateLimited(format string, args ...any) error { return kinded(ErrRateLimited, format, args) }

// SecretInName returns an ErrSecretInName error (an ErrInvalid too) with a
// message, which must not quote the name.
func SecretInName(format string, args ...any) error {
	return &secretInNameError{kindError{msg: fmt.Sprintf(format, args...), kind: ErrInvalid}}
}

type secretInNameError struct{ kindError }

func (e *secretInNameError) Unwrap() []error { return []error{ErrInvalid, ErrSecretInName} }

// Stale returns an ErrStale error (an ErrConflict too) with a message.
func Stale(format string, args ...any) error {
	return &staleError{kindError{msg: fmt.Sprintf(format, args...), kind: ErrConflict}}
}

type staleError struct{ kindError }

func (e *staleError) Unwrap() []error { return []error{ErrConflict, ErrStale} }

// kindError is a message of a kind: errors.Is finds the kind, and the
// message reads without it ("workflow w1 not found", not "workflow w1 not
// found: not found"), as API answers show it.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func kinded(kind error, format string, args []any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// kinds are the failures a client is told about in so many words.
var kinds = []error{ErrNotFound, ErrConflict, ErrInvalid, ErrForbidden, ErrUnauthorized, ErrTooLarge, ErrUnavailable, ErrRateLimited}

// Kind is the name of err's kind ("not found", "forbidden"…), or
// "internal error": what a log may say of an error whose text may quote
// data it must not show (an event's, a workflow's).
func Kind(err error) string {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	return "internal error"
}

// Refused reports whether err refuses the request as its sender made it
// (invalid, forbidden, conflicting, not found, too large, over a limit),
// rather than failing for a reason of the server's own.
func Refused(err error) bool {
	for _, k := range kinds {
		if k != ErrUnavailable && errors.Is(err, k) {
			return true
		}
	}
	return false
}

// Message is err's text as a client may read it where an error is reported
// among other outcomes (a bulk response): an error of a known kind says
// what went wrong; any other is internal, and its text may name internals
// (a subject, a path, a server's reply), so it reads "internal error".
func Message(err error) string {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return err.Error()
		}
	}
	return "internal error"
}
