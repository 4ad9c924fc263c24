// Package publisher puts delivery tasks on NATS JetStream.
//
// Every task lands on <stream>.<tenant>.<collection>.<docKey> where the docKey
// is base64url without padding, so that any document key, including ones with
// '.', '*', '>' or spaces, is a single literal subject token. When a subject
// would exceed MaxSubjectBytes the docKey token is replaced by a 32-character
// SHA-256 hex prefix and the task is flagged subjectHashed; consumers always
// key on the decoded docKey carried in the payload, never on the token.
package publisher
