package system

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// Publisher is the NATS connection an EVENT task publishes on.
type Publisher interface {
	PublishMsg(m *nats.Msg) error
	FlushWithContext(ctx context.Context) error
}

// Event runs Conductor's EVENT task: its input, with its workflow's id,
// name, version and correlation id, published as one JSON message to the
// NATS subject its sink names (nats:<subject>). The message id (header
// Nats-Msg-Id) is the task's id, so that a stream recording the subject
// keeps one copy of an event that a crash between publishing and
// recording made the engine publish twice. The task completes once the
// server has the message, or stays IN_PROGRESS with asyncComplete, for an
// update from outside.
//
// The input it publishes is the stored one: values under _secrets and
// _masked read "***", and the guard refuses a task that references a
// secret (guard.Prepare), since every subscriber of the subject, and every
// stream that records it, would get the value.
type Event struct {
	Conn Publisher
}

// Execute implements executor.SystemTask.
func (e Event) Execute(ctx context.Context, t *conductor.Task) conductor.TaskResult {
	sink, _ := t.InputData["sink"].(string)
	subject, err := natsSink(sink)
	if err != nil {
		return failed(conductor.TaskFailedWithTerminalError, "EVENT task %s: %v", t.ReferenceTaskName, err)
	}
	payload := maps.Clone(t.InputData)
	if payload == nil {
		payload = map[string]any{}
	}
	payload["workflowInstanceId"] = t.WorkflowInstanceID
	payload["workflowType"] = t.WorkflowType
	payload["workflowVersion"] = executor.WorkflowVersionFrom(ctx)
	payload["correlationId"] = nil // as Conductor's, for a workflow without one
	if t.CorrelationID != "" {
		payload["correlationId"] = t.CorrelationID
	}
	data, err := json.Marshal(payload)
	if err != nil {
		return failed(conductor.TaskFailedWithTerminalError, "EVENT task %s: encode the event: %v", t.ReferenceTaskName, err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(nats.MsgIdHdr, t.TaskID)
	msg.Header.Set(workers.EventHeader, t.TaskID)
	if err := e.Conn.PublishMsg(msg); err != nil {
		status := conductor.TaskFailed
		if errors.Is(err, nats.ErrMaxPayload) {
			status = conductor.TaskFailedWithTerminalError
		}
		return failed(status, "EVENT task %s: publish to %s: %v", t.ReferenceTaskName, sink, err)
	}
	// A published message is only buffered: the server has it once a
	// round trip after it has come back.
	if err := e.Conn.FlushWithContext(ctx); err != nil {
		return failed(conductor.TaskFailed, "EVENT task %s: publish to %s: %v", t.ReferenceTaskName, sink, err)
	}
	// The output is the event as its subscribers read it: sealed values
	// as "***", not as the envelopes the stored input holds, and integers
	// exact.
	var out map[string]any
	if err := conductor.Unmarshal(data, &out); err != nil {
		return failed(conductor.TaskFailedWithTerminalError, "EVENT task %s: %v", t.ReferenceTaskName, err)
	}
	out["event_produced"] = sink
	status := conductor.TaskCompleted
	if asyncComplete(t) {
		status = conductor.TaskInProgress
	}
	return conductor.TaskResult{Status: status, OutputData: out}
}

// natsSink returns the subject of a sink nats:<subject>, or
// nats:<subject>:<queue group> as Conductor's NATS module writes one whose
// listeners share a queue group: what follows the subject only matters to
// them. Conductor's other sinks (conductor, sqs, kafka, amqp) have no
// queue here.
func natsSink(sink string) (string, error) {
	prefix, subject, ok := strings.Cut(sink, ":")
	subject, _, _ = strings.Cut(subject, ":")
	switch {
	case sink == "":
		return "", errors.New("no sink: want nats:<subject>")
	case !ok || prefix != "nats":
		return "", fmt.Errorf("sink %q is not supported: flowvault publishes events to NATS, as nats:<subject>", sink)
	}
	if err := workers.CheckEventSubject(subject, false); err != nil {
		return "", fmt.Errorf("sink %q: %w", sink, err)
	}
	return subject, nil
}
