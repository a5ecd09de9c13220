package guard

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The shortcuts around encoding/json on the protection path answer as the
// calls they spare would: jsonString as json.Unmarshal into a string,
// needsJSONEscape as json.Marshal of the text, mayBeJSON never refusing
// what json.Valid accepts.
func TestJSONShortcutsAnswerAsEncodingJSON(t *testing.T) {
	texts := []string{
		``, `"`, `""`, `"abc"`, `"session-6f9c2a71"`, `"a\"b"`, `"a"b"`, `"\u00e9"`, `"é"`,
		`"<tag>&"`, "\"\xff\"", "\"a\tb\"", `"a\\b"`, `"a/b"`, ` "x"`, `"x" `, `null`, `12`,
		`-1.5e3`, `true`, `false`, `{"a":1}`, `[1,2]`, `abc`, "\u2028", `x7#K0!2mQ$9vL&4n`,
		" \t\n\r[1]", `bench-user-4f1d`, `{`, `nope`,
	}
	for c := range 256 {
		texts = append(texts, string([]byte{'"', byte(c), '"'}), string([]byte{byte(c)}), string([]byte{byte(c), '1'}))
	}
	for _, text := range texts {
		var want string
		wantErr := json.Unmarshal([]byte(text), &want)
		got, ok := jsonString([]byte(text))
		if ok != (wantErr == nil) || got != want {
			t.Errorf("jsonString(%q) = %q, %v; json.Unmarshal: %q, %v", text, got, ok, want, wantErr)
		}
		if !mayBeJSON([]byte(text)) && json.Valid([]byte(text)) {
			t.Errorf("mayBeJSON(%q) is false, json.Valid true", text)
		}
		marshaled, _ := json.Marshal(text)
		if same := bytes.Equal(marshaled[1:len(marshaled)-1], []byte(text)); !needsJSONEscape([]byte(text)) && !same {
			t.Errorf("needsJSONEscape(%q) is false, json.Marshal writes %s", text, marshaled)
		}
	}
}
