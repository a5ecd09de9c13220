package node

import (
	"context"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/scheduler"
	"github.com/flowvault/flowvault/secrets"
)

// readModels are the projections Start runs, as a rebuild needs them. A
// projection started but missing here is not forgotten silently: its keys
// show up in a verification as unowned drift.
func readModels() []projections.Spec {
	spec := func(stream string, proj func() projections.Projection) projections.Spec {
		return projections.Spec{Stream: stream, Poison: projections.Park, New: proj} // as startProjection
	}
	return []projections.Spec{
		spec(eventlog.Access.Name, func() projections.Projection { return auth.Projection{} }),
		spec(eventlog.Workflows.Name, func() projections.Projection { return executions.NewProjection() }),
		spec(eventlog.Metadata.Name, func() projections.Projection { return metadata.Projection{} }),
		spec(eventlog.Metadata.Name, func() projections.Projection { return scheduler.Projection{} }),
		spec(eventlog.Secrets.Name, func() projections.Projection { return secrets.Projection{} }),
		spec(eventlog.Audit.Name, func() projections.Projection { return natsauth.Projection{} }),
	}
}

// verifier checks the node's read models against rebuilds from its log
// (POST /api/audit/verify).
type verifier struct{ n *Node }

// Verify rebuilds into a temporary store under the data directory, which
// is as protected as the read models it copies.
func (v verifier) Verify(ctx context.Context, sample int) ([]projections.VerifyResult, error) {
	return projections.Verify(ctx, v.n.log, v.n.store, readModels(), projections.VerifyOptions{Dir: v.n.cfg.DataDir, Sample: sample})
}
