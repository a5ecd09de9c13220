// Package api is flowvault's HTTP surface: the Conductor-compatible REST API
// under /api, GET /health, Prometheus metrics at /metrics, and later the web
// console. Handlers translate HTTP to calls on the engine, the secret store
// and the read models; errors are mapped to status codes in one place
// (errors.go).
package api
