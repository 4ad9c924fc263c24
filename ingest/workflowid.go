package ingest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"unicode"
	"unicode/utf8"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/triggerflow/triggerflow/trigger"
	"github.com/triggerflow/triggerflow/workflows"
)

// MaxWorkflowIDBytes bounds the IDs WorkflowID returns. Temporal rejects
// IDs over limit.maxIDLength (1000 bytes by default); staying well below
// leaves room for servers configured tighter.
const MaxWorkflowIDBytes = 800

// MaxKeywordBytes bounds the search attribute values ingest sets. SQL
// visibility stores custom Keyword attributes in VARCHAR(255) columns, the
// tightest limit of the visibility stores; Elasticsearch allows more.
const MaxKeywordBytes = 255

// Workflow ID prefixes. The readable and hashed forms use different
// prefixes so that no readable ID can ever equal a hashed one.
const (
	readablePrefix = "tf/"
	hashedPrefix   = "tfh/"
)

// WorkflowID names the delivery workflow of one (tenant, trigger,
// collection, docKey). Different tuples always get different IDs, and the
// ID is readable in the Temporal UI:
//
//	tf/<tenant>/<triggerId>/<collection>/<docKey>
//
// Each part is percent-escaped: '%', control and space characters, bytes
// that are not valid UTF-8 and '/' (except in the collection, whose
// segments it separates) become %XX. The tenant, trigger ID and docKey then
// hold no '/', so the first two and the last '/' split the ID back into its
// parts and the escaping can be undone: the mapping is injective.
//
// When the readable form would exceed MaxWorkflowIDBytes the ID becomes
//
//	tfh/<tenant>/<triggerId>/<sha256 hex of the length-prefixed tuple>
//
// (or tfh/<hex> if even the escaped tenant and trigger are too long). The
// full values remain in the search attributes and memo.
func WorkflowID(tenant, triggerID, collection, docKey string) string {
	var b strings.Builder
	b.WriteString(readablePrefix)
	escapeTo(&b, tenant, false)
	b.WriteByte('/')
	escapeTo(&b, triggerID, false)
	b.WriteByte('/')
	escapeTo(&b, collection, true)
	b.WriteByte('/')
	escapeTo(&b, docKey, false)
	if b.Len() <= MaxWorkflowIDBytes {
		return b.String()
	}

	sum := hex.EncodeToString(tupleHash(tenant, triggerID, collection, docKey))
	b.Reset()
	b.WriteString(hashedPrefix)
	escapeTo(&b, tenant, false)
	b.WriteByte('/')
	escapeTo(&b, triggerID, false)
	b.WriteByte('/')
	b.WriteString(sum)
	if b.Len() <= MaxWorkflowIDBytes {
		return b.String()
	}
	return hashedPrefix + sum
}

// tupleHash is SHA-256 over the length-prefixed parts, so no two different
// tuples hash the same bytes.
func tupleHash(parts ...string) []byte {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return h.Sum(nil)
}

// escapeTo writes s with every byte that is not part of a kept rune as %XX.
// Kept runes are valid, printable, non-space and neither '%' nor (unless
// keepSlash) '/'. Decoding is unambiguous because '%' is never kept.
func escapeTo(b *strings.Builder, s string, keepSlash bool) {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		keep := r != utf8.RuneError && r != '%' && (r != '/' || keepSlash) &&
			unicode.IsPrint(r) && !unicode.IsSpace(r)
		if keep {
			b.WriteString(s[i : i+size])
		} else {
			for _, c := range []byte(s[i : i+size]) {
				b.WriteByte('%')
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&0xF])
			}
		}
		i += size
	}
}

// SearchKeyword is the value ingest stores in a Keyword search attribute
// for s: s itself when it fits in MaxKeywordBytes, else "sha256:" and the
// hex SHA-256 of s, which operators compute to search for a long docKey
// (the memo keeps the full value).
func SearchKeyword(s string) string {
	if len(s) <= MaxKeywordBytes {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// maxSummaryBytes keeps the UI summary short; Temporal caps user metadata
// summaries at a few hundred bytes.
const maxSummaryBytes = 200

// summary is the one-line StaticSummary shown in the Temporal UI, such as
// "acme · orders/o-17 · order-paid".
func summary(t *trigger.DeliveryTask) string {
	return truncateUTF8(t.Tenant+" · "+t.Collection+"/"+t.DocKey+" · "+t.TriggerID, maxSummaryBytes)
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// StartOptions are the start options of t's workflow, id, on taskQueue:
// what ingest and an operator's redelivery start it with. Memo keys are
// part of the contract with operators' tooling.
func StartOptions(id, taskQueue string, t *trigger.DeliveryTask) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:        id,
		TaskQueue: taskQueue,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.TenantID.ValueSet(SearchKeyword(t.Tenant)),
			workflows.TriggerID.ValueSet(SearchKeyword(t.TriggerID)),
			workflows.Collection.ValueSet(SearchKeyword(t.Collection)),
			workflows.DocKey.ValueSet(SearchKeyword(t.DocKey)),
		),
		Memo:          map[string]any{"docKey": t.DocKey, "collection": t.Collection},
		StaticSummary: summary(t),
		// An entity workflow that exits when idle must start again on its
		// next event; the conflict policy stays at its default,
		// USE_EXISTING, which is what makes the signal reach a running one.
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}
}
