package system

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/dop251/goja"
)

// evalJSON runs src with scope and returns its result as JSON values.
func evalJSON(t *testing.T, src string, scope map[string]any) (any, error) {
	t.Helper()
	return runJS(context.Background(), Budget{}, src, scope, func(r *jsRun, v goja.Value) (any, error) { return r.toJSON(v) })
}

func loopOutput() map[string]any {
	return map[string]any{
		"iteration": int64(10),
		"1":         map[string]any{"step": map[string]any{"i": int64(1)}},
		"2":         map[string]any{"step": map[string]any{"i": int64(2), "tags": []any{"a", "b"}}},
		"10":        map[string]any{"step": map[string]any{"i": int64(10)}},
		"storage":   map[string]any{"count": int64(4)},
	}
}

// A lazy object reads as the object JSON.parse makes of the same data:
// every script here gives the same result either way.
func TestLazyJSONReadsAsParsedJSON(t *testing.T) {
	t.Parallel()
	scripts := []struct {
		src  string
		want any // nil: only compared with the parsed object
	}{
		{"$.loop.iteration", int64(10)},
		{"$.loop['2'].step.tags[1]", "b"},
		{"$.loop[10].step.i", int64(10)},
		{"$.loop.missing === undefined && !('missing' in $.loop) && '2' in $.loop", true},
		{"Object.keys($.loop)", []any{"1", "2", "10", "iteration", "storage"}},
		{"Object.keys($)", []any{"loop", "n"}},
		{"$.loop.b = 1; $.loop.a = 2; $.loop[3] = 0; Object.keys($.loop)", []any{"1", "2", "3", "10", "iteration", "storage", "b", "a"}},
		{"delete $.loop['1']; delete $.loop.storage; Object.keys($.loop)", []any{"2", "10", "iteration"}},
		{"$.loop.x = 1; delete $.loop.x; 'x' in $.loop || Object.keys($.loop).includes('x')", false},
		{"delete $.loop.iteration; $.loop.iteration = 1; $.loop.iteration", int64(1)},
		{"delete $.loop.storage; $.loop.storage = 1; Object.keys($.loop)", []any{"1", "2", "10", "iteration", "storage"}},
		{"$.loop['2'] === $.loop['2']", true},
		{"$.loop['2'].step.i = 7; $.loop['2'].step.i", int64(7)},
		{"$.loop.storage.count++; $.loop.storage", map[string]any{"count": int64(5)}},
		{"JSON.stringify($.loop)", nil},
		{"$.loop", nil},
		{"Object.entries($.loop).length", int64(5)},
		{"$.loop.hasOwnProperty('10') && !$.loop.hasOwnProperty('toString')", true},
		{"typeof $.loop.toString", "function"},
	}
	for _, s := range scripts {
		parsed, err := evalJSON(t, s.src, map[string]any{"loop": loopOutput(), "n": int64(3)})
		if err != nil {
			t.Fatalf("%s, parsed: %v", s.src, err)
		}
		lazy, err := evalJSON(t, s.src, map[string]any{"loop": lazyJSON(loopOutput()), "n": int64(3)})
		if err != nil {
			t.Fatalf("%s, lazy: %v", s.src, err)
		}
		if !reflect.DeepEqual(lazy, parsed) {
			t.Errorf("%s: lazy %#v, parsed %#v", s.src, lazy, parsed)
		}
		if s.want != nil && !reflect.DeepEqual(lazy, s.want) {
			t.Errorf("%s = %#v, want %#v", s.src, lazy, s.want)
		}
	}
}

// Only what the script reads is converted, and the source is never
// changed.
func TestLazyJSONConvertsWhatIsRead(t *testing.T) {
	t.Parallel()
	src := loopOutput()
	src["9"] = math.NaN() // JSON has no NaN: converting it fails
	if _, err := evalJSON(t, "$.loop.iteration", map[string]any{"loop": src}); err == nil {
		t.Fatal("the parsed scope converted a NaN")
	}
	got, err := evalJSON(t, "$.loop['2'].step.i = 5; $.loop.iteration", map[string]any{"loop": lazyJSON(src)})
	if err != nil || got != int64(10) {
		t.Fatalf("a script that does not read the NaN: %v, %v", got, err)
	}
	if _, err := evalJSON(t, "$.loop[9]", map[string]any{"loop": lazyJSON(src)}); err == nil || !strings.Contains(err.Error(), "NaN") {
		t.Fatalf("reading the NaN: %v", err)
	}
	delete(src, "9")
	if !reflect.DeepEqual(src, loopOutput()) {
		t.Fatalf("the source changed: %v", src)
	}
}
