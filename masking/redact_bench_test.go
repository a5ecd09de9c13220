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
					if r.holds(text) && len(r.needles) <= searchNeedles {
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
