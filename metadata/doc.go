// Package metadata keeps Conductor workflow and task definitions as events
// and serves them from a read model.
//
// # Log
//
// Every change is an event on the FV_META stream (see schemas/metadata.go).
// All versions of one workflow name share the subject
// fv.meta.wfdef.<token(name)>, and a task definition has
// fv.meta.taskdef.<token(name)>; tags live on their definition's subject.
// A write decides on the subject's current state and appends with that
// state's sequence as the expectation, so two writers racing on one name
// cannot both win: the loser gets eventlog.ErrConflict, reloads from the log
// and decides again. Within one Store, writes to a subject are serialized,
// so only engines in different processes ever race on a name. Each
// append's event ids derive from the request that caused it, the subject,
// the expected sequence and the content, so a retried publish is
// deduplicated by the server.
//
// Access to a definition follows its name's existence, tags and creator,
// all on that one subject. The API reads the subject's Revision, checks
// access, and passes At(rev) to the write: the write decides only on the
// state of that revision, and answers fault.ErrConflict, writing nothing,
// if the name was created, removed, re-created or re-tagged in between.
//
// # Read model
//
// Projection folds the stream into Pebble: workflow definitions by name and
// big-endian version (the latest version is the last key), task definitions
// by name, tag sets, and each subject's last sequence (the expectation of
// the next write). After an append a Store waits for the projection to reach
// the append's sequence, so a caller's next read sees its own write.
//
// The read model also indexes, per task name, the workflow definition
// versions that have tasks of that name, with their types and creators
// (TaskUses). A workflow may run a SIMPLE task no task definition
// describes, and the creator of a definition may take the tasks of its
// name: the API asks the index before it lets anyone create the
// definition of a name someone else's workflows use. The index follows
// the engine: tasks nested in SWITCH, FORK_JOIN and DO_WHILE, in inline
// sub-workflow definitions, and the tasks that DYNAMIC and
// FORK_JOIN_DYNAMIC name with constants. A second index lists, per
// workflow name, the versions that start a workflow by that name and who
// wrote them (Starters), which the API asks before anyone else creates
// that name's definition. Both are a function of the stored definitions,
// built as they are applied; a read model built by a flowvault without
// the second is in an older layout, and rebuilt from the log at start.
//
// # Stored JSON
//
// A definition is returned as the JSON the client registered, with the
// top-level keys the server owns set by the read model: version (workflows),
// createTime, updateTime, createdBy and updatedBy. Other keys keep their
// position and their values byte for byte, so fields flowvault does not
// model, and numbers beyond 2^53, survive. Overwriting keeps createTime and
// createdBy.
//
// Tags are not part of a stored definition. A registration may carry
// "tags" (Orkes' ExtendedWorkflowDef/ExtendedTaskDef): they are applied to
// the name's tag set in the same record (replacing it unless
// "overwriteTags" is false, in which case they are added), and "tags" and
// "overwriteTags" are removed from the stored JSON. Tags are read and
// changed through the tag methods, matching Conductor's GET models, which
// have no tags field. Tags belong to a name: they survive new versions and
// are dropped when the name's last version (or the task definition) is
// removed.
//
// # Hot path
//
// LookupWorkflowDef and LookupTaskDef serve the engine: they return parsed
// definitions cached in memory and revalidated by the subject's sequence,
// and on a read-model miss they read the subject from the log, because
// another engine may have registered the definition a moment ago.
package metadata
