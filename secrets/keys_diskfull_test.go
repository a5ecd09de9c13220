//go:build linux

package secrets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A key bucket whose store failed a write on a full disk refuses new keys
// as the log refuses appends: the write that met the end of the disk fails
// with ErrNoStorage (unavailable: a retryable 503 at the API), and every
// one after it at once, saying the bucket's stream stores nothing until
// its disk has room; once it has, keys are stored again. Unguarded, each
// waited out its timeout and failed with "context deadline exceeded"
// alone, which a secret's PUT answered as its 503's reason.
func TestNewKeyOnAFullDisk(t *testing.T) {
	l, disk, child := testutil.SmallDiskLog(t, 32<<20, nil)
	if !child {
		return
	}
	ctx := testutil.Context(t, 4*time.Minute)
	k, err := OpenKeys(ctx, l.JetStream(), GenerateMasterKey(), KeysOptions{Logger: testutil.Logger(t), Guard: l})
	if err != nil {
		t.Fatal(err)
	}
	// A write nobody answers waits out this, as an API request's does
	// JetStream's default timeout.
	newKey := func(id string) error {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := k.NewDataKey(wctx, id)
		return err
	}
	if err := newKey("secret.full.before"); err != nil {
		t.Fatalf("a key with room: %v", err)
	}

	filler := filepath.Join(disk, "filler")
	testutil.FillDisk(t, filler, 64<<10)
	err = testutil.UntilRefused(t, "key", func(i int) error { return newKey(fmt.Sprintf("secret.full.k%d", i)) })
	if !errors.Is(err, eventlog.ErrNoStorage) || !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("a key on a full disk: %v; want ErrNoStorage, unavailable", err)
	}
	for i := range 3 {
		err := newKey(fmt.Sprintf("secret.full.after%d", i))
		if !errors.Is(err, eventlog.ErrNoStorage) || !errors.Is(err, fault.ErrUnavailable) ||
			!strings.Contains(err.Error(), "KV_"+KeyBucket+" failed a write and stores nothing until its disk has room again") {
			t.Fatalf("a key after the bucket's store failed: %v; want ErrNoStorage, refused at once until the disk has room", err)
		}
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Minute, 200*time.Millisecond, func() error {
		return newKey("secret.full.room")
	})
	if _, err := k.DataKey(ctx, "secret.full.before"); err != nil {
		t.Errorf("the key stored before the disk filled: %v", err)
	}
}
