// Package evaluator decides which triggers fire on a document change.
//
// An Evaluator compiles each validated trigger set into an immutable Index.
// The index finds the triggers whose collection pattern matches a change
// without scanning the whole set: exact collections are a map lookup, and
// '*'-globs are bucketed by segment count and literal first segment. Only
// the few candidates left are checked for event type and run their CEL
// condition, against one condition.Event decoded once per change.
//
// Conditions are deterministic (package condition admits no clock or random
// functions), so a change replayed after a crash matches the same triggers,
// which Match.Task then turns into the same delivery tasks with the same
// event ids.
package evaluator
