// Package service holds what every Triggerflow binary shares: structured
// logging, the operations HTTP server (/metrics, /healthz, /readyz), and
// connections to NATS and Temporal built from configuration. Binaries in
// cmd/ only wire these to the components.
package service
