// Package schemas defines what flowvault writes to its event log: the
// envelope every event travels in, the record that groups the events of one
// decision into one log message, and the registry that maps event type names
// and schema versions to Go types.
//
// Events are encoded with msgpack using short map keys, so that fields can be
// added without breaking old readers. A change that is not additive gets a new
// schema version; the old version stays registered with an upcaster so that
// every event ever written can still be decoded. Replay-based auditing and
// projection rebuilds depend on that.
package schemas
