package guard

import "testing"

// A secret holding escapes, spliced into an INLINE's string, is read by
// the script decoded, and the script returns the decoded text: it reads
// *** when it is at least masking.MinLength bytes long and the definition
// does not spell it, right after the hand-off and with what redaction
// looks for rebuilt from the log's record of the resolution.
func TestScriptDecodedSecretRedacted(t *testing.T) {
	t.Parallel()
	checkScriptResults(t, []scriptCase{
		{"hex", `abc\x41def9`, "'${workflow.secrets.%s}'", "abcAdef9", "***"},
		{"uni", `p\u0061ssW0rd`, `"${workflow.secrets.%s}"`, "the key is passW0rd!", "the key is ***!"},
		{"newline", `line1\nline2`, "'${workflow.secrets.%s}'", "line1\nline2", "***"},
		{"template", `ab\x41-cd${x}ef-\x42gh`, "`${workflow.secrets.%s}`", "abA-cd|ef-Bgh", "***|***"},
		{"floor", `\x51\x6e\x37Vw2`, "'${workflow.secrets.%s}'", "Qn7Vw2", "***"},
		{"short", `\x51\x6e\x37Vw`, "'${workflow.secrets.%s}'", "Qn7Vw", "Qn7Vw"},
		{"public", `t\x61il9Qz`, "'${workflow.secrets.%s}'", "tail9Qz", "tail9Qz"},
	})
}
