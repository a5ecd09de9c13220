package api

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// conductor-go's TaskClient.Log sends the line as it is, as
// application/json: a line that starts with a quote but is not one JSON
// string (a quoted word, then more; a Windows path) is a line too, as
// Conductor, which reads the body as a String, stores it. It is refused.
func TestLogLineStartingWithAQuote(t *testing.T) {
	for _, body := range []string{`"quoted" then more`, `"c:\path\file"`} {
		r := httptest.NewRequest("POST", "/api/tasks/x/log", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		got, err := logLine(r, []byte(body))
		if err != nil || got != body {
			t.Errorf("logLine(%q) = %q, %v; want the line as sent", body, got, err)
		}
	}
}
