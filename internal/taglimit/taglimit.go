// Package taglimit holds the limits every holder of tags keeps to (a
// workflow or task definition name, an event handler, a webhook, a
// schedule, a secret, an environment value, an application), so that
// none grows past what the others may: each tag is kept in the log and
// the read model, and every access decision on its holder reads the
// grants on each of its tags.
package taglimit

import (
	"fmt"
	"unicode/utf8"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

const (
	// Max bounds one holder's tag set.
	Max = 100
	// MaxLen bounds a tag's key and its value, in bytes.
	MaxLen = 1024
)

// Check adds to ve what is wrong with tags, sent at path: a tag without a
// key, a key or value over MaxLen bytes or not UTF-8, more than Max tags
// once exact repeats are dropped. It returns the valid tags, key and value
// only, without repeats, in the order given.
func Check(ve *fault.ValidationError, path string, tags []conductor.Tag) []conductor.Tag {
	out, seen := make([]conductor.Tag, 0, len(tags)), make(map[conductor.Tag]bool, len(tags))
	for i, t := range tags {
		switch {
		case t.Key == "":
			ve.Add(fmt.Sprintf("%s[%d].key", path, i), "must not be empty")
		case len(t.Key) > MaxLen || len(t.Value) > MaxLen:
			ve.Add(fmt.Sprintf("%s[%d]", path, i), "key and value must be at most %d bytes", MaxLen)
		case !utf8.ValidString(t.Key) || !utf8.ValidString(t.Value):
			ve.Add(fmt.Sprintf("%s[%d]", path, i), "key and value must be UTF-8")
		default:
			out = appendNew(out, seen, t)
		}
	}
	if len(out) > Max {
		ve.Add(path, "%d tags; at most %d are allowed", len(out), Max)
	}
	return out
}

// Removal is the tags a removal names, key and value only, without
// repeats, as sent: only additions are held to the limits, so that a tag
// stored before them (a key of 2,000 bytes) may still be removed by
// naming it exactly. A tag the holder lacks removes nothing.
func Removal(tags []conductor.Tag) []conductor.Tag {
	out, seen := make([]conductor.Tag, 0, len(tags)), make(map[conductor.Tag]bool, len(tags))
	for _, t := range tags {
		out = appendNew(out, seen, t)
	}
	return out
}

// appendNew appends t's key and value to out unless seen holds them. A
// request's tags are counted only once repeats are dropped, so they are
// all looked at: searched for in out, each of the hundreds of thousands
// of tags an 8 MiB body holds took minutes of CPU in all.
func appendNew(out []conductor.Tag, seen map[conductor.Tag]bool, t conductor.Tag) []conductor.Tag {
	kv := conductor.Tag{Key: t.Key, Value: t.Value}
	if seen[kv] {
		return out
	}
	seen[kv] = true
	return append(out, kv)
}

// Fit refuses a change that takes what's tag set (at path) from cur tags
// to next, over Max. One that grew over it before the limit may still
// lose tags.
func Fit(path, what string, cur, next int) error {
	if next <= Max || next <= cur {
		return nil
	}
	ve := &fault.ValidationError{}
	ve.Add(path, "%s would have %d tags; at most %d are allowed", what, next, Max)
	return ve
}
