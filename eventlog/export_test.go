package eventlog

import (
	"context"
	"time"
)

// LagDirectGets sends l's direct gets to prefix (a stand-in for a follower
// that lags) and makes its reads end at the leader, as on a cluster.
func LagDirectGets(l *Log, prefix string) { l.directAPI, l.leaderReads = prefix, true }

// DirectGetAPI is the subject prefix direct gets are sent to.
const DirectGetAPI = directGetAPI

// CheckStreams runs the check of l's event streams a reconnection runs.
func CheckStreams(ctx context.Context, l *Log) error { return l.checkStreams(ctx) }

// LeaderGetsTo sends l's gets at a stream's leader to prefix (a stand-in
// for the leader) and makes its reads end at the leader, as on a cluster.
func LeaderGetsTo(l *Log, prefix string) { l.leaderAPI, l.leaderReads = prefix, true }

// LeaderGetAPI is the subject prefix gets at a stream's leader are sent
// to.
const LeaderGetAPI = leaderGetAPI

// StreamInfoTo sends l's stream info requests to prefix (a stand-in for
// the stream's leader).
func StreamInfoTo(l *Log, prefix string) { l.infoAPI = prefix }

// StreamInfoAPI is the subject prefix stream info requests are sent to.
const StreamInfoAPI = streamInfoAPI

// PublishesTo sends l's publishes to prefix+subject (a stand-in for the
// stream's leader) and has them sent again while unanswered, as on a
// cluster.
func PublishesTo(l *Log, prefix string) { l.publishPrefix, l.resend = prefix, true }

// StartedStoreAt says l's store started at t, as if it had run since.
func StartedStoreAt(l *Log, t time.Time) { l.storeStarted.Store(t.UnixNano()) }

// MakingGrace is how long a stream's directory made while the store runs
// may be there without its stream.
const MakingGrace = makingGrace
