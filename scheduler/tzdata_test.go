package scheduler

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// The time zone database is linked into every binary that reads
// schedules, so a host without /usr/share/zoneinfo still reads
// "Europe/Berlin". No test can hide the host's own database from
// time.LoadLocation, so this one asks the build.
func TestTimeZonesComeWithTheBinary(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if !slices.Contains(strings.Fields(string(out)), "time/tzdata") {
		t.Fatal("the scheduler does not link time/tzdata: a host without a zoneinfo database refuses every region zoneId")
	}
}
