package engine

import (
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// idSpace namespaces the name-based (SHA-1) UUIDs the engine derives.
var idSpace = uuid.MustParse("6f1d2c0e-5b4a-4c1e-9a57-0f6e2b7c9d31")

// DeriveID returns a UUID that depends only on parts. The engine derives
// every id it needs this way, so a decision replayed from the same state
// produces the same ids.
func DeriveID(parts ...string) string {
	return uuid.NewSHA1(idSpace, []byte(strings.Join(parts, "\x00"))).String()
}

func taskID(w *Workflow) string { return DeriveID(w.ID, "task", strconv.Itoa(w.Counter)) }

func childID(w *Workflow, taskID string) string { return DeriveID(w.ID, "sub", taskID) }

func failureWorkflowID(w *Workflow) string {
	return DeriveID(w.ID, "failure", strconv.Itoa(w.Epoch))
}

func sortStrings(s []string) { sort.Strings(s) }
