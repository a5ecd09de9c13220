package eventlog

import (
	"fmt"
	"strings"
)

// Token makes s safe to use as one subject token. Characters NATS reserves
// ('.', '*', '>', whitespace, control characters) and '%' itself are
// percent-encoded, so distinct inputs always give distinct tokens and
// identifiers made of letters, digits, '_' and '-' pass through unchanged.
func Token(s string) string {
	if s == "" {
		return "%00"
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c) {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func needsEscape(c byte) bool {
	return c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '>' || c == '%'
}

// validSubject reports whether subj is a literal subject NATS accepts for
// publishing: non-empty tokens, no wildcards, no whitespace.
func validSubject(subj string) bool {
	if subj == "" {
		return false
	}
	for _, tok := range strings.Split(subj, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] <= ' ' || tok[i] == 0x7f {
				return false
			}
		}
	}
	return true
}

// Untoken reverses Token.
func Untoken(tok string) (string, error) {
	if tok == "%00" {
		return "", nil
	}
	if !strings.Contains(tok, "%") {
		return tok, nil
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		if tok[i] != '%' {
			b.WriteByte(tok[i])
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("token %q: truncated escape", tok)
		}
		var c byte
		if _, err := fmt.Sscanf(tok[i+1:i+3], "%02X", &c); err != nil {
			return "", fmt.Errorf("token %q: bad escape %q", tok, tok[i:i+3])
		}
		b.WriteByte(c)
		i += 2
	}
	return b.String(), nil
}
