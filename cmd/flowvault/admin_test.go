package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// admin recover, given the master key, makes a new admin key for a
// stopped server's data dir whose admin keys are lost: written to a 0600
// file, it works against the restarted server, and the audit trail shows
// the operating system's user made it. Without the master key, with a
// wrong one, while a server holds the dir, or over an existing file, it
// refuses and makes nothing.
func TestAdminRecoverCLI(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	keyEnv := masterKeyEnv(bytes.Repeat([]byte{5}, 32))
	data := seedServer(t, bin, keyEnv)
	// Every admin key is lost.
	if err := os.Remove(filepath.Join(data, "bootstrap-admin.json")); err != nil {
		t.Fatal(err)
	}
	outDir := t.TempDir()
	recovered := filepath.Join(outDir, "admin.json")
	taken := filepath.Join(outDir, "taken.json")
	os.WriteFile(taken, []byte("keep me"), 0o600)

	refusedWhileServing(t, bin, data, []string{keyEnv}, "admin", "recover", "--data", data, "--out", recovered)

	for _, tt := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no master key", nil, []string{"--out", recovered}, "no master key"},
		{"wrong master key", []string{masterKeyEnv(bytes.Repeat([]byte{6}, 32))}, []string{"--out", recovered}, "does not match the keyring"},
		{"no --out", []string{keyEnv}, nil, "--out is required"},
		{"existing file", []string{keyEnv}, []string{"--out", taken}, "an existing file is not replaced"},
		{"not a data dir", []string{keyEnv}, []string{"--data", t.TempDir(), "--out", recovered}, "not a flowvault data directory"},
	} {
		args := append([]string{"admin", "recover", "--data", data}, tt.args...)
		if _, errOut, code := cli(t, bin, tt.env, nil, args...); code == 0 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d %q, want an error mentioning %q", tt.name, code, errOut, tt.want)
		}
	}
	if _, err := os.Stat(recovered); !os.IsNotExist(err) {
		t.Fatalf("a refused recovery wrote %s: %v", recovered, err)
	}
	if b, _ := os.ReadFile(taken); string(b) != "keep me" {
		t.Fatalf("a refused recovery replaced an existing file: %q", b)
	}

	out, errOut, code := cli(t, bin, []string{keyEnv}, nil, "admin", "recover", "--data", data, "--out", recovered)
	if code != 0 || !strings.Contains(out, "created admin application") || !strings.Contains(out, "(mode 0600)") {
		t.Fatalf("recover: %d %q %q", code, out, errOut)
	}
	info, err := os.Stat(recovered)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", recovered, info, err)
	}
	var key struct{ KeyID, KeySecret string }
	raw, _ := os.ReadFile(recovered)
	if err := json.Unmarshal(raw, &key); err != nil || key.KeyID == "" || key.KeySecret == "" {
		t.Fatalf("the key file: %v", err)
	}
	if strings.Contains(out+errOut, key.KeySecret) {
		t.Fatal("the secret was printed")
	}

	cmd := exec.Command(bin, "server", "--log-format", "json", "--data", data, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	cmd.Env = cleanEnv(keyEnv)
	p := startCmd(t, cmd)
	server := "http://" + p.waitLog(t, "flowvault listening")["addr"].(string)
	defer stopServer(t, p)
	asRecovered := []string{"FLOWVAULT_KEY_FILE=" + recovered}
	if got, errOut, code := cli(t, bin, asRecovered, nil, "secret", "get", "a", "--show-value", "--server", server); code != 0 || got != "value-a" {
		t.Fatalf("the recovered key reads a secret: %d %q %q", code, got, errOut)
	}
	if _, errOut, code := cli(t, bin, asRecovered, []byte("value-c"), "secret", "put", "c", "--server", server); code != 0 {
		t.Fatalf("the recovered key writes a secret: %s", errOut)
	}
	trail, errOut, code := cli(t, bin, asRecovered, nil, "audit", "--server", server)
	if code != 0 {
		t.Fatal(errOut)
	}
	for _, want := range []string{" app.create APPLICATION:", `name="Recovery admin"`, " app.roles APPLICATION:", "added=ADMIN", " key.create ACCESS_KEY:" + key.KeyID} {
		found := false
		for _, line := range strings.Split(trail, "\n") {
			found = found || strings.Contains(line, " os:") && strings.Contains(line, want)
		}
		if !found {
			t.Errorf("no audit line by os:<user> with %q:\n%s", want, trail)
		}
	}
}
