package executions

import "github.com/flowvault/flowvault/engine"

// foldRecord folds one record's events into a workflow's state. It is a
// variable so that tests fold the same records with plain engine.Apply and
// compare the read models (see FoldPlainly).
var foldRecord = engine.ApplyRecord
