// Package masking hides secret data in everything flowvault shows or stores
// besides the secret store itself:
//
//   - key-based masking: any input or output key named _secrets or _masked,
//     and a workflow's maskedFields, collapse to "***" in every read path;
//   - value redaction: the value of every secret resolved for a workflow, in
//     its plain, JSON-escaped, URL-encoded and base64 forms, is replaced by
//     "***" wherever it appears in what a workflow writes (task outputs,
//     variables, logs, reasons) before it is persisted or shown.
//
// Redaction is string matching, and string matching is best effort against
// a worker determined to leak (GitHub Actions' masking is bypassed with a
// double base64): flowvault's first line is to keep values out of places,
// and redaction catches the honest mistakes (a worker echoing its input, an
// error message quoting a header).
package masking

import "slices"

// Mask is what hidden data reads as.
const Mask = "***"

// Reserved keys whose whole subtree is hidden in read paths.
const (
	KeySecrets = "_secrets"
	KeyMasked  = "_masked"
)

// IsMaskedKey reports whether a map key hides its value.
func IsMaskedKey(k string) bool { return k == KeySecrets || k == KeyMasked }

// HoldsMaskedKey reports whether v has a _secrets or _masked key at any
// depth.
func HoldsMaskedKey(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if IsMaskedKey(k) || HoldsMaskedKey(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if HoldsMaskedKey(e) {
				return true
			}
		}
	}
	return false
}

// Keys returns a copy of v in which the value of every _secrets or _masked
// key, at any depth, is "***". Maps and slices are copied; v is not changed.
func Keys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if IsMaskedKey(k) {
				out[k] = Mask
				continue
			}
			out[k] = Keys(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = Keys(e)
		}
		return out
	}
	return v
}

// KeysMap is Keys for a map, keeping nil as nil.
func KeysMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return Keys(m).(map[string]any)
}

// Fields returns a copy of m whose top-level keys named in fields are
// "***" (a workflow definition's maskedFields apply to its input and
// output), with key-based masking applied as well.
func Fields(m map[string]any, fields []string) map[string]any {
	out := KeysMap(m)
	for k := range out {
		if slices.Contains(fields, k) {
			out[k] = Mask
		}
	}
	return out
}
