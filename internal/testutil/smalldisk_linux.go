package testutil

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
)

// smallDiskEnv tells a test binary run by SmallDisk that it is the child,
// and where to mount its disk: "size:dir".
const smallDiskEnv = "FLOWVAULT_TEST_SMALL_DISK"

// SmallDisk gives the calling test a disk of its own, of size bytes, that
// it can fill without filling the machine's: the test's binary runs the
// test again in a child process, in a user and a mount namespace of its
// own (root in it, whoever runs the tests), which mounts a tmpfs of that
// size, private to it, on a new temporary directory. The mount goes with
// the child. In the parent SmallDisk waits for the child, relays its
// output, fails the test if the child's did, and returns ok false: the
// test returns at once. In the child it returns the mounted directory
// and ok true: the test runs there.
func SmallDisk(t *testing.T, size int64) (dir string, ok bool) {
	t.Helper()
	if env := os.Getenv(smallDiskEnv); env != "" {
		return mountSmallDisk(t, env)
	}
	dir = t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d:%s", smallDiskEnv, size, dir))
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		// A parent that dies (its -test.timeout) takes the child and its
		// mount with it.
		Pdeathsig: syscall.SIGKILL,
	}
	out, err := cmd.CombinedOutput()
	t.Logf("the test in its own mount namespace, with a disk of %d bytes:\n%s", size, out)
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		t.Fatalf("the test failed on its small disk: %v", err)
	case err != nil:
		t.Fatalf("run the test in a user and mount namespace of its own (user namespaces must be allowed): %v", err)
	}
	return "", false
}

// mountSmallDisk mounts, in the child, the tmpfs env ("size:dir") asks for.
func mountSmallDisk(t *testing.T, env string) (string, bool) {
	t.Helper()
	var size int64
	var dir string
	if _, err := fmt.Sscanf(env, "%d:", &size); err != nil {
		t.Fatalf("%s=%q: %v", smallDiskEnv, env, err)
	}
	for i, c := range env {
		if c == ':' {
			dir = env[i+1:]
			break
		}
	}
	// Nothing mounted here reaches the parent's namespace, whatever the
	// propagation of the mounts the child's namespace was copied from.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make the child's mounts private: %v", err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount a tmpfs of %d bytes on %s: %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount the small disk: %v", err)
		}
	})
	return filepath.Clean(dir), true
}

// FillDisk writes path until the disk it is on has no room left but
// room bytes.
func FillDisk(tb testing.TB, path string, room int64) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				tb.Fatalf("fill the disk: %v", err)
			}
			break
		}
	}
	// The last megabyte may have found only part of its room.
	for {
		if _, err := f.Write(buf[:4096]); err != nil {
			break
		}
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.Truncate(max(size-room, 0)); err != nil {
		tb.Fatal(err)
	}
}

// SmallDiskLog is SmallDisk with a log opened on its disk, closed when the
// test ends; tweak, when set, changes the log's configuration first. In
// the parent it returns ok false and no log, as SmallDisk does.
func SmallDiskLog(t *testing.T, size int64, tweak func(*eventlog.Config)) (l *eventlog.Log, disk string, ok bool) {
	t.Helper()
	disk, ok = SmallDisk(t, size)
	if !ok {
		return nil, "", false
	}
	cfg := LogConfig(filepath.Join(disk, "nats"))
	if tweak != nil {
		tweak(&cfg)
	}
	l, err := eventlog.Open(Context(t, 30*time.Second), cfg, eventlog.Options{Logger: Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, disk, true
}

// UntilRefused calls write with 1, 2, 3... until a call fails, on a disk
// filled (FillDisk) so that one must, and returns its error; what names
// the writes should 5000 of them pass.
func UntilRefused(t *testing.T, what string, write func(i int) error) error {
	t.Helper()
	for i := 1; i <= 5000; i++ {
		if err := write(i); err != nil {
			t.Logf("%s %d on a full disk: %v", what, i, err)
			return err
		}
	}
	t.Fatalf("5000 %ss on a full disk and none refused", what)
	return nil
}
