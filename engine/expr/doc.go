// Package expr evaluates Conductor parameter expressions: the ${...}
// templates of inputParameters, outputParameters and the like (OSS
// ParametersUtils, schemaVersion 2), with Jayway-style JSONPath lookups.
//
// It is pure: no I/O, no clock, no process environment. The decider calls
// Evaluate when it schedules a task and stores the result; secrets and
// environment variables ("${workflow.secrets.X}", "${workflow.env.X}") are
// left in the stored value as literal expressions and resolved only at task
// hand-off with ResolveDeferred, so their values are never persisted.
//
// Where Conductor's behaviour is an accident rather than a contract,
// flowvault is stricter:
//
//   - there is no lookup of process environment variables or JVM-style
//     system properties for a bare ${NAME};
//   - data substituted into a string is never re-read as an expression or an
//     escape (OSS unescapes "$${" in substituted data too);
//   - a deferred namespace must be written literally in the template;
//   - maps and lists interpolate as JSON rather than Java's toString;
//   - an unterminated "${" is a syntax error rather than literal text.
package expr
