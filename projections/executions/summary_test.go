package executions_test

import (
	"testing"

	"github.com/flowvault/flowvault/internal/testutil/fields"
	"github.com/flowvault/flowvault/projections/executions"
)

// summaryFields is Summary without its encoder.
type summaryFields executions.Summary

// A summary encodes by hand exactly as the reflective way, with no field,
// every field and each field alone set.
func TestSummaryEncodingMatchesReflection(t *testing.T) {
	fields.MatchesReflection[executions.Summary, summaryFields](t)
}
