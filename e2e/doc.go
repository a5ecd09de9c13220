// Package e2e holds flowvault's end-to-end tests: whole nodes (embedded NATS,
// Pebble, HTTP) started in temporary directories, driven over real HTTP and
// NATS by real workers — the Go SDK, a Node.js worker, Conductor-style HTTP
// pollers, and the published Conductor JavaScript SDK.
package e2e
