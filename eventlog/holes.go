package eventlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// Sequences that writes refused took.
//
// An event stream's sequences run from 1 without a gap (kept), but a
// write the server refuses for want of disk space may take a sequence all
// the same: a stream whose first write met a full disk comes back
// beginning at 2, which reads as its first record lost, and the log
// stopped (or, after a restart, refused to start, telling the operator to
// restore a backup) although it never acknowledged a record of it. A gap
// at the front is a lost record too, though (the first block of a
// stream damaged), so the log takes it for the writes refused only when
// it knows so: it notes, in a file of the store's, each event stream that
// failed a write for want of space before any record of it was
// acknowledged or delivered, and kept lets such a stream begin later.
// The file is written to its full size when the log opens, and only
// overwritten in place afterwards: it is written on a full disk.

// holesFile, in the store's directory, names the streams whose first
// sequences writes refused may have taken.
const holesFile = "refused-first-writes.json"

// holesFileSize is the file's size: room for every stream's name.
const holesFileSize = 4096

// holes is the log's record of the streams holesFile names.
type holes struct {
	mu      sync.Mutex
	f       *os.File
	streams []string
}

// openHoles opens the store's holesFile, making it at its full size if
// it is not there.
func openHoles(storeDir string) (*holes, error) {
	path := filepath.Join(storeDir, holesFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	h := &holes{f: f}
	buf := make([]byte, holesFileSize)
	n, err := f.ReadAt(buf, 0)
	if text := bytes.TrimRight(buf[:n], " \n\x00"); len(text) > 0 {
		if err := json.Unmarshal(text, &h.streams); err != nil {
			f.Close()
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	} else if n < holesFileSize || err != nil {
		if err := h.write(); err != nil {
			f.Close()
			return nil, err
		}
	}
	return h, nil
}

// has reports whether stream's first sequences may have been taken by
// writes refused. A nil holes (an external server's log) knows none.
func (h *holes) has(stream string) bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.streams, stream)
}

// add notes that stream failed a write before any record of it was
// acknowledged.
func (h *holes) add(stream string) error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if slices.Contains(h.streams, stream) {
		return nil
	}
	h.streams = append(h.streams, stream)
	slices.Sort(h.streams)
	return h.write()
}

// write writes the streams over the file's whole size, and syncs it.
func (h *holes) write() error {
	text, err := json.Marshal(h.streams)
	if err != nil {
		return err
	}
	if len(text) >= holesFileSize {
		return fmt.Errorf("%s: %d bytes of stream names, over %d", holesFile, len(text), holesFileSize)
	}
	buf := bytes.Repeat([]byte(" "), holesFileSize)
	copy(buf, text)
	buf[holesFileSize-1] = '\n'
	if _, err := h.f.WriteAt(buf, 0); err != nil {
		return fmt.Errorf("write %s: %w", holesFile, err)
	}
	if err := h.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", holesFile, err)
	}
	return nil
}

func (h *holes) close() {
	if h != nil {
		h.f.Close()
	}
}
