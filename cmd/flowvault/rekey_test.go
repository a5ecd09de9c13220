package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/secrets"
)

// writeKeyFile writes a master key file (0600) holding key's base64.
func writeKeyFile(t *testing.T, key []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// storeAccounts lists the account directories of a data dir's embedded
// store.
func storeAccounts(t *testing.T, data string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(data, "nats", "jetstream"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// seedServer starts a server on a fresh data dir with env's master key
// (none: dev mode), stores the secrets a and b, and stops it.
func seedServer(t *testing.T, bin string, env ...string) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(bin, "server", "--log-format", "json", "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	cmd.Env = cleanEnv(env...)
	p := startCmd(t, cmd)
	server := "http://" + p.waitLog(t, "flowvault listening")["addr"].(string)
	for _, name := range []string{"a", "b"} {
		if _, errOut, code := cli(t, bin, keyFileEnv(data), []byte("value-"+name), "secret", "put", name, "--server", server); code != 0 {
			t.Fatalf("put: %s", errOut)
		}
	}
	stopServer(t, p)
	return data
}

// serveAndRead starts a server on data with env's master key, reads the
// secrets a and b back, returns the audit trail and stops the server.
func serveAndRead(t *testing.T, bin, data string, env ...string) string {
	t.Helper()
	cmd := exec.Command(bin, "server", "--log-format", "json", "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	cmd.Env = cleanEnv(env...)
	p := startCmd(t, cmd)
	server := "http://" + p.waitLog(t, "flowvault listening")["addr"].(string)
	defer stopServer(t, p)
	for _, name := range []string{"a", "b"} {
		if got, errOut, code := cli(t, bin, keyFileEnv(data), nil, "secret", "get", name, "--show-value", "--server", server); code != 0 || got != "value-"+name {
			t.Fatalf("secret %s: %d %q %q", name, code, got, errOut)
		}
	}
	trail, errOut, code := cli(t, bin, keyFileEnv(data), nil, "audit", "--server", server)
	if code != 0 {
		t.Fatalf("audit: %s", errOut)
	}
	return trail
}

// refuseStart starts a server on data with env and wants it to exit 1
// mentioning every one of want.
func refuseStart(t *testing.T, bin, data string, env []string, want ...string) {
	t.Helper()
	cmd := exec.Command(bin, "server", "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	cmd.Env = cleanEnv(env...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the server started:\n%s", out)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Fatalf("the server's refusal does not mention %q:\n%s", w, out)
		}
	}
}

// keys rekey seals a stopped server's keyring under a new master key and
// moves its embedded store to the new key's account: a server with the
// new key reads every secret, one with the old key refuses and changes
// nothing, and the audit trail records the rekey as who ran it. It
// refuses a running server's dir and keys it cannot use.
func TestKeysRekeyCLI(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	oldKey, newKey := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{8}, 32)
	oldEnv := masterKeyEnv(oldKey)
	newFile := writeKeyFile(t, newKey)
	data := seedServer(t, bin, oldEnv)

	refusedWhileServing(t, bin, data, []string{oldEnv}, "keys", "rekey", "--data", data, "--new-master-key-file", newFile)

	accounts := storeAccounts(t, data)
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no new key", []string{oldEnv}, nil, "name the new master key"},
		{"new key is the old one", []string{oldEnv, "FLOWVAULT_NEW_MASTER_KEY=" + base64.StdEncoding.EncodeToString(oldKey)}, nil, "the new master key is the current one"},
		{"new key blank", []string{oldEnv, "FLOWVAULT_NEW_MASTER_KEY= "}, nil, "FLOWVAULT_NEW_MASTER_KEY is set but empty"},
		{"new key short", []string{oldEnv, "FLOWVAULT_NEW_MASTER_KEY=" + base64.StdEncoding.EncodeToString([]byte("short"))}, nil, "decodes to 5 bytes"},
		{"both new keys", []string{oldEnv, "FLOWVAULT_NEW_MASTER_KEY=" + base64.StdEncoding.EncodeToString(newKey)}, []string{"--new-master-key-file", newFile}, "not both"},
		{"wrong current key", []string{masterKeyEnv(bytes.Repeat([]byte{1}, 32))}, []string{"--new-master-key-file", newFile}, "holds no data of the current master key's NATS account"},
		{"no current key", nil, []string{"--new-master-key-file", newFile}, "no master key"},
		{"not a data dir", []string{oldEnv}, []string{"--data", t.TempDir(), "--new-master-key-file", newFile}, "not a flowvault data directory"},
		{"new key on the command line", []string{oldEnv}, []string{"--new-master-key", "x"}, "flag provided but not defined"},
	} {
		args := append([]string{"keys", "rekey", "--data", data}, tt.args...)
		if _, errOut, code := cli(t, bin, tt.env, nil, args...); code == 0 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d %q, want an error mentioning %q", tt.name, code, errOut, tt.want)
		}
	}
	if got := storeAccounts(t, data); !slicesEqual(got, accounts) {
		t.Fatalf("a refused rekey moved the store: %v, was %v", got, accounts)
	}

	out, errOut, code := cli(t, bin, []string{oldEnv}, nil, "keys", "rekey", "--data", data, "--new-master-key-file", newFile)
	if code != 0 || !strings.Contains(out, "sealed the keyring (1 terms, active term 1) under the new master key") || !strings.Contains(out, "moved the embedded store") {
		t.Fatalf("rekey: %d %q %q", code, out, errOut)
	}
	moved := storeAccounts(t, data)
	if len(moved) != 1 || moved[0] == accounts[0] {
		t.Fatalf("store accounts after the rekey: %v, were %v", moved, accounts)
	}
	// The old key: refused, naming the cause, and nothing changes.
	refuseStart(t, bin, data, []string{oldEnv}, "does not match the keyring", "flowvault keys rekey", "nothing was changed")
	if _, errOut, code := cli(t, bin, []string{oldEnv}, nil, "keys", "status", "--data", data); code != 1 || !strings.Contains(errOut, "does not match the keyring") {
		t.Fatalf("status with the old key: %d %q", code, errOut)
	}
	if got := storeAccounts(t, data); !slicesEqual(got, moved) {
		t.Fatalf("the refused start changed the store: %v, was %v", got, moved)
	}
	// Run again, from the old key or any other, it finds everything done,
	// and changes and records nothing (also after a rotation, which is
	// the keyring's last fact then).
	if out, errOut, code := cli(t, bin, []string{oldEnv}, nil, "keys", "rekey", "--data", data, "--new-master-key-file", newFile); code != 0 || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("rekey again: %d %q %q", code, out, errOut)
	}
	// The new key rotates as the old one did.
	if out, errOut, code := cli(t, bin, nil, nil, "keys", "rotate", "--data", data, "--master-key-file", newFile); code != 0 || !strings.Contains(out, "re-wrapped 2 data keys") {
		t.Fatalf("rotate with the new key: %d %q %q", code, out, errOut)
	}
	otherEnv := masterKeyEnv(bytes.Repeat([]byte{9}, 32))
	if out, errOut, code := cli(t, bin, []string{otherEnv}, nil, "keys", "rekey", "--data", data, "--new-master-key-file", newFile); code != 0 || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("rekey from a key that sealed nothing: %d %q %q", code, out, errOut)
	}
	trail := serveAndRead(t, bin, data, "FLOWVAULT_MASTER_KEY_FILE="+newFile)
	if n := strings.Count(trail, " keys.rekey "); n != 1 || !strings.Contains(trail, " os:") {
		t.Fatalf("audit after the rekey (%d rekeys):\n%s", n, trail)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// buildCrashBinary compiles cmd/flowvault with the rekey's crash hook
// ($FLOWVAULT_TEST_CRASH_AT names the step after which it exits).
func buildCrashBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "flowvault-crash")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version=test-1.2.3 -X main.crashHooks=on", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	return bin
}

