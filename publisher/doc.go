// Package publisher puts delivery tasks on NATS JetStream.
//
// Every task lands on <stream>.<tenant>.<collection>.<docKey> where the docKey
// is base64url without padding, so that any document key, including ones with
// '.', '*', '>' or spaces, is a single literal subject token. When a subject
// would exceed streams.MaxSubjectBytes the docKey token is replaced by a 32-character
// SHA-256 hex prefix and the task is flagged subjectHashed; consumers always
// key on the decoded docKey carried in the payload, never on the token. The
// subject codec lives in package streams, beside the stream definitions,
// because ingest parses what the publisher builds.
//
// A Publisher sends tasks asynchronously within a bounded window, retries
// every failed or unacknowledged publish until JetStream stores it, keeps
// the tasks of one subject in Publish order on the stream, and records tasks
// that can never be published (oversize, no valid subject) on the
// dead-letter stream instead of dropping them. Each message's Nats-Msg-Id is
// the task's deterministic EventID, so retries and republishes after a
// crash are dropped by the stream's duplicate window.
package publisher
