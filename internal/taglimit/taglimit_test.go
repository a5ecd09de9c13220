package taglimit_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/taglimit"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Check keeps each tag once, key and value only, and names every tag it
// refuses and a set over the limit; Fit refuses growing past the limit
// only.
func TestCheckAndFit(t *testing.T) {
	t.Parallel()
	many := func(n int) []conductor.Tag {
		out := make([]conductor.Tag, n)
		for i := range out {
			out[i] = conductor.Tag{Key: fmt.Sprintf("k%d", i), Value: "v"}
		}
		return out
	}
	long := strings.Repeat("x", taglimit.MaxLen)
	for _, tc := range []struct {
		name  string
		tags  []conductor.Tag
		kept  int
		paths []string
	}{
		{"none", nil, 0, nil},
		{"longest", []conductor.Tag{{Key: long, Value: long}}, 1, nil},
		{"repeats and types dropped", []conductor.Tag{{Key: "a", Value: "1", Type: "t"}, {Key: "a", Value: "1"}, {Key: "a", Value: "2"}}, 2, nil},
		{"the most, each twice", append(many(taglimit.Max), many(taglimit.Max)...), taglimit.Max, nil},
		{"one too many", many(taglimit.Max + 1), taglimit.Max + 1, []string{"tags"}},
		{"no key", []conductor.Tag{{Value: "v"}}, 0, []string{"tags[0].key"}},
		{"key too long", []conductor.Tag{{Key: "a"}, {Key: long + "x"}}, 1, []string{"tags[1]"}},
		{"value too long", []conductor.Tag{{Key: "a", Value: long + "x"}}, 0, []string{"tags[0]"}},
		{"not UTF-8", []conductor.Tag{{Key: "a", Value: "\xff"}}, 0, []string{"tags[0]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ve := &fault.ValidationError{}
			kept := taglimit.Check(ve, "tags", tc.tags)
			var paths []string
			for _, f := range ve.Fields {
				paths = append(paths, f.Path)
			}
			if len(kept) != tc.kept || fmt.Sprint(paths) != fmt.Sprint(tc.paths) {
				t.Fatalf("kept %d, refused at %v; want %d, %v", len(kept), paths, tc.kept, tc.paths)
			}
			for _, k := range kept {
				if k.Type != "" {
					t.Fatalf("kept %+v with its type", k)
				}
			}
		})
	}
	for _, tc := range []struct {
		cur, next int
		refused   bool
	}{
		{0, taglimit.Max, false},
		{taglimit.Max, taglimit.Max + 1, true},
		{0, taglimit.Max + 1, true},
		{taglimit.Max + 5, taglimit.Max + 2, false}, // over it before the limit: may still lose tags
	} {
		err := taglimit.Fit("tags", "x", tc.cur, tc.next)
		var ve *fault.ValidationError
		if refused := errors.As(err, &ve); refused != tc.refused || refused && ve.Fields[0].Path != "tags" {
			t.Errorf("Fit(%d, %d) = %v, want refused %v", tc.cur, tc.next, err, tc.refused)
		}
	}
}

// Removal takes the tags to remove as sent, refusing none: a tag stored
// before the limits may still be named.
func TestRemoval(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", taglimit.MaxLen+1)
	got := taglimit.Removal([]conductor.Tag{{Key: long, Value: "\xff", Type: "t"}, {Key: long, Value: "\xff"}, {Value: "v"}})
	want := []conductor.Tag{{Key: long, Value: "\xff"}, {Value: "v"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Removal = %.60v, want %.60v", got, want)
	}
}

// Check and Removal look at every tag a request sends, as many as an
// 8 MiB body holds: each searched for among those kept before, the
// 262,144 here took minutes of CPU (40,000, in 1 MB, 8 s per request),
// where they take a fraction of a second. Waited for with a deadline
// far beyond that.
func TestEveryTagOfABodyOnce(t *testing.T) {
	t.Parallel()
	const n = 1 << 18
	tags := make([]conductor.Tag, n)
	for i := range tags {
		tags[i] = conductor.Tag{Key: fmt.Sprintf("k%d", i), Value: "v"}
	}
	done := make(chan string, 1)
	go func() {
		ve := &fault.ValidationError{}
		checked, removal := taglimit.Check(ve, "tags", tags), taglimit.Removal(tags)
		var paths []string
		for _, f := range ve.Fields {
			paths = append(paths, f.Path)
		}
		done <- fmt.Sprintf("checked %d, refused at %v; removal %d", len(checked), paths, len(removal))
	}()
	select {
	case got := <-done:
		if want := fmt.Sprintf("checked %d, refused at [tags]; removal %d", n, n); got != want {
			t.Fatalf("%s, want %s", got, want)
		}
	case <-time.After(time.Minute):
		t.Fatalf("Check and Removal of %d tags did not return within a minute", n)
	}
}
