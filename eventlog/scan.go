package eventlog

import (
	"context"
	"fmt"
	"time"
)

// ScanOptions selects the records a Scan reads.
type ScanOptions struct {
	// Subject is a subject filter inside one stream; wildcards are allowed
	// ("fv.wf.>").
	Subject string
	// Since skips the records stored before this time (by the server's
	// clock). Zero reads from the first record.
	Since time.Time
	// UpTo ends the scan after this stream sequence. Zero reads until the
	// server has no further matching record.
	UpTo uint64
}

// Scan calls fn with every record matching o, in stream order, holding
// one batch in memory at a time: it reads a stream of any length. Poison
// messages are passed with Err set. An error from fn stops the scan and is
// returned as it is.
func (l *Log) Scan(ctx context.Context, o ScanOptions, fn func(Record) error) error {
	if l.closed.Load() {
		return ErrClosed
	}
	s, err := streamOf("scan", o.Subject)
	if err != nil {
		return err
	}
	req := directGetRequest{Seq: 1, NextFor: o.Subject, Batch: readBatch}
	if !o.Since.IsZero() {
		since := o.Since.UTC()
		req.Seq, req.StartTime = 0, &since // the server takes one or the other
	}
	for {
		batch, more, err := l.directBatch(ctx, s.Name, req)
		if err != nil {
			return fmt.Errorf("scan %s: %w", o.Subject, err)
		}
		if !more && l.leaderReads {
			// The replica that answered may not have applied the newest
			// acknowledged records: the leader names the first one past
			// those read, and the scan goes on from it until the leader
			// has nothing more (as ReadSubject does).
			tail := directGetRequest{Seq: req.Seq, NextFor: o.Subject, StartTime: req.StartTime}
			if len(batch) > 0 {
				tail = directGetRequest{Seq: batch[len(batch)-1].Seq + 1, NextFor: o.Subject}
			}
			rec, found, err := l.leaderGet(ctx, s.Name, tail)
			if err != nil {
				return fmt.Errorf("scan %s: %w", o.Subject, err)
			}
			if found {
				batch, more = append(batch, rec), true
			}
		}
		for _, rec := range batch {
			if o.UpTo > 0 && rec.Seq > o.UpTo {
				return nil
			}
			if err := fn(rec); err != nil {
				return err
			}
		}
		if !more || len(batch) == 0 {
			return nil
		}
		req = directGetRequest{Seq: batch[len(batch)-1].Seq + 1, NextFor: o.Subject, Batch: readBatch}
	}
}
