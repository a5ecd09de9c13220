package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An admin creates an application with the app command, its key going
// to a 0600 key file the CLI signs in with; grant gives it READ on a
// secret and takes it back; a revoked key and a deleted application no
// longer sign in.
func TestAppAndGrantCLI(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	data, server := startClientServer(t, bin)
	as := func(keyFile, stdin string, args ...string) (string, string, int) {
		t.Helper()
		return cli(t, bin, []string{"FLOWVAULT_KEY_FILE=" + keyFile}, []byte(stdin), append(args, "--server", server)...)
	}
	admin := filepath.Join(data, "bootstrap-admin.json")
	must := func(keyFile, stdin string, args ...string) string {
		t.Helper()
		out, errOut, code := as(keyFile, stdin, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s%s", args, code, out, errOut)
		}
		return out
	}
	must(admin, "s3cret-value\n", "secret", "put", "db_password")

	keyFile := filepath.Join(t.TempDir(), "reader.json")
	out := must(admin, "", "app", "create", "reader", "--role", "USER", "--out", keyFile)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "created application ") || !strings.HasSuffix(lines[1], " to "+keyFile) {
		t.Fatalf("create: %q", out)
	}
	id := strings.Fields(lines[0])[2]
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if strings.Contains(out, "keySecret") {
		t.Fatalf("the key's secret was printed: %q", out)
	}
	if out := must(admin, "", "app", "list"); !strings.Contains(out, id+"\treader\tapp:") {
		t.Fatalf("list: %q", out)
	}
	// An unknown role is refused before anything is made.
	if out, errOut, code := as(admin, "", "app", "create", "half", "--role", "USER,NOSUCHROLE"); code == 0 || !strings.Contains(errOut, "unknown role") {
		t.Fatalf("create with an unknown role: exit %d: %s%s", code, out, errOut)
	}
	if out := must(admin, "", "app", "list"); strings.Contains(out, "\thalf\t") {
		t.Fatalf("an application was made with an unknown role: %q", out)
	}

	// Without a grant the application may not read the value; with one
	// it may; withdrawn, it may not again.
	readValue := func() (string, int) {
		out, _, code := as(keyFile, "", "secret", "get", "db_password", "--show-value")
		return out, code
	}
	if out, code := readValue(); code == 0 {
		t.Fatalf("read without a grant: %q", out)
	}
	if out := must(admin, "", "grant", "add", "app:"+id, "SECRET_NAME:db_password", "read"); out != "granted READ on SECRET_NAME:db_password to app:"+id+"\n" {
		t.Fatalf("grant add: %q", out)
	}
	if out, code := readValue(); code != 0 || out != "s3cret-value" {
		t.Fatalf("read with a grant: %d %q", code, out)
	}
	if out := must(admin, "", "grant", "list", "app:"+id); out != "SECRET_NAME:db_password\tREAD\n" {
		t.Fatalf("grant list: %q", out)
	}
	if out := must(admin, "", "grant", "on", "SECRET_NAME:db_password"); out != "USER:app:"+id+"\tREAD\n" {
		t.Fatalf("grant on: %q", out)
	}
	// Withdrawing what a subject does not hold (a mistyped id, an access
	// never granted) says so rather than that it withdrew it.
	if out := must(admin, "", "grant", "remove", "app:"+id+"x", "SECRET_NAME:db_password", "READ"); out != "app:"+id+"x holds none of READ on SECRET_NAME:db_password by a grant of its own: nothing withdrawn\n" {
		t.Fatalf("grant remove from a subject holding nothing: %q", out)
	}
	if out := must(admin, "", "grant", "remove", "app:"+id, "SECRET_NAME:db_password", "read,update"); out != "withdrew READ on SECRET_NAME:db_password from app:"+id+" (UPDATE was not held)\n" {
		t.Fatalf("grant remove: %q", out)
	}
	if out, code := readValue(); code == 0 {
		t.Fatalf("read after the grant was withdrawn: %q", out)
	}

	// Roles, keys.
	if out := must(admin, "", "app", "role", id, "worker"); out != "gave role WORKER: application "+id+"\n" {
		t.Fatalf("role: %q", out)
	}
	must(admin, "", "app", "role", id, "WORKER", "--remove")
	var second accessKey
	if err := json.Unmarshal([]byte(must(admin, "", "app", "key", id)), &second); err != nil || second.KeyID == "" || second.KeySecret == "" {
		t.Fatalf("key to stdout: %+v %v", second, err)
	}
	if out := must(admin, "", "app", "keys", id); len(strings.Split(strings.TrimSpace(out), "\n")) != 2 || !strings.Contains(out, second.KeyID+"\tACTIVE\t") {
		t.Fatalf("keys: %q", out)
	}
	must(admin, "", "app", "revoke-key", id, second.KeyID)
	secondFile := filepath.Join(t.TempDir(), "second.json")
	b, _ := json.Marshal(second)
	if err := os.WriteFile(secondFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := as(secondFile, "", "secret", "list"); code == 0 || !strings.Contains(errOut, "HTTP 401") {
		t.Fatalf("a revoked key signed in: %d %q", code, errOut)
	}
	if _, _, code := as(keyFile, "", "secret", "list"); code != 0 {
		t.Fatal("the first key stopped working when the second was revoked")
	}
	must(admin, "", "app", "delete", id)
	if _, errOut, code := as(keyFile, "", "secret", "list"); code == 0 || !strings.Contains(errOut, "HTTP 401") {
		t.Fatalf("a deleted application's key signed in: %d %q", code, errOut)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"grant", "add", "team:x", "SECRET_NAME:db_password", "READ"}, 1, "want app:ID, user:ID, group:ID or role:NAME"},
		{[]string{"grant", "add", "app:x", "db_password", "READ"}, 1, "want TYPE:ID"},
		{[]string{"grant", "add", "app:x", "SECRET_NAME:db_password", "FLY"}, 1, "FLY"},
		{[]string{"grant", "remove", "app:x", "SECRET_NAME:db_password", "READ,FLY"}, 1, `access "FLY": want one of`},
		{[]string{"app", "create", "x", "--role", "EMPEROR"}, 2, "EMPEROR"},
		{[]string{"app", "delete", ".."}, 1, "not a name or id"},
		{[]string{"app", "role", "x"}, 2, "wrong number of arguments"},
	} {
		out, errOut, code := as(admin, "", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d mentioning %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
}
