// Package chaos holds the end-to-end chaos test of the whole pipeline: the
// watcher, ingest and worker binaries, a nats-server and the Temporal dev
// server each run as their own OS process while a seeded fault schedule
// kills and restarts them and makes the webhook receiver fail, and the test
// then checks that every document change was delivered, in per-key order
// where the design promises it, with duplicates only under one webhook-id.
//
//	go test ./chaos -run TestChaosShort -count=1            # part of make test
//	CHAOS_FULL=1 go test ./chaos -run TestChaosFull -timeout 30m -count=1  # make chaos
//
// CHAOS_SEED=<n> replays a schedule; every run prints its seed.
package chaos
