// Package workers is how tasks reach workers and results come back: the
// NATS protocol (documented in docs/worker-protocol.md), the Go worker SDK,
// and the engine's system workers (HTTP, ...).
package workers

import (
	"fmt"
	"strings"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Subjects and names of the worker protocol. They are a public contract:
// workers in other languages hard-code them.
const (
	// DispatchPrefix starts every dispatch subject: fv.task.<type>[.<domain>].
	DispatchPrefix = "fv.task."
	// TakePrefix starts the take request subject: fv.engine.take.<type>.
	TakePrefix = "fv.engine.take."
	// ResultPrefix starts the result request subject: fv.engine.result.<type>.
	ResultPrefix = "fv.engine.result."
	// PollPrefix starts the poll request subject: fv.engine.poll.<type>,
	// or fv.engine.poll.<type>.<domain> for a task domain's queue.
	PollPrefix = "fv.engine.poll."
	// PollEndPrefix starts the subject a worker ends its waiting polls
	// on: fv.engine.pollend.<type>.
	PollEndPrefix = "fv.engine.pollend."
	// EngineQueue is the queue group engines answer take and result
	// requests in: each request reaches one engine.
	EngineQueue = "fv-engines"
	// ConsumerPrefix starts the durable consumer a queue's workers share.
	ConsumerPrefix = "fvq_"
)

// DispatchSubject is the subject a task of taskType (in domain, "" for none)
// is announced on.
func DispatchSubject(taskType, domain string) string {
	s := DispatchPrefix + eventlog.Token(taskType)
	if domain != "" {
		s += "." + eventlog.Token(domain)
	}
	return s
}

// ConsumerName is the durable JetStream consumer on the FV_DISPATCH stream
// that workers of taskType (in domain) pull from.
func ConsumerName(taskType, domain string) string {
	s := ConsumerPrefix + consumerToken(taskType)
	if domain != "" {
		s += "@" + consumerToken(domain)
	}
	return s
}

// consumerToken escapes what consumer names may not contain beyond what a
// subject token may not: path separators.
func consumerToken(s string) string {
	t := eventlog.Token(s)
	t = strings.ReplaceAll(t, "/", "%2F")
	t = strings.ReplaceAll(t, "\\", "%5C")
	return strings.ReplaceAll(t, "@", "%40")
}

// The take, poll and result subjects name a queue: a task type and a
// domain ("" for none), as a queue's consumer does, so that a worker's
// credentials can allow it some domains' queues and not others.

// TakeSubject is where a worker asks for a dispatched task of taskType in
// domain.
func TakeSubject(taskType, domain string) string { return queueSubject(TakePrefix, taskType, domain) }

// PollSubject is where a worker waits at an engine for a task of taskType
// in domain.
func PollSubject(taskType, domain string) string { return queueSubject(PollPrefix, taskType, domain) }

// ResultSubject is where a worker reports on a task of taskType in domain.
func ResultSubject(taskType, domain string) string {
	return queueSubject(ResultPrefix, taskType, domain)
}

func queueSubject(prefix, taskType, domain string) string {
	s := prefix + eventlog.Token(taskType)
	if domain != "" {
		s += "." + eventlog.Token(domain)
	}
	return s
}

// ParseQueueSubject returns the task type and domain of a take, poll or
// result subject (prefix TakePrefix, PollPrefix or ResultPrefix).
func ParseQueueSubject(prefix, subject string) (taskType, domain string, err error) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return "", "", fmt.Errorf("%q is not under %s", subject, prefix)
	}
	typeTok, domainTok, withDomain := strings.Cut(rest, ".")
	if taskType, err = eventlog.Untoken(typeTok); err != nil || taskType == "" {
		return "", "", fmt.Errorf("%q: want %s<type>[.<domain>]", subject, prefix)
	}
	if withDomain {
		if domain, err = eventlog.Untoken(domainTok); err != nil || domain == "" || strings.Contains(domainTok, ".") {
			return "", "", fmt.Errorf("%q: want %s<type>[.<domain>]", subject, prefix)
		}
	}
	return taskType, domain, nil
}

// PollEndSubject is where a worker ends its polls of taskType early.
func PollEndSubject(taskType string) string { return PollEndPrefix + eventlog.Token(taskType) }

// Dispatch is the body of a dispatch message: which task is available. It
// carries no input: inputs (with secrets resolved) travel only in the reply
// to a take request.
type Dispatch struct {
	TaskID             string `json:"taskId"`
	WorkflowInstanceID string `json:"workflowInstanceId"`
	TaskType           string `json:"taskType"`
	Domain             string `json:"domain,omitempty"`
	// Priority is the workflow's (1 highest to 99 lowest; 0, the default,
	// after them all).
	Priority int `json:"priority,omitempty"`
}

