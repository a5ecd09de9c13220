package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/audit"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/secrets"
)

// openDataDir opens the embedded store of a stopped server's data dir
// (created when new) with master key mk, in this process, and closes it
// at the end of the test or when the returned func is called.
func openDataDir(t *testing.T, data string, mk []byte) (*eventlog.Log, func()) {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.NATSListen = data, ""
	key, err := secrets.ParseMasterKey(base64.StdEncoding.EncodeToString(mk))
	if err != nil {
		t.Fatal(err)
	}
	log, _, _, err := node.OpenLog(context.Background(), cfg, key, eventlog.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	closeLog := func() {
		if !closed {
			closed = true
			log.Close()
		}
	}
	t.Cleanup(closeLog)
	return log, closeLog
}

// A rotation that stops after it stored the rotated keyring (here at a
// data key it cannot unwrap; Ctrl-C stops it the same way) made the new
// term all the same: the audit trail records it, with the keys it
// re-wrapped, and the error says that the keyring was rotated and to run
// it again. It said only why it stopped, and the trail had no record of
// the term.
func TestKeysRotateStoppedHalfWay(t *testing.T) {
	ctx := context.Background()
	mk := bytes.Repeat([]byte{7}, 32)
	data := filepath.Join(t.TempDir(), "data")
	log, closeLog := openDataDir(t, data, mk)
	key, _ := secrets.ParseMasterKey(base64.StdEncoding.EncodeToString(mk))
	keys, err := secrets.OpenKeys(ctx, log.JetStream(), key, secrets.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"secret.a.1", "secret.b.1"} {
		if _, err := keys.NewDataKey(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// Listed after the two above, so that they are re-wrapped first.
	kv, err := log.JetStream().KeyValue(ctx, secrets.KeyBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "dek.secret.zz.1", []byte("not a wrapped key")); err != nil {
		t.Fatal(err)
	}
	closeLog()

	t.Setenv(secrets.MasterKeyEnv, base64.StdEncoding.EncodeToString(mk))
	out, errOut, code := runCLI("keys", "rotate", "--data", data)
	for _, want := range []string{"rotated the keyring to term 2 (was 1), recorded in the audit trail", "after re-wrapping 2 data keys", "unwrap data key secret.zz.1", "run `flowvault keys rotate` again"} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Fatalf("rotate: exit %d %q %q, want 1 saying %q", code, out, errOut, want)
		}
	}

	log, _ = openDataDir(t, data, mk)
	recs, err := log.ReadSubject(ctx, audit.KeysSubject, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []schemas.KeyringRotated
	for _, r := range recs {
		for _, env := range r.Events {
			if ev, err := schemas.Default.Decode(env); err == nil {
				if rot, ok := ev.(*schemas.KeyringRotated); ok {
					got = append(got, *rot)
				}
			}
		}
	}
	if len(got) != 1 || got[0].Term != 2 || got[0].Previous != 1 || got[0].Rewrapped != 2 || !strings.HasPrefix(got[0].By, "os:") {
		t.Fatalf("keyring facts in the audit trail: %+v, want one rotation to term 2 from 1 with 2 re-wrapped", got)
	}
}
