package executor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/logkey"
)

// streamUpdatedPrefix, followed by a stream's name, is where the NATS
// server announces a change of the stream's configuration.
const streamUpdatedPrefix = "$JS.EVENT.ADVISORY.STREAM.UPDATED."

// commandsRefresh bounds how long a change of the commands stream's
// subjects goes unseen when its announcement is lost: core NATS drops it
// while the connection is down, or behind a slow subscriber.
const commandsRefresh = 10 * time.Second

// watchCommandsSubjects reads the subjects the commands stream captures,
// and returns where a change of its configuration is announced from now
// on (refreshCommandsSubjects reads them again then).
func (e *Executor) watchCommandsSubjects(ctx context.Context) (<-chan struct{}, error) {
	changed := make(chan struct{}, 1)
	sub, err := e.log.Conn().Subscribe(streamUpdatedPrefix+eventlog.Commands.Name, func(*nats.Msg) {
		select {
		case changed <- struct{}{}:
		default: // a read is due already
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", streamUpdatedPrefix+eventlog.Commands.Name, err)
	}
	e.unsubscribeAtStop(sub)
	// Read once subscribed: a change made meanwhile is read again.
	if err := e.readCommandsSubjects(ctx); err != nil {
		return nil, err
	}
	return changed, nil
}

// refreshCommandsSubjects reads the commands stream's subjects again at
// each change announced on changed, and every commandsRefresh, until Stop.
func (e *Executor) refreshCommandsSubjects(changed <-chan struct{}) {
	tick := time.NewTicker(commandsRefresh)
	defer tick.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
		if err := e.readCommandsSubjects(e.ctx); err != nil && e.ctx.Err() == nil {
			e.cfg.Logger.Warn("commands stream's subjects not read; trying again", logkey.Stream, eventlog.Commands.Name, logkey.Err, err)
		}
	}
}

func (e *Executor) readCommandsSubjects(ctx context.Context) error {
	subjects, err := e.log.Subjects(ctx, eventlog.Commands.Name)
	if err != nil {
		return fmt.Errorf("read the subjects of %s: %w", eventlog.Commands.Name, err)
	}
	if was := e.commandsSubjects.Swap(&subjects); was == nil || !slices.Equal(*was, subjects) {
		e.cfg.Logger.Info("commands stream's subjects read", logkey.Stream, eventlog.Commands.Name, logkey.Subject, strings.Join(subjects, " "))
	}
	return nil
}

// capturedByCommands reports whether the commands stream captured m, a
// producer's start request, as published: an engine of an earlier
// version set its subjects so. A request with a message id is never
// left to it: stored here too, it starts the workflow its capture would
// (handleStartCommand derives both from the producer and the id), and
// the producer's id stays its own, which the stream's capture shares
// with every other producer's. Without an id, the two would be two
// starts.
func (e *Executor) capturedByCommands(m *nats.Msg) bool {
	subjects := e.commandsSubjects.Load()
	return m.Header.Get(jetstream.MsgIDHeader) == "" && subjects != nil && eventlog.Captures(*subjects, m.Subject)
}