// copyDir copies a stopped server's data dir.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "data")
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return to
}

// A rekey that dies after any of its steps leaves a data dir that no
// server starts on with either key alone, saying why, and whose keyring
// one of the two keys opens; run again it finishes, the new key then
// serves every secret, and the audit trail records the rekey once. In dev
// mode, with no new key named, a new dev key replaces master.key.
func TestKeysRekeyCrash(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	crash := buildCrashBinary(t)
	oldKey, newKey := bytes.Repeat([]byte{3}, 32), bytes.Repeat([]byte{4}, 32)
	oldEnv, newEnv := masterKeyEnv(oldKey), masterKeyEnv(newKey)
	newFile := writeKeyFile(t, newKey)
	seeded := seedServer(t, bin, oldEnv)
	devSeeded := seedServer(t, bin)

	for _, tt := range []struct {
		step string
		dev  bool // dev mode, to a new dev key
	}{
		{"marked", false}, {"resealed", false}, {"erased", false}, {"recorded", false},
		{"closed", false}, {"moved", false}, {"dev-key", false},
		{"resealed", true}, {"moved", true}, {"dev-key", true},
	} {
		name := tt.step
		if tt.dev {
			name = "dev " + name
		}
		t.Run(name, func(t *testing.T) {
			data, env, args := copyDir(t, seeded), []string{oldEnv}, []string{"--new-master-key-file", newFile}
			if tt.dev {
				data, env, args = copyDir(t, devSeeded), nil, nil
			}
			oldDevKey, _ := os.ReadFile(filepath.Join(data, "master.key"))
			rekey := append([]string{"keys", "rekey", "--data", data}, args...)
			_, errOut, code := cli(t, crash, append(env, "FLOWVAULT_TEST_CRASH_AT="+tt.step), nil, rekey...)
			if code != 97 || !strings.Contains(errOut, "exiting after step "+tt.step) {
				t.Fatalf("crash at %s: exit %d %q", tt.step, code, errOut)
			}
			// Neither key alone starts a server, which says what to do.
			startEnvs := [][]string{{oldEnv}, {newEnv}}
			if tt.dev {
				startEnvs = [][]string{nil}
			}
			for _, e := range startEnvs {
				refuseStart(t, bin, data, e, "was interrupted", "run `flowvault keys rekey` again", "nothing was changed")
			}
			for _, sub := range []string{"rotate", "status"} {
				if _, errOut, code := cli(t, bin, env, nil, "keys", sub, "--data", data); code != 1 || !strings.Contains(errOut, "was interrupted") {
					t.Fatalf("keys %s on the interrupted rekey: %d %q", sub, code, errOut)
				}
			}
			out, errOut, code := cli(t, bin, env, nil, rekey...)
			if code != 0 || !strings.Contains(out, "the keyring (1 terms, active term 1) under the new master key") {
				t.Fatalf("rekey again: %d %q %q", code, out, errOut)
			}
			if _, err := os.Stat(filepath.Join(data, "rekey-in-progress")); !os.IsNotExist(err) {
				t.Fatalf("the marker is still there: %v", err)
			}
			serveEnv := []string{"FLOWVAULT_MASTER_KEY_FILE=" + newFile}
			if tt.dev {
				serveEnv = nil
				key, err := os.ReadFile(filepath.Join(data, "master.key"))
				if err != nil || bytes.Equal(key, oldDevKey) {
					t.Fatalf("master.key after a dev rekey: %v (unchanged: %v)", err, bytes.Equal(key, oldDevKey))
				}
				if _, err := os.Stat(filepath.Join(data, "master.key.new")); !os.IsNotExist(err) {
					t.Fatalf("master.key.new is still there: %v", err)
				}
			} else {
				refuseStart(t, bin, data, []string{oldEnv}, "does not match the keyring")
			}
			trail := serveAndRead(t, bin, data, serveEnv...)
			if n := strings.Count(trail, " keys.rekey KEYRING:1 "); n != 1 {
				t.Fatalf("%d rekeys in the audit trail:\n%s", n, trail)
			}
		})
	}
}

