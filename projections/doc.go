// Package projections keeps flowvault's read models: Pebble key spaces
// derived from the event log by replay.
//
// A Runner follows one stream and feeds its records to one Projection. The
// projection's writes and the stream sequence they bring it to (its
// checkpoint) are committed in one Pebble batch. A crash
// therefore never applies a record twice or skips one: after a restart the
// runner resumes after the committed checkpoint. Deleting the Pebble
// directory is always safe: every projection rebuilds from sequence 0 to the
// same contents.
//
// Records that cannot be read (poison messages) are reported as a metric and
// an error log line, then either parked (recorded under the projection's
// parked key space, checkpoint advanced) or made to halt the runner before
// the record, as the runner is configured.
package projections
