package masking

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkRedactClean compares, for a text that holds no value, the search
// that spares most strings the replacer with the replacer's single pass,
// by needle count and text length (go test -bench RedactClean ./masking).
func BenchmarkRedactClean(b *testing.B) {
	for _, values := range []int{3, 8, 40} {
		var vs [][]byte
		for i := range values {
			vs = append(vs, []byte(fmt.Sprintf("secret-value-%02d", i)))
		}
		r := NewRedactor(vs...)
		replacer := r.replacerOnce()
		for _, size := range []int{16, 1 << 10, 4 << 10, 16 << 10} {
			text := strings.Repeat("nothing to hide ", size/16)
			b.Run(fmt.Sprintf("needles=%d/bytes=%d/search", len(r.needles), size), func(b *testing.B) {
				for b.Loop() {
					if r.holds(text) && len(r.search) <= maxSearch {
						b.Fatal("found a needle")
					}
				}
			})
			b.Run(fmt.Sprintf("needles=%d/bytes=%d/replacer", len(r.needles), size), func(b *testing.B) {
				for b.Loop() {
					_ = replacer.Replace(text)
				}
			})
		}
	}
}

// BenchmarkRedactString measures what redaction costs a text that holds no
// value, the common case, for values of letters and digits only (every
// encoder writes them as they are) and for values with characters each
// encoder writes its own way, with and without a run that all of them
// leave alone long enough to stand for the value's forms (see
// appendSearch), the redactor built as the guard builds it, of the values
// and their parts (go test -bench RedactString ./masking).
func BenchmarkRedactString(b *testing.B) {
	for _, kind := range []struct{ name, format string }{
		{"plain", "secret-value-%02d"},
		{"symbols", `p@ss w!rd&"é/%02d-Tr0ub4dor`},
		{"short-runs", `x7#K%02d!2mQ$9vL&4nR*8w/é"`},
	} {
		for _, values := range []int{1, 8, 40} {
			var vs [][]byte
			for i := range values {
				vs = append(vs, []byte(fmt.Sprintf(kind.format, i)))
			}
			r := NewRedactor(WithParts(vs)...)
			for _, size := range []int{1 << 10, 16 << 10} {
				text := strings.Repeat("nothing to hide ", size/16)
				b.Run(fmt.Sprintf("%s/values=%d/bytes=%d", kind.name, values, size), func(b *testing.B) {
					b.SetBytes(int64(len(text)))
					for b.Loop() {
						if r.String(text) != text {
							b.Fatal("a text without a value changed")
						}
					}
				})
			}
		}
	}
}

// BenchmarkRedactorWith measures extending a workflow's redactor by one
// value, as each resolution and each sealed value does, for a value that
// every encoder writes as it is and for one that each writes its own way,
// with its parts, as the guard extends it (go test -bench RedactorWith
// ./masking).
func BenchmarkRedactorWith(b *testing.B) {
	base := NewRedactor([]byte("bench-user-4f1d"), []byte("bench-password-9a07c3e2"))
	for _, v := range []string{"session-6f9c2a71-0b3e-4d55-9e0f-2b8c1d7a4e63", `p@ss w!rd&"é/Tr0ub4dor`} {
		b.Run(fmt.Sprintf("bytes=%d", len(v)), func(b *testing.B) {
			for b.Loop() {
				_ = base.With(WithParts([][]byte{[]byte(v)})...)
			}
		})
	}
}

// BenchmarkForms measures computing a value's forms, most of what
// extending a redactor by a value costs, for the values of
// BenchmarkRedactorWith (go test -bench Forms ./masking).
func BenchmarkForms(b *testing.B) {
	for _, v := range []string{"session-6f9c2a71-0b3e-4d55-9e0f-2b8c1d7a4e63", `p@ss w!rd&"é/Tr0ub4dor`} {
		b.Run(fmt.Sprintf("bytes=%d", len(v)), func(b *testing.B) {
			for b.Loop() {
				_, _ = forms([]byte(v))
			}
		})
	}
}
