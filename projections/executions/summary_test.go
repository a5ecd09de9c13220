package executions_test

import (
	"bytes"
	"testing"

	"github.com/flowvault/flowvault/internal/testutil/fields"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas"
)

// summaryFields is Summary without its encoder.
type summaryFields executions.Summary

// A summary encodes by hand exactly as the reflective way, with no field,
// every field and each field alone set.
func TestSummaryEncodingMatchesReflection(t *testing.T) {
	for i, s := range fields.Variants[executions.Summary]() {
		got, err := schemas.MarshalSorted(s)
		if err != nil {
			t.Fatal(err)
		}
		want, err := schemas.MarshalSorted((*summaryFields)(s))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("summary #%d encodes to\n%x\nreflection gives\n%x", i, got, want)
		}
	}
}
