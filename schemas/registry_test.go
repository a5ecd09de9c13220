package schemas_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/schemas"
)

var update = flag.Bool("update", false, "rewrite golden fixtures")

// greetingV1 is how test.greeting looked when the fixture was written.
type greetingV1 struct {
	Name string `msgpack:"name"`
}

// greeting is the current (v2) shape: the name was split in two.
type greeting struct {
	First string `msgpack:"first"`
	Last  string `msgpack:"last"`
}

func (*greeting) EventType() string { return "test.greeting" }

func registry() *schemas.Registry {
	r := schemas.NewRegistry()
	r.Register(&greeting{}, 2)
	r.RegisterUpcaster("test.greeting", 1, func(data []byte) (schemas.Event, error) {
		var old greetingV1
		if err := msgpack.Unmarshal(data, &old); err != nil {
			return nil, err
		}
		first, last, _ := strings.Cut(old.Name, " ")
		return &greeting{First: first, Last: last}, nil
	})
	return r
}

// The fixture holds a record written by the v1 code. It must decode and
// upcast forever; regenerate it only for a new fixture, never to fix a test.
func TestDecodeOldVersionFixture(t *testing.T) {
	path := filepath.Join("testdata", "greeting_v1.record")
	if *update {
		data, _ := msgpack.Marshal(greetingV1{Name: "Ada Lovelace"})
		rec, err := schemas.EncodeRecord([]schemas.Envelope{{Type: "test.greeting", Version: 1, ID: "g-1", Time: 1732939000000000000, Principal: "app:writer", Data: data}})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, rec, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	envs := readFixture(t, path)
	if len(envs) != 1 || envs[0].Version != 1 || envs[0].ID != "g-1" || envs[0].Principal != "app:writer" {
		t.Fatalf("envelope = %+v", envs)
	}
	ev, err := registry().Decode(envs[0])
	if err != nil {
		t.Fatal(err)
	}
	if got, want := *ev.(*greeting), (greeting{First: "Ada", Last: "Lovelace"}); got != want {
		t.Fatalf("upcast = %+v, want %+v", got, want)
	}
}

func TestEncodeDecodeCurrent(t *testing.T) {
	r := registry()
	env, err := r.Encode(&greeting{First: "Grace", Last: "Hopper"})
	if err != nil {
		t.Fatal(err)
	}
	if env.Type != "test.greeting" || env.Version != 2 {
		t.Fatalf("envelope = %+v", env)
	}
	env.ID = "g-2"
	rec, err := schemas.EncodeRecord([]schemas.Envelope{env, env})
	if err != nil {
		t.Fatal(err)
	}
	envs, err := schemas.DecodeRecord(rec)
	if err != nil || len(envs) != 2 {
		t.Fatalf("decode record = %v, %v", envs, err)
	}
	ev, err := r.Decode(envs[1])
	if err != nil || ev.(*greeting).Last != "Hopper" {
		t.Fatalf("decode = %+v, %v", ev, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	r := registry()
	good, _ := r.Encode(&greeting{First: "a"})
	tests := []struct {
		name string
		env  schemas.Envelope
		want error
	}{
		{"unknown type", schemas.Envelope{Type: "test.nope", Version: 1, Data: good.Data}, schemas.ErrUnknownType},
		{"unknown version", schemas.Envelope{Type: "test.greeting", Version: 9, Data: good.Data}, schemas.ErrUnknownType},
		{"corrupt payload", schemas.Envelope{Type: "test.greeting", Version: 2, Data: []byte{0xc1, 0x00}}, schemas.ErrCorrupt},
		{"wrong shape", schemas.Envelope{Type: "test.greeting", Version: 2, Data: []byte{0x93, 1, 2, 3}}, schemas.ErrCorrupt},
		{"corrupt old payload", schemas.Envelope{Type: "test.greeting", Version: 1, Data: []byte{0xff}}, schemas.ErrCorrupt},
	}
	for _, tt := range tests {
		if _, err := r.Decode(tt.env); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := r.Encode(&unregistered{}); !errors.Is(err, schemas.ErrUnknownType) {
		t.Errorf("encode unregistered: %v", err)
	}
}

type unregistered struct{}

func (*unregistered) EventType() string { return "test.unregistered" }

func TestDecodeRecordRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {}, {2, 0x90}, {1}, {1, 0x90}, {1, 0xc1}, []byte("{json}"), {1, 0x91, 0x80}} {
		if _, err := schemas.DecodeRecord(b); !errors.Is(err, schemas.ErrCorrupt) {
			t.Errorf("DecodeRecord(%x) = %v, want ErrCorrupt", b, err)
		}
	}
}

// Whatever bytes a subject holds, decoding returns an error value and never
// panics.
func FuzzDecodeRecord(f *testing.F) {
	r := registry()
	good, _ := r.Encode(&greeting{First: "x"})
	good.ID = "1"
	rec, _ := schemas.EncodeRecord([]schemas.Envelope{good})
	f.Add(rec)
	next := good
	next.ID = good.ID + "/1"
	shared, _ := schemas.EncodeRecord([]schemas.Envelope{good, next})
	f.Add(shared)
	f.Add([]byte{1, 0x91, 0x81, 0xa1, 't', 0xa1, 'x'})
	f.Add(bytes.Repeat([]byte{0xdd}, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		envs, err := schemas.DecodeRecord(b)
		if err != nil {
			return
		}
		for _, env := range envs {
			_, _ = r.Decode(env)
		}
	})
}
