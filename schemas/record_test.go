package schemas_test

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/flowvault/flowvault/schemas"
)

// decision is the envelopes of one executor decision: shared metadata, and
// ids numbered after the first's.
func decision(t *testing.T, n int) []schemas.Envelope {
	t.Helper()
	envs := make([]schemas.Envelope, n)
	for i := range envs {
		env, err := registry().Encode(&greeting{First: "Grace", Last: string(rune('A' + i))})
		if err != nil {
			t.Fatal(err)
		}
		env.ID = "rec-1"
		if i > 0 {
			env.ID += "/" + strconv.Itoa(i)
		}
		env.Time, env.CausationID, env.CorrelationID, env.Principal = 1732939000000000000+int64(n), "req-1", "wf-1", "app:writer"
		envs[i] = env
	}
	return envs
}

func TestRecordFormats(t *testing.T) {
	tests := []struct {
		name   string
		envs   func() []schemas.Envelope
		format byte
	}{
		{"one event", func() []schemas.Envelope { return decision(t, 1) }, 2},
		{"one decision", func() []schemas.Envelope { return decision(t, 3) }, 2},
		{"sixteen events", func() []schemas.Envelope { return decision(t, 16) }, 2},
		{"negative time", func() []schemas.Envelope {
			envs := decision(t, 2)
			for i := range envs {
				envs[i].Time = -5
			}
			return envs
		}, 2},
		{"versions past a byte", func() []schemas.Envelope {
			envs := decision(t, 2)
			envs[0].Version, envs[1].Version = 300, math.MaxUint16
			return envs
		}, 2},
		{"ids of their own", func() []schemas.Envelope {
			envs := decision(t, 2)
			envs[1].ID = "other"
			return envs
		}, 1},
		{"an id numbered out of order", func() []schemas.Envelope {
			envs := decision(t, 3)
			envs[1], envs[2] = envs[2], envs[1]
			return envs
		}, 1},
		{"times apart", func() []schemas.Envelope {
			envs := decision(t, 2)
			envs[1].Time++
			return envs
		}, 1},
		{"principals apart", func() []schemas.Envelope {
			envs := decision(t, 2)
			envs[1].Principal = "someone"
			return envs
		}, 1},
		{"no payload", func() []schemas.Envelope {
			envs := decision(t, 1)
			envs[0].Data = nil
			return envs
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			envs := tt.envs()
			rec, err := schemas.EncodeRecord(envs)
			if err != nil {
				t.Fatal(err)
			}
			if rec[0] != tt.format {
				t.Errorf("format %d, want %d", rec[0], tt.format)
			}
			got, err := schemas.DecodeRecord(rec)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if len(got[i].Data) == 0 {
					got[i].Data = nil // an absent payload, however it reads back
				}
			}
			if !reflect.DeepEqual(got, envs) {
				t.Errorf("decoded\n%+v\nwant\n%+v", got, envs)
			}
		})
	}
}

// A decision's record holds its metadata once.
func TestSharedMetadataWrittenOnce(t *testing.T) {
	one, err := schemas.EncodeRecord(decision(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	three, err := schemas.EncodeRecord(decision(t, 3))
	if err != nil {
		t.Fatal(err)
	}
	envs := decision(t, 3)
	perEvent := len(envs[1].Type) + len(envs[1].Data) + 8
	if grew := len(three) - len(one); grew > 2*perEvent {
		t.Errorf("two more events grew the record by %d bytes, want at most %d", grew, 2*perEvent)
	}
}

// The fixture holds a decision's record in format 2 as first written. It
// must decode forever; regenerate it only for a new fixture.
func TestDecodeSharedRecordFixture(t *testing.T) {
	path := filepath.Join("testdata", "decision_v2.record")
	if *update {
		rec, err := schemas.EncodeRecord(decision(t, 3))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, rec, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := readFixture(t, path), decision(t, 3); !reflect.DeepEqual(got, want) {
		t.Errorf("fixture decodes to\n%+v\nwant\n%+v", got, want)
	}
}

func TestDecodeSharedRecordRejectsGarbage(t *testing.T) {
	good, err := schemas.EncodeRecord(decision(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string][]byte{
		"no header":          {2, 0x90},
		"short header":       {2, 0x95, 0xa0, 0, 0xa0, 0xa0, 0xa0},
		"header not strings": {2, 0x96, 1, 0, 0xa0, 0xa0, 0xa0, 0x90},
		"no events":          {2, 0x96, 0xa0, 0, 0xa0, 0xa0, 0xa0, 0x90},
		"events not a list":  {2, 0x96, 0xa0, 0, 0xa0, 0xa0, 0xa0, 0xc0},
		"short event":        {2, 0x96, 0xa0, 0, 0xa0, 0xa0, 0xa0, 0x91, 0x92, 0xa1, 't', 1},
		"event without type": {2, 0x96, 0xa0, 0, 0xa0, 0xa0, 0xa0, 0x91, 0x93, 0xa0, 1, 0xc0},
		"version too large":  {2, 0x96, 0xa0, 0, 0xa0, 0xa0, 0xa0, 0x91, 0x93, 0xa1, 't', 0xce, 1, 0, 0, 0, 0xc0},
		"trailing bytes":     append(append([]byte{}, good...), 0),
		"truncated":          good[:len(good)-1],
	}
	for name, b := range tests {
		if _, err := schemas.DecodeRecord(b); !errors.Is(err, schemas.ErrCorrupt) {
			t.Errorf("%s: DecodeRecord(%x) = %v, want ErrCorrupt", name, b, err)
		}
	}
}

// BenchmarkRecord encodes and decodes a decision of three events as the
// executor writes it (format 2), and the same with the metadata of each
// event its own (format 1).
func BenchmarkRecord(b *testing.B) {
	for _, format := range []struct {
		name string
		envs func() []schemas.Envelope
	}{
		{"shared", func() []schemas.Envelope { return decision(&testing.T{}, 3) }},
		{"apart", func() []schemas.Envelope {
			envs := decision(&testing.T{}, 3)
			for i := range envs {
				envs[i].ID += "+"
			}
			return envs
		}},
	} {
		envs := format.envs()
		rec, err := schemas.EncodeRecord(envs)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(format.name+"/encode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := schemas.EncodeRecord(envs); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(format.name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(rec)))
			for b.Loop() {
				if _, err := schemas.DecodeRecord(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// An engine that shares its log with older ones writes only the formats
// they read: format 1 for a decision whose envelopes fit format 2.
func TestRecordFormatCap(t *testing.T) {
	envs := decision(t, 3)
	rec, err := schemas.RecordFormat1.Encode(envs)
	if err != nil {
		t.Fatal(err)
	}
	if rec[0] != byte(schemas.RecordFormat1) {
		t.Fatalf("format %d, want 1", rec[0])
	}
	got, err := schemas.DecodeRecord(rec)
	if err != nil || !reflect.DeepEqual(got, envs) {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, envs)
	}
	for f, valid := range map[schemas.RecordFormat]bool{0: false, 1: true, 2: true, schemas.LatestRecordFormat + 1: false} {
		if f.Valid() != valid {
			t.Errorf("RecordFormat(%d).Valid() = %v, want %v", f, !valid, valid)
		}
	}
}
