// Package chaos holds the end-to-end tests that run the whole pipeline as
// separate OS processes: the watcher, ingest and worker binaries, a
// nats-server and the Temporal dev server.
//
// The chaos test kills and restarts them on a seeded fault schedule and
// makes the webhook receiver fail, then checks that every document change
// was delivered, in per-key order where the design promises it, with
// duplicates only under one webhook-id.
//
// The scale-out test runs the recommended replicated configuration (two
// ingest replicas with sharing: pinned, two workers) and checks delivery,
// per-key order and graceful ingest hand-over; its benchmark measures
// throughput as worker replicas are added.
//
// The ingest crash test SIGKILLs the pinned ingest replica while it holds
// tasks and checks that the standby keeps each key's order.
//
// The mid-fetch test SIGKILLs the worker while it fetches a large document
// image from the image bucket (a proxy freezes its NATS connection at the
// first chunk of an object), in a batch it delivered part of, and checks
// that every change is delivered in order with its full images, with no
// dead letters, and that the image bucket drains.
//
//	go test ./chaos -run TestChaosShort -count=1            # part of make test
//	go test ./chaos -run TestScaleOut -count=1              # part of make test
//	go test ./chaos -run TestIngestCrashKeepsOrder -count=1  # part of make test
//	go test ./chaos -run TestWorkerKilledMidFetch -count=1   # part of make test
//	CHAOS_FULL=1 go test ./chaos -run TestChaosFull -timeout 30m -count=1  # make chaos
//	go test ./chaos -run '^$' -bench ScaleOut -benchtime 1x
//
// CHAOS_SEED=<n> replays a schedule; every run prints its seed.
package chaos
