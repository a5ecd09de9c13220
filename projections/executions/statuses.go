package executions

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A workflow's task statuses are kept beside its tasks, in the list's
// order, statusChunk of them to a key (statusKey): a page of a workflow's
// tasks (GET /api/workflow/{id}/tasks) counts them by status and finds
// those of the statuses asked in a few keys, then reads the page's tasks
// alone, where it decoded every task of a loop of thousands of iterations.
// A record that changes a task's status rewrites the chunk it falls in,
// a few hundred bytes, not a value that grows with the workflow.
const statusChunk = 256

// statusKey is the key of the c-th chunk of a workflow's task statuses.
// It sorts after every task's key (taskKey, "\x00t"), so that neither a
// read of the head nor one of the tasks steps over the chunks.
func statusKey(token string, c int) []byte {
	return binary.BigEndian.AppendUint32(statusPrefix(token), uint32(c))
}

func statusPrefix(token string) []byte { return []byte(prefixWorkflow + token + "\x00u") }

// statusCodes are the one-byte codes of the statuses a task may have, by
// code (1 on). The codes are stored: add at the end, never reorder. Code
// 0 is followed by the status spelt out (its length as a uvarint, then its
// bytes), for a status the list lacks.
var statusCodes = [...]string{1: conductor.TaskScheduled, conductor.TaskInProgress, conductor.TaskCompleted,
	conductor.TaskCompletedWithErrors, conductor.TaskFailed, conductor.TaskFailedWithTerminalError,
	conductor.TaskTimedOut, conductor.TaskCanceled, conductor.TaskSkipped}

func appendStatuses(dst []byte, tasks []*engine.Task) []byte {
	for _, t := range tasks {
		if c := slices.Index(statusCodes[1:], t.Status); c >= 0 {
			dst = append(dst, byte(c+1))
			continue
		}
		dst = binary.AppendUvarint(append(dst, 0), uint64(len(t.Status)))
		dst = append(dst, t.Status...)
	}
	return dst
}

// parseStatuses appends to out the statuses of a chunk appendStatuses made.
func parseStatuses(out []string, v []byte) ([]string, error) {
	for len(v) > 0 {
		c := v[0]
		v = v[1:]
		if c != 0 {
			if int(c) >= len(statusCodes) {
				return nil, fmt.Errorf("task status code %d", c)
			}
			out = append(out, statusCodes[c])
			continue
		}
		n, size := binary.Uvarint(v)
		if size <= 0 || uint64(len(v)-size) < n {
			return nil, errors.New("task status cut short")
		}
		out = append(out, string(v[size:size+int(n)]))
		v = v[size+int(n):]
	}
	return out, nil
}

// statusChunks collects the chunks of a workflow's statuses a record
// changes.
type statusChunks []int

// touch notes that task i's status is new or changed.
func (d *statusChunks) touch(i int) {
	if c := i / statusChunk; len(*d) == 0 || (*d)[len(*d)-1] != c {
		*d = append(*d, c)
	}
}

// storeStatuses writes the chunks of w's task statuses that dirty names,
// stored the number of tasks stored before the record: the chunk the list
// now ends in changed too when tasks were dropped, and those past it go.
func (p *Projection) storeStatuses(b *projections.Batch, token string, w *engine.Workflow, stored int, dirty statusChunks) error {
	n := len(w.Tasks)
	chunks := (n + statusChunk - 1) / statusChunk
	if n < stored && n%statusChunk != 0 {
		dirty.touch(n)
	}
	for c := chunks; c < (stored+statusChunk-1)/statusChunk; c++ {
		if err := b.Delete(statusKey(token, c)); err != nil {
			return err
		}
	}
	slices.Sort(dirty)
	for _, c := range slices.Compact(dirty) {
		if c >= chunks {
			continue
		}
		p.scratch = appendStatuses(p.scratch[:0], w.Tasks[c*statusChunk:min(n, (c+1)*statusChunk)])
		if err := b.Set(statusKey(token, c), p.scratch); err != nil {
			return err
		}
	}
	return nil
}

