package eventlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/flowvault/flowvault/internal/logkey"
)

// A store that failed for want of disk space comes back by itself.
//
// nats-server keeps a stream's write error (a full disk) for the life of
// the stream (stream.werr and fileStore.werr are set once, never
// cleared), and takes JetStream down altogether for some errors
// (handleOutOfSpace, a permission error): a write to such a store is
// refused until the streams are made anew from their files, which a
// server restart does. Restarting JetStream in the process does it too,
// without the process: ShutdownJetStream stops each stream as the server's
// shutdown does (mset.stop without deleting: pending writes flushed,
// files kept), and EnableJetStream recovers them from their files as a
// start does; nats-server's own configuration reload turns JetStream on
// again that way (restartJetStream). Nothing on disk is removed or made
// again.
//
// So the embedded server's log watches its store (watchStore): once a
// stream failed a write, or JetStream is down, and the store's file
// system has room (resumeFree), it restarts JetStream with the
// configuration it started with, and runs a reconnection's checks before
// anything is written or read again: the streams must hold what the log
// saw acknowledged (checkStreams; one that lost records stops the log).
// Then FV_DISPATCH, kept in memory, is made again, and the OnReconnect
// hooks rebuild what lived in it. Not for a clustered server, whose stream
// steps down to another server on a write error, nor for an external
// one, which its operator runs; nor for a store out of file descriptors,
// which more disk does not help.

// storeCheckEvery is how often the log looks at its store: its health
// (nats-server's Healthz, what /health asks each probe) while it works,
// and its file system's free space while it does not.
const storeCheckEvery = 5 * time.Second

// Free space a failed store waits for before it restarts: a twentieth
// of its file system, at least resumeFreeMin and at most resumeFreeMax.
// A store restarted with a few blocks free would fail again at its first
// writes, and each restart reads every stream's files again; past a
// gigabyte the margin would only hold back a large disk.
const (
	resumeFreeMin = 16 << 20
	resumeFreeMax = 1 << 30
)

// resumeFree is the free space a file system of size bytes needs before a
// store on it that failed restarts.
func resumeFree(size uint64) uint64 {
	return min(max(size/20, resumeFreeMin), resumeFreeMax)
}

// recovers reports whether the log restarts its store once it failed
// and the disk has room again: an embedded server that is not part of a
// cluster.
func (l *Log) recovers() bool {
	return l.ns != nil && l.jsConfig != nil && !l.ns.JetStreamIsClustered()
}

// storeFailures returns the streams whose store failed a write for want
// of disk space, and whether JetStream is down (nats-server shuts it down
// for want of space, or for a permission refused). Other write errors
// (a file descriptor, a block directory removed under the server) are not
// the disk's to cure: a restart of the store would not help, or would find
// records gone and stop the log.
func (l *Log) storeFailures() (streams []string, down bool) {
	if !l.ns.JetStreamEnabled() {
		return nil, true
	}
	for _, e := range l.ns.Healthz(&server.HealthzOptions{Details: true}).Errors {
		if e.Type == server.HealthzErrorStream && strings.Contains(e.Error, "write error") && outOfSpace(e.Error) {
			streams = append(streams, e.Stream)
		}
	}
	slices.Sort(streams)
	return streams, false
}

// storeRoom returns the bytes free on the store's file system for an
// unprivileged writer, and those it needs free to restart (resumeFree).
func (l *Log) storeRoom() (free, need uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(l.cfg.StoreDir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", l.cfg.StoreDir, err)
	}
	bsize := uint64(st.Bsize)
	return st.Bavail * bsize, resumeFree(st.Blocks * bsize), nil
}