// A new master key file that the flag or its variable names but leaves
// blank is refused before anything is touched, as a blank
// --master-key-file is: on a dev-mode data dir it was taken for no new
// key at all, and the rekey went ahead under a new dev key, erasing the
// one in master.key and moving the store to another NATS account, which
// voids every worker's credentials. Not parallel: it sets the
// environment.
func TestKeysRekeyBlankNewKeyFile(t *testing.T) {
	mk := bytes.Repeat([]byte{7}, 32)
	data := filepath.Join(t.TempDir(), "data")
	log, closeLog := openDataDir(t, data, mk)
	key, _ := secrets.ParseMasterKey(base64.StdEncoding.EncodeToString(mk))
	if _, err := secrets.OpenKeys(context.Background(), log.JetStream(), key, secrets.KeysOptions{}); err != nil {
		t.Fatal(err)
	}
	closeLog()
	devFile := filepath.Join(data, secrets.DevKeyFileName)
	devKey := []byte(base64.StdEncoding.EncodeToString(mk) + "\n")
	if err := os.WriteFile(devFile, devKey, 0o600); err != nil {
		t.Fatal(err)
	}
	accounts := storeAccounts(t, data)

	t.Setenv(secrets.MasterKeyEnv, "")
	os.Unsetenv(secrets.MasterKeyEnv)
	t.Setenv(newMasterKeyEnv, "")
	os.Unsetenv(newMasterKeyEnv)
	for _, tt := range blankFileCases("new-master-key-file") {
		t.Run(tt.name, func(t *testing.T) {
			tt.setEnv(t)
			out, errOut, code := runCLI(append([]string{"keys", "rekey", "--data", data}, tt.args...)...)
			if code != 1 || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 mentioning %q", code, out, errOut, tt.want)
			}
			if got, err := os.ReadFile(devFile); err != nil || !bytes.Equal(got, devKey) {
				t.Fatalf("%s after the refused rekey: %v, changed: %v", secrets.DevKeyFileName, err, !bytes.Equal(got, devKey))
			}
			if got := storeAccounts(t, data); !slicesEqual(got, accounts) {
				t.Fatalf("the refused rekey moved the store: %v, was %v", got, accounts)
			}
		})
	}
}
