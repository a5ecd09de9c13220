package executor

import (
	"fmt"
	"slices"
	"testing"
)

// Past maxPollRecords, a new worker's poll data replaces the record polled
// longest ago, whatever the order the workers first polled in, a worker
// polling again counting as new, and a clock set back making its poll
// the oldest.
func TestPollRecordsForgetTheOldest(t *testing.T) {
	p := newPoller()
	e := &Executor{polls: p}
	worker := func(i int) pollKey { return pollKey{"typ", "", fmt.Sprint("w", i)} }
	// Worker i last polled at 1000+i, first polled in an order unlike it.
	for j := range maxPollRecords {
		i := j * 7919 % maxPollRecords
		p.record(worker(i), 1000+int64(i))
	}
	p.record(worker(0), 1000+maxPollRecords) // w0 polls again: w1 is the oldest now
	for _, step := range []struct {
		poll    pollKey
		at      int64
		forgets string
	}{
		{pollKey{"typ", "", "new-1"}, 20_000, "w1"},
		{pollKey{"other", "d", "w2"}, 20_001, "w2"},
		{pollKey{"typ", "", "w1"}, 20_002, "w3"},
		{pollKey{"typ", "", "set-back"}, 10, "w4"},
		{pollKey{"typ", "", "new-2"}, 20_003, "set-back"},
		{pollKey{"typ", "", "new-3"}, 20_004, "w5"},
	} {
		before := workerIDs(e.PollData(""))
		p.record(step.poll, step.at)
		after := workerIDs(e.PollData(""))
		if len(after) != maxPollRecords {
			t.Fatalf("after %v: %d records, want %d", step.poll, len(after), maxPollRecords)
		}
		var gone []string
		for _, id := range before {
			if !slices.Contains(after, id) {
				gone = append(gone, id)
			}
		}
		if !slices.Equal(gone, []string{step.forgets}) {
			t.Fatalf("a poll of %v at %d forgot %v, want %s", step.poll, step.at, gone, step.forgets)
		}
	}
	for _, d := range e.PollData("other") {
		if d.WorkerID != "w2" || d.Domain != "d" || d.LastPollTime != 20_001 {
			t.Fatalf("poll data of other: %+v", d)
		}
	}
	if got := e.PollData("typ"); !slices.ContainsFunc(got, func(d PollData) bool { return d.WorkerID == "w0" && d.LastPollTime == 1000+maxPollRecords }) {
		t.Fatal("w0's second poll is not its last poll time")
	}
}

// workerIDs are the poll data's workers, each named once with its queue.
func workerIDs(data []PollData) []string {
	out := make([]string, 0, len(data))
	for _, d := range data {
		id := d.WorkerID
		if d.QueueName != "typ" {
			id = d.QueueName + "/" + d.Domain + "/" + id
		}
		out = append(out, id)
	}
	return out
}

// BenchmarkPollRecordFull records the poll of a worker not among the
// maxPollRecords recorded: one record forgotten for each.
func BenchmarkPollRecordFull(b *testing.B) {
	p := newPoller()
	keys := make([]pollKey, 2*maxPollRecords)
	for i := range keys {
		keys[i] = pollKey{"typ", "", fmt.Sprint("w", i)}
	}
	at := int64(0)
	for _, k := range keys[:maxPollRecords] {
		at++
		p.record(k, at)
	}
	for b.Loop() {
		at++
		p.record(keys[at%int64(len(keys))], at)
	}
}

// BenchmarkPollRecordAgain records the poll of a worker among the
// maxPollRecords recorded: the common case, which forgets nothing.
func BenchmarkPollRecordAgain(b *testing.B) {
	p := newPoller()
	keys := make([]pollKey, maxPollRecords)
	for i := range keys {
		keys[i] = pollKey{"typ", "", fmt.Sprint("w", i)}
	}
	at := int64(0)
	for _, k := range keys {
		at++
		p.record(k, at)
	}
	for b.Loop() {
		at++
		p.record(keys[at%int64(len(keys))], at)
	}
}