// watchStore restarts the store when it failed and its disk has room
// again, until the log closes.
func (l *Log) watchStore() {
	defer l.restoring.Done()
	tick := time.NewTicker(storeCheckEvery)
	defer tick.Stop()
	failed := false // said so in the log
	// A store that fails again soon after a restart (a disk that fills
	// again at once, a failure that is not the disk's) waits longer each
	// time before the next: every restart reads every stream's files.
	var lastRestart, notBefore time.Time
	backoff := storeCheckEvery
	for {
		select {
		case <-l.done:
			return
		case <-tick.C:
		}
		streams, down := l.storeFailures()
		for _, s := range streams {
			l.refusedForSpace(s)
		}
		if len(streams) == 0 && !down {
			if failed = false; time.Since(lastRestart) > storeSettled {
				backoff = storeCheckEvery
			}
			continue
		}
		free, need, err := l.storeRoom()
		if !failed {
			failed = true
			what := "streams " + strings.Join(streams, ", ") + " failed a write"
			if down {
				what = "JetStream was shut down by the server"
			}
			l.logger.Error("the event log's store takes no writes ("+what+"): it restarts by itself once its disk has room",
				logkey.Dir, l.cfg.StoreDir, logkey.Free, free, logkey.Need, need, logkey.Err, err)
		}
		if err != nil || free < need || time.Now().Before(notBefore) {
			continue
		}
		err = l.restartStore(streams, free)
		lastRestart, notBefore = time.Now(), time.Now().Add(backoff)
		backoff = min(2*backoff, storeSettled/2)
		if err != nil {
			l.logger.Error("the event log's store did not restart; trying again", logkey.Err, err)
			continue
		}
		failed = false
	}
}

// storeSettled is how long a restarted store must work before a failure
// of it is taken as a new one, restarted without waiting.
const storeSettled = 10 * time.Minute

// restartStore restarts the embedded server's JetStream from its files
// (see watchStore), and waits for the log's checks of its streams.
func (l *Log) restartStore(streams []string, free uint64) (err error) {
	// Appends and reads wait for the streams' check (intact) from now:
	// none reaches a stream before it is known to hold what the log saw.
	l.storeRestarts.Add(1)
	defer func() {
		if err != nil {
			// The restore loop checks the streams all the same, and goes
			// on trying while JetStream is down: the next restart brings
			// it back.
			l.signalRestore()
		}
	}()
	l.logger.Warn("the event log's store restarts from its files, its disk having room again",
		logkey.Stream, strings.Join(streams, ", "), logkey.Free, free)
	if l.ns.JetStreamEnabled() {
		if err := l.ns.ShutdownJetStream(); err != nil {
			return fmt.Errorf("shut jetstream down: %w", err)
		}
	}
	cfg := *l.jsConfig
	// EnableJetStream puts its "jetstream" directory under the one it is
	// given, as the server's start does.
	cfg.StoreDir = l.cfg.StoreDir
	if err := l.ns.EnableJetStream(&cfg); err != nil {
		// As nats-server's reload does with a JetStream that would not
		// start: down, rather than half up.
		_ = l.ns.ShutdownJetStream()
		return fmt.Errorf("start jetstream again: %w", err)
	}
	l.storeStarted.Store(time.Now().UnixNano())
	l.storeFailed.Clear()
	l.metrics.storeRestarts.Inc()
	l.signalRestore()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	switch err := l.intact(ctx, false); {
	case errors.Is(err, ErrClosed):
	case err != nil:
		// The restore loop goes on trying, and says why; a log found
		// lost has stopped.
		l.logger.Warn("the streams not checked after the store's restart", logkey.Err, err)
	default:
		l.logger.Info("the event log's store takes writes again")
	}
	return nil
}

// outOfSpace reports whether the text of a store's error is its disk
// full (ENOSPC), as nats-server tells it (isOutOfSpaceErr).
func outOfSpace(msg string) bool {
	return strings.Contains(msg, "no space left")
}

// signalRestore has the restore loop check the streams (restoreLoop).
func (l *Log) signalRestore() {
	select {
	case l.reconnects <- struct{}{}:
	default: // a restore is due already
	}
}
