// Package conductor holds the JSON models of Conductor's REST API
// (WorkflowDef, TaskDef, Workflow, Task, TaskResult, ...) with their exact
// field names, as the official SDKs send and expect them.
//
// Definitions must round-trip verbatim, including fields flowvault does not
// act on: WorkflowDef and WorkflowTask keep the raw JSON they were decoded
// from, and the API returns that, not a re-encoding of the struct.
package conductor
