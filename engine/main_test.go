package engine_test

import (
	"os"
	"testing"

	"github.com/flowvault/flowvault/engine"
)

// The engine's tests decide with the reference index on every workflow:
// those they use have too few tasks to need it, and the index must find
// what a scan of the task list finds through every reset, loop and fork
// they drive. The executor's and the end-to-end tests run the default.
func TestMain(m *testing.M) {
	engine.IndexAlways()
	os.Exit(m.Run())
}
