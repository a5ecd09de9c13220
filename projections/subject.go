package projections

import (
	"context"
	"hash/maphash"

	"github.com/flowvault/flowvault/eventlog"
)

// SubjectLocks serialize one process's writes per subject, striped by a
// hash of the subject, so that only writers in different processes race on
// an aggregate. Each stripe is a one-slot semaphore, so waiting honours
// ctx. The zero value is not usable: use NewSubjectLocks.
type SubjectLocks struct {
	stripes [64]chan struct{}
	seed    maphash.Seed
}

// NewSubjectLocks returns a set of subject locks.
func NewSubjectLocks() *SubjectLocks {
	l := &SubjectLocks{seed: maphash.MakeSeed()}
	for i := range l.stripes {
		l.stripes[i] = make(chan struct{}, 1)
	}
	return l
}

// Lock waits for this process's other writes to subject to finish.
func (l *SubjectLocks) Lock(ctx context.Context, subject string) (unlock func(), err error) {
	s := l.stripes[maphash.String(l.seed, subject)%uint64(len(l.stripes))]
	select {
	case s <- struct{}{}:
		return func() { <-s }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// FoldSubject reads subject from the log and folds its records into a
// MemKV with apply, bypassing the read model; it returns the fold and the
// sequence of the last record. A record that cannot be read or applied is
// handed to skip and left out, as the read model's projection parks it.
func FoldSubject(ctx context.Context, log *eventlog.Log, subject string,
	apply func(MemKV, eventlog.Record) error, skip func(eventlog.Record, error)) (MemKV, uint64, error) {
	recs, err := log.ReadSubject(ctx, subject, 0)
	if err != nil {
		return nil, 0, err
	}
	kv := MemKV{}
	var seq uint64
	for _, rec := range recs {
		seq = rec.Seq
		err := rec.Err
		if err == nil {
			err = apply(kv, rec)
		}
		if err != nil {
			skip(rec, err)
		}
	}
	return kv, seq, nil
}
