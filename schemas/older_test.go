package schemas_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/schemas"
)

// An event type an older version does not know is parked as poison by a
// server of that version that shares the log (a rolling upgrade, even
// under --record-format 1) or that is started on it after a downgrade:
// the README says which types those are, so that an operator knows what
// not to do meanwhile. It named workflow.upgraded and workflow.jumped but
// not workflow.admitted, which a rate limit's queue writes with no API
// call to hold back (a 61ff23b server rebuilt on such a log showed the
// admitted workflow RUNNING without its tasks), nor the webhook, schema
// and keyring events.
func TestEventTypesOlderVersionsDoNotKnowAreNamedInREADME(t *testing.T) {
	list, err := os.ReadFile(filepath.Join("testdata", "event_types_older.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var older []string
	for _, line := range strings.Split(string(list), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			older = append(older, line)
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(readme)), " ")
	const lead = "The same holds for events an older version does not know"
	start := strings.Index(text, lead)
	if start < 0 {
		t.Fatalf("README has no %q", lead)
	}
	named := text[start : start+strings.Index(text[start:], ". ")]
	for name := range schemas.Default.EventTypes() {
		if slices.Contains(older, name) {
			continue
		}
		if !strings.Contains(named, "`"+name+"`") {
			t.Errorf("event type %s is newer than testdata/event_types_older.txt and not named in the README's %q", name, lead)
		}
	}
}
