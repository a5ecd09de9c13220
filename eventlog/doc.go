// Package eventlog is flowvault's event store: NATS JetStream used as an
// append-only log with one subject per aggregate.
//
// A Log either starts nats-server in-process (the default: file storage under
// the data directory, fsync before every acknowledgement) or connects to an
// external server or cluster by URL. Both paths go through the same client
// code.
//
// Writers append records: the events of one decision framed as one message
// (see schemas.EncodeRecord), so a decision is atomic and costs one
// acknowledged write. Appends are guarded by
// Nats-Expected-Last-Subject-Sequence, which gives one writer per aggregate
// without locks (a stale writer gets ErrConflict, reloads and decides again),
// and carry a Nats-Msg-Id derived from their cause, so a retried append is
// a no-op that returns the original sequence.
//
// Readers fetch a subject's records in batches (direct get), follow a whole
// stream from a sequence (projections, which keep their own checkpoint), or
// share a durable consumer (work queues).
package eventlog
