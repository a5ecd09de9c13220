package schemas

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxDepth bounds nesting of arrays and maps in anything read from the log.
const maxDepth = 256

// ErrTooDeep is data nested deeper than the log's readers read: what
// CheckRecord refuses before an append, and what a record read back that
// does so is (with ErrCorrupt).
var ErrTooDeep = fmt.Errorf("nested deeper than %d arrays and maps", maxDepth)

// CheckRecord refuses a record that DecodeRecord would refuse for its
// nesting. JSON that the API decodes may nest 10,000 deep; a record of it,
// appended, would be poison to every reader of its stream (a workflow its
// read model never shows, an engine that can no longer load it).
func CheckRecord(record []byte) error {
	if len(record) == 0 {
		return fmt.Errorf("%w: empty record", ErrCorrupt)
	}
	err := checkMsgpack(record[1:])
	if errors.Is(err, ErrTooDeep) {
		return ErrTooDeep
	}
	return err
}

// checkMsgpack verifies that b is exactly one well-formed msgpack value whose
// every length fits in the bytes that follow it, and that nests no deeper
// than maxDepth.
//
// The msgpack library allocates a slice for the element count a header
// claims before reading the elements (its allocation limit does not apply to
// slices in v5.4.1), so a poison message of a few bytes claiming 2^32
// elements would exhaust memory. Checking the structure first bounds every
// allocation by the size of the input.
func checkMsgpack(b []byte) error {
	// stack holds, per open container, how many values it still expects.
	stack := make([]uint64, 1, 16)
	stack[0] = 1
	i := 0
	for len(stack) > 0 {
		if stack[len(stack)-1] == 0 {
			stack = stack[:len(stack)-1]
			continue
		}
		stack[len(stack)-1]--
		if i >= len(b) {
			return fmt.Errorf("%w: truncated msgpack at byte %d", ErrCorrupt, i)
		}
		c := b[i]
		i++
		var skip, children uint64
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			children = 2 * uint64(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			children = uint64(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			skip = uint64(c & 0x1f)
		default:
			n, width, kind, ok := header(c)
			if !ok {
				return fmt.Errorf("%w: invalid msgpack byte %#x at %d", ErrCorrupt, c, i-1)
			}
			if width > 0 {
				if uint64(len(b)-i) < uint64(width) {
					return fmt.Errorf("%w: truncated msgpack length at byte %d", ErrCorrupt, i)
				}
				n = readUint(b[i : i+width])
				i += width
			}
			switch kind {
			case kindBytes:
				skip = n
			case kindExt:
				skip = n + 1 // the type byte
			case kindArray:
				children = n
			case kindMap:
				if n > uint64(len(b)) {
					return fmt.Errorf("%w: msgpack map of %d entries in %d bytes", ErrCorrupt, n, len(b))
				}
				children = 2 * n
			}
		}
		if skip > uint64(len(b)-i) {
			return fmt.Errorf("%w: msgpack value of %d bytes in %d", ErrCorrupt, skip, len(b)-i)
		}
		i += int(skip)
		if children > 0 {
			// Every value takes at least one byte.
			if children > uint64(len(b)-i) {
				return fmt.Errorf("%w: msgpack container of %d values in %d bytes", ErrCorrupt, children, len(b)-i)
			}
			if len(stack) >= maxDepth {
				return fmt.Errorf("%w: msgpack %w", ErrCorrupt, ErrTooDeep)
			}
			stack = append(stack, children)
		}
	}
	if i != len(b) {
		return fmt.Errorf("%w: %d trailing bytes after msgpack value", ErrCorrupt, len(b)-i)
	}
	return nil
}

type valueKind int

const (
	kindFixed valueKind = iota
	kindBytes
	kindExt
	kindArray
	kindMap
)

// header describes the non-fix msgpack type bytes: a fixed payload size n,
// or the width of a length field that follows.
func header(c byte) (n uint64, width int, kind valueKind, ok bool) {
	switch c {
	case 0xc4, 0xd9:
		return 0, 1, kindBytes, true
	case 0xc5, 0xda:
		return 0, 2, kindBytes, true
	case 0xc6, 0xdb:
		return 0, 4, kindBytes, true
	case 0xc7:
		return 0, 1, kindExt, true
	case 0xc8:
		return 0, 2, kindExt, true
	case 0xc9:
		return 0, 4, kindExt, true
	case 0xca, 0xce, 0xd2:
		return 4, 0, kindBytes, true
	case 0xcb, 0xcf, 0xd3:
		return 8, 0, kindBytes, true
	case 0xcc, 0xd0:
		return 1, 0, kindBytes, true
	case 0xcd, 0xd1:
		return 2, 0, kindBytes, true
	case 0xd4:
		return 1, 0, kindExt, true
	case 0xd5:
		return 2, 0, kindExt, true
	case 0xd6:
		return 4, 0, kindExt, true
	case 0xd7:
		return 8, 0, kindExt, true
	case 0xd8:
		return 16, 0, kindExt, true
	case 0xdc:
		return 0, 2, kindArray, true
	case 0xdd:
		return 0, 4, kindArray, true
	case 0xde:
		return 0, 2, kindMap, true
	case 0xdf:
		return 0, 4, kindMap, true
	}
	return 0, 0, kindFixed, false
}

func readUint(b []byte) uint64 {
	switch len(b) {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(b))
	default:
		return uint64(binary.BigEndian.Uint32(b))
	}
}