// deleteStatuses deletes the status chunks of a workflow of stored tasks.
func deleteStatuses(b *projections.Batch, token string, stored int) error {
	for c := range (stored + statusChunk - 1) / statusChunk {
		if err := b.Delete(statusKey(token, c)); err != nil {
			return err
		}
	}
	return nil
}

// readStatuses reads a workflow's task statuses with scan, in its list's
// order.
func readStatuses(scan func(lower, upper []byte, fn func(key, value []byte) bool) error, token string) ([]string, error) {
	prefix := statusPrefix(token)
	var statuses []string
	var decodeErr error
	err := scan(prefix, append(prefix[:len(prefix)-1:len(prefix)-1], 'v'), func(key, value []byte) bool {
		if len(key) != len(prefix)+4 || int(binary.BigEndian.Uint32(key[len(prefix):])) != len(statuses)/statusChunk || len(statuses)%statusChunk != 0 {
			decodeErr = fmt.Errorf("task statuses from %d stored under %x", len(statuses), key[len(prefix):])
			return false
		}
		statuses, decodeErr = parseStatuses(statuses, value)
		return decodeErr == nil
	})
	if err == nil && decodeErr != nil {
		err = fmt.Errorf("stored workflow %s: %w", token, decodeErr)
	}
	return statuses, err
}

// WorkflowTaskPage returns workflow id without its tasks (Tasks nil,
// as WorkflowHead reads it), how many of its tasks have each status, how
// many match (the statuses match accepts), and of those that match the
// count from start on, in the list's order, or an error wrapping
// fault.ErrNotFound. It reads the head, the chunks of the tasks' statuses
// and the page's tasks, of one snapshot of the read model, where Workflow
// reads every task: the answer to GET /api/workflow/{id}/tasks.
func (r *Reader) WorkflowTaskPage(_ context.Context, id string, match func(status string) bool, start, count int) (head *engine.Workflow, summary map[string]int64, matched int, page []*engine.Task, err error) {
	head, summary, matched, page, _, err = r.workflowTaskPage(id, match, start, count)
	return head, summary, matched, page, err
}

// workflowTaskPage is WorkflowTaskPage, with the count of the workflow's
// keys it read.
func (r *Reader) workflowTaskPage(id string, match func(status string) bool, start, count int) (head *engine.Workflow, summary map[string]int64, matched int, page []*engine.Task, keys int, err error) {
	at, _, release, err := r.store.ReaderAt(Name)
	if err != nil {
		return nil, nil, 0, nil, 0, err
	}
	defer release()
	scan := countingScan(at, new(int), &keys)
	token := eventlog.Token(id)
	head, in, err := readParts(scan, token, false)
	if err != nil {
		return nil, nil, 0, nil, keys, err
	}
	if head == nil {
		return nil, nil, 0, nil, keys, fault.NotFound("workflow %s not found", id)
	}
	var statuses []string
	if in.tasks {
		// A head of an earlier layout, which holds the tasks.
		for _, t := range head.Tasks {
			statuses = append(statuses, t.Status)
		}
	} else if statuses, err = readStatuses(scan, token); err != nil {
		return nil, nil, 0, nil, keys, err
	}
	summary = map[string]int64{}
	var picked []int
	for i, s := range statuses {
		summary[s]++
		if match(s) {
			if matched >= start && matched-start < count {
				picked = append(picked, i)
			}
			matched++
		}
	}
	for _, i := range picked {
		if in.tasks {
			page = append(page, head.Tasks[i])
			continue
		}
		t, err := readTaskAt(scan, token, i)
		if err != nil {
			return nil, nil, 0, nil, keys, err
		}
		if t == nil || t.Status != statuses[i] {
			return nil, nil, 0, nil, keys, fmt.Errorf("stored workflow %s: task %d is not as its status says", id, i)
		}
		page = append(page, t)
	}
	head.Tasks = nil
	return head, summary, matched, page, keys, nil
}

// endOfTasks is the upper bound of a scan of a workflow's head and tasks:
// the status chunks sort after it.
func endOfTasks(token string) []byte {
	return statusPrefix(token)
}
