// Package valuename holds the rule a secret's or an environment value's
// name follows, for the stores that keep them and for the engine, which
// refuses a definition that reads one by a name none can have: the
// engine may not depend on the stores.
package valuename

import "github.com/flowvault/flowvault/fault"

// MaxLen bounds a name, in bytes.
const MaxLen = 256

// Rule is the rule every name must follow, as error messages state it.
const Rule = "[a-zA-Z0-9_-]+ (letters, digits, '_' and '-'; no dots, spaces or slashes), at most 256 characters"

// Check reports whether name can name a value of kind ("secret",
// "environment variable"). The error wraps fault.ErrInvalid and states
// the rule.
func Check(kind, name string) error {
	if name == "" {
		return fault.Invalid("%s name is empty: it must match %s", kind, Rule)
	}
	if len(name) > MaxLen {
		return fault.Invalid("%s name is %d characters: it must match %s", kind, len(name), Rule)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			// Not quoted: a name refused is often a value given in the
			// wrong field (a secret's, pasted as its name), and the error
			// goes where values must not, a task's reason, a log line.
			return fault.Invalid("%s name of %d characters is invalid at character %d: it must match %s", kind, len(name), i+1, Rule)
		}
	}
	return nil
}

// Shorten keeps error messages short when a name is long.
func Shorten(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}
