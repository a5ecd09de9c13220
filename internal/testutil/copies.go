package testutil

import "io"

// TracedReader reads from its reader and remembers where each read put
// the bytes it read: in the buffers of whoever reads it. A test that
// reads a value through it and wipes the copy it was given asks Left
// whether the code under test left another copy behind.
type TracedReader struct {
	r    io.Reader
	into [][]byte
}

// NewTracedReader reads r. The bytes r gives should not be zero, so that
// a byte left behind is told from a wiped one.
func NewTracedReader(r io.Reader) *TracedReader { return &TracedReader{r: r} }

func (t *TracedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.into = append(t.into, p[:n])
	return n, err
}

// Left counts the bytes read that are still where a read put them and
// not wiped.
func (t *TracedReader) Left() int {
	left := 0
	for _, b := range t.into {
		for _, c := range b {
			if c != 0 {
				left++
			}
		}
	}
	return left
}