// TakeRequest asks the engine to hand a dispatched task to this worker.
type TakeRequest struct {
	TaskID             string `json:"taskId"`
	WorkflowInstanceID string `json:"workflowInstanceId"`
	WorkerID           string `json:"workerId,omitempty"`
	// WaitMs, if set, is how long the worker waits for the answer. A take
	// the engine records after that is handed out again at once, not left
	// to its response timeout: the worker that asked has given up on it.
	WaitMs int64 `json:"waitMs,omitempty"`
}

// TakeReply answers a TakeRequest: the task, IN_PROGRESS and owned by the
// worker, or an error (code "gone" when another worker has it or it is no
// longer needed: drop it).
type TakeReply struct {
	Task  *conductor.Task `json:"task,omitempty"`
	Error *Error          `json:"error,omitempty"`
}

// PollRequest asks an engine for the next task of the subject's type (in
// Domain), waiting up to WaitMs for one. It is published with a reply
// subject, an inbox the worker listens on, and answered there once: by a
// PollReply without a reply subject (no task, or an error), or by an offer,
// a PollReply with a task that carries a reply subject of its own. The
// worker answers the offer with an OfferReply: Accept, and the task is its
// own; anything else, or no answer within the engine's offer timeout, and
// the engine hands the task to someone else.
//
// PollID, if set, names the poll so that the worker can end it early with
// a PollEnd: a worker that stops does, so that no task is offered to a
// poll nobody answers any more. It must be unguessable (it is all a PollEnd
// needs to end the poll) and unique among the worker's polls.
type PollRequest struct {
	WorkerID string `json:"workerId,omitempty"`
	// Domain, if set, must be the poll subject's: a domain's queue is
	// polled on fv.engine.poll.<type>.<domain>. A result's Next waits for
	// tasks of the result subject's queue.
	Domain string `json:"domain,omitempty"`
	WaitMs int64  `json:"waitMs,omitempty"`
	PollID string `json:"pollId,omitempty"`
}

// PollEnd ends the poll PollID of the subject's type. It is published
// without a reply subject to every engine; the one that holds the poll
// answers it as if its wait had run out (or offers a task it had already
// taken for it, which the stopping worker refuses).
type PollEnd struct {
	PollID string `json:"pollId"`
}

// PollReply answers a PollRequest: a task (an offer), nothing (the wait
// ran out), or an error.
type PollReply struct {
	Task  *conductor.Task `json:"task,omitempty"`
	Error *Error          `json:"error,omitempty"`
}

// OfferReply answers an offer.
type OfferReply struct {
	Accept bool `json:"accept"`
}

// AcceptOffer and RefuseOffer are the OfferReply answers as the Go SDK
// writes them.
const (
	AcceptOffer = `{"accept":true}`
	RefuseOffer = `{"accept":false}`
)

// ResultRequest is a result request's body: a Conductor TaskResult and,
// from a worker that took the task over NATS, Lease, the task's pollCount
// in the take's reply. The engine ignores a result whose lease is not the
// task's latest take: its sender no longer holds the task (a callback put
// it back in the queue, and another take has it now), whatever its
// workerId says.
type ResultRequest struct {
	conductor.TaskResult
	Lease int `json:"lease,omitempty"`
	// Next, if set, makes the request also a poll for the worker's next
	// task of the same queue, waited for once the result is recorded (its
	// WorkerID defaults to the result's). The request must then have a
	// reply subject the worker listens on as on a poll's: the answer
	// comes once, when the poll is answered, and may be an offer.
	Next *PollRequest `json:"next,omitempty"`
}

// ResultReply answers a result request (whose body is a Conductor
// TaskResult). OK means the result is durably recorded; Ignored means the
// task had already finished and the result changed nothing.
type ResultReply struct {
	OK      bool   `json:"ok"`
	Ignored bool   `json:"ignored,omitempty"`
	Error   *Error `json:"error,omitempty"`
	// Next answers the request's Next as a PollReply answers a poll: a
	// task (the reply is then an offer, with a reply subject to accept it
	// on), nothing, or an error. It is absent when the request had no
	// Next or the result was not recorded (Error), and from an engine that
	// does not know Next: poll as usual then.
	Next *PollReply `json:"next,omitempty"`
}

// Error is a protocol error.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Protocol error codes.
const (
	CodeGone        = "gone"        // the task is not available: drop the dispatch message
	CodeNotFound    = "not_found"   // no such workflow or task
	CodeInvalid     = "invalid"     // the request is malformed
	CodeUnavailable = "unavailable" // try again later
	CodeForbidden   = "forbidden"   // the credentials' principal may no longer take tasks of this type
	CodeInternal    = "internal"
)
