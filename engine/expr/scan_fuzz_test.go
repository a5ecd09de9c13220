package expr

import (
	"regexp"
	"strings"
	"testing"
)

// secretName is the rule every secret's name follows (secrets.NameRule).
var secretName = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// FuzzScanReferences scans any template text, with any data a dynamic
// name reads. Text without "${" renders as itself and names nothing;
// the same text with every "${" escaped ("$${") renders as the text and
// names nothing; and each secret reference reported is its namespace
// and a name without braces, which is one a secret can have or one
// spelled by the template or the data (a dynamic name), which the
// hand-off refuses (secrets.CheckSecretName).
func FuzzScanReferences(f *testing.F) {
	for _, s := range []string{"plain", "${workflow.secrets.t}", "$${workflow.secrets.t}", "$$${workflow.secrets.t}", "a$b{c}$",
		"${workflow.secrets.${workflow.input.x}}", "${workflow.secrets.a b}", "${ workflow.secrets.t.x }", "${workflow.secrets.}",
		"${workflow.env.e}", "${workflow.secrets.t[0]}", "x${workflow.secrets.t}y$${z}", "$", "${", "}", "$$$$"} {
		f.Add(s, "name")
	}
	f.Fuzz(func(t *testing.T, text, data string) {
		doc := testDoc()
		doc["workflow"].(map[string]any)["input"].(map[string]any)["x"] = data
		if !strings.Contains(text, "${") {
			v, d, err := Evaluate(text, doc)
			if err != nil || v != text || len(d) != 0 {
				t.Fatalf("%q renders as %q, %v, %v", text, v, d, err)
			}
		}
		escaped := escapeAll(text)
		if v, d, err := Evaluate(escaped, doc); err != nil || v != text || len(d) != 0 {
			t.Fatalf("%q escaped as %q renders as %q, %v, %v", text, escaped, v, d, err)
		}
		v, d, err := Evaluate(text, doc)
		if err != nil {
			return
		}
		for _, p := range d {
			for _, body := range DeferredReads(v, p) {
				ref, ok := strings.CutPrefix(body, secretsPrefix)
				if !ok {
					continue
				}
				name, _, _ := strings.Cut(ref, ".")
				switch {
				case strings.ContainsAny(ref, "{}") || body != strings.TrimSpace(body):
					t.Fatalf("%q with %q: reference %q", text, data, body)
				case name != "" && !secretName.MatchString(name) && !strings.Contains(text, name) && !strings.Contains(data, name):
					// A name no secret can have is refused at the hand-off
					// (secrets.CheckSecretName); it comes from the text.
					t.Fatalf("%q with %q: reference %q names %q, which neither the template nor data spelled", text, data, body, name)
				}
			}
		}
	})
}

// escapeAll escapes every "${" of s: "$${" is a literal "${", and a run
// of dollars before it is literal too.
func escapeAll(s string) string {
	return strings.ReplaceAll(s, "${", "$${")
}
