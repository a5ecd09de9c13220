//go:build unix

package main

import (
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"
)

// The default key file is found, not named: one another user put in the
// working directory would sign the command in as them, and a secret put
// would go to them. It is refused. Not parallel: it sets the working
// directory.
func TestDefaultKeyFileOfAnotherUserRefused(t *testing.T) {
	clearCredentialEnv(t)
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.MkdirAll("data", 0o700); err != nil {
		t.Fatal(err)
	}
	keyFile := testKeyFile(t)
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(defaultKeyFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := newFakeServer(t, map[string]string{"GET /api/secrets-v2": `[]`})
	if _, errOut, code := runCLI("secret", "list", "--server", srv.URL); code != 0 {
		t.Fatalf("the user's own default key file: exit %d %q", code, errOut)
	}
	info, err := os.Stat(defaultKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	st := *info.Sys().(*syscall.Stat_t)
	st.Uid = uint32(os.Getuid() + 1)
	if uid, other := ownedByAnother(statInfo{info, &st}); !other || uid != os.Getuid()+1 {
		t.Fatalf("a file of uid %d: ownedByAnother = %d, %v", st.Uid, uid, other)
	}
	if os.Getuid() != 0 {
		return // only root can give the file away
	}
	if err := os.Chown(defaultKeyFile, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCLI("secret", "list", "--server", srv.URL)
	if code != 1 || !strings.Contains(errOut, "belongs to another user (uid 65534)") {
		t.Fatalf("another user's default key file: exit %d %q", code, errOut)
	}
	if _, errOut, code := runCLI("secret", "list", "--server", srv.URL, "--key-file", defaultKeyFile); code != 0 {
		t.Fatalf("the same file named with --key-file: exit %d %q", code, errOut)
	}
}

// statInfo is a file's info with another stat.
type statInfo struct {
	fs.FileInfo
	st *syscall.Stat_t
}

func (s statInfo) Sys() any { return s.st }
