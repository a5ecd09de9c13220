package audit

import (
	"slices"
	"strconv"
	"strings"
)

// TimeFormat is how a trail line shows an entry's time: UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Line renders an entry as one line of `flowvault audit`:
//
//	<time> <principal> <action> <target> [<key>=<value> ...]
//
// The time is TimeFormat; an absent principal or target is "-"; details
// follow in key order. A field that is empty or "-", contains a space, a
// quote, '=' or a character that is not printable is Go-quoted, so a line
// always splits back into its fields. This format is stable: scripts may parse it.
func Line(e Entry) string {
	var b strings.Builder
	b.WriteString(e.Time.UTC().Format(TimeFormat))
	for _, f := range []string{e.Principal, e.Action, e.Target} {
		b.WriteByte(' ')
		if f == "" {
			b.WriteByte('-')
			continue
		}
		b.WriteString(quote(f))
	}
	keys := make([]string, 0, len(e.Detail))
	for k := range e.Detail {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteByte(' ')
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(quote(e.Detail[k]))
	}
	return b.String()
}

func quote(s string) string {
	if s == "" {
		return `""`
	}
	if s == "-" {
		// An absent field prints as -: a principal or target named so
		// must not read as none.
		return `"-"`
	}
	for _, r := range s {
		if r <= ' ' || r == '"' || r == '=' || r == '\\' || !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
