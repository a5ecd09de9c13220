package expr

import (
	"fmt"
	"unicode/utf8"

	"github.com/flowvault/flowvault/fault"
)

// MaxSteps bounds the work of the evaluations of one Budget (the engine's
// decision): values a path visits, maps it goes through (a few steps for
// the map and two a key), elements a filter's operator or a function
// goes through, a step per 32 bytes of text compared or measured, and
// for a =~ match, per 512 bytes times the instructions of its pattern
// (and 16 an instruction to compile it).
// Input is bounded in bytes, not work: a deep scan of a deep scan
// (${x..*..*..id}) visits a chain of maps once per level above each, two
// lists compared by anyof cost the product of their sizes, so a document
// of a few KiB held a core for minutes and the list of matches filled
// the memory. A deep scan visits each value of a document once, about 3
// steps a value: 10M steps read 200,000 objects of three fields (9 MiB of
// JSON) five times over, and stop the worst evaluation in about a second
// of CPU.
const MaxSteps = 10_000_000

// ErrTooCostly is wrapped by the error of an evaluation whose expressions
// take more than MaxSteps steps. It wraps fault.ErrTooLarge.
var ErrTooCostly = fmt.Errorf("expression evaluation %w", fault.ErrTooLarge)

// work counts what is left of the steps of a Budget and its Asides: what
// an evaluation read and did not keep cost as much as what it kept. It
// carries what else a path reads deep inside an evaluation: the document,
// for the "$" paths of filters and function arguments, and the bytes a
// function may build (room; over once it passed them).
type work struct {
	limit, left int
	doc         Doc
	room        int
	over        bool
}

func newWork(limit int) *work { return &work{limit: limit, left: limit} }

// take spends n steps and reports whether they were there. Once it has
// failed it fails for good, and every loop of the evaluation stops.
func (w *work) take(n int) bool {
	w.left -= n
	return w.left >= 0
}

// spent reports whether a take has failed.
func (w *work) spent() bool { return w.left < 0 }

// text spends the steps of reading s: one per 32 bytes.
func (w *work) text(s string) bool { return w.take(len(s) >> 5) }

// compared spends the steps of comparing two strings: those of the
// shorter, which is all a comparison may read.
func (w *work) compared(a, b any) bool {
	s, ok := a.(string)
	t, ok2 := b.(string)
	if !ok || !ok2 {
		return true
	}
	return w.take(min(len(s), len(t)) >> 5)
}

// tooCostly is the error of an evaluation that ran out of steps while it
// evaluated the template string s (quoted, shortened: it is definition
// text, which may be megabytes of a filter's list); before is how many
// steps the evaluations before it had taken.
func (w *work) tooCostly(s string, before int) error {
	const show = 120
	if len(s) > show {
		cut := show
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	if before > 0 {
		return fmt.Errorf("%w: with the %d steps of the evaluations before it, evaluating %q passes %d steps (values visited and compared), the most they may take",
			ErrTooCostly, before, s, w.limit)
	}
	return fmt.Errorf("%w: evaluating %q passes %d steps (values visited and compared), the most it may take", ErrTooCostly, s, w.limit)
}
