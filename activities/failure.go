package activities

import (
	"time"

	"go.temporal.io/sdk/temporal"
)

// Failure types: the ApplicationError type of a failed attempt, and
// Failure.Type. The workflow lists the non-retryable ones in its retry
// policy's NonRetryableErrorTypes as well, so they stop retries even if an
// older worker returned them as retryable.
const (
	// TypeHTTP4xx is a 4xx response not in Config.RetryableStatuses.
	// Non-retryable: the receiver rejected this request and will again.
	TypeHTTP4xx = "HTTP_4XX"
	// TypeHTTPThrottled is a 4xx response in Config.RetryableStatuses
	// (408, 429 by default). Retryable, honouring Retry-After.
	TypeHTTPThrottled = "HTTP_4XX_RETRYABLE"
	// TypeHTTP5xx is a 5xx response (or any other non-2xx status outside
	// 3xx/4xx). Retryable, honouring Retry-After.
	TypeHTTP5xx = "HTTP_5XX"
	// TypeHTTP3xx is a redirect. Non-retryable: Standard Webhooks counts a
	// 3xx as a failure, and a redirect is a property of the endpoint that a
	// retry will not change; an operator fixes the URL and redrives.
	TypeHTTP3xx = "HTTP_3XX"
	// TypeTimeout is an attempt that exceeded its timeout. Retryable.
	TypeTimeout = "HTTP_TIMEOUT"
	// TypeNetwork is a connection or protocol error. Retryable.
	TypeNetwork = "NETWORK"
	// TypeSecret is a secret lookup failure. Retryable: a secret store
	// outage must delay deliveries, never drop or unsign them.
	TypeSecret = "SECRET_UNAVAILABLE"
	// TypeToken is a token source failure. Retryable.
	TypeToken = "TOKEN_UNAVAILABLE"
	// TypeOversize is a body larger than Config.MaxBodyBytes.
	// Non-retryable.
	TypeOversize = "BODY_TOO_LARGE"
	// TypeForbidden is a URL resolving to an address the worker may not
	// call. Non-retryable.
	TypeForbidden = "URL_FORBIDDEN"
	// TypeInvalid is a task that cannot be sent at all (bad URL, event id
	// unusable as webhook-id). Non-retryable.
	TypeInvalid = "INVALID_TASK"
	// TypeUnauthenticated is a task whose signature does not verify (see
	// package tasksig): nothing is resolved, signed or sent for it.
	// Non-retryable.
	TypeUnauthenticated = "UNAUTHENTICATED"
	// TypeImageMissing is a document image the task references that is
	// gone from the image bucket, or does not match its digest (package
	// images). Non-retryable.
	TypeImageMissing = "IMAGE_MISSING"
	// TypeImageUnavailable is a document image that could not be fetched
	// for now (NATS unreachable). Retryable.
	TypeImageUnavailable = "IMAGE_UNAVAILABLE"
)

// NonRetryableTypes lists the failure types that never succeed on retry.
func NonRetryableTypes() []string {
	return []string{TypeHTTP4xx, TypeHTTP3xx, TypeOversize, TypeForbidden, TypeInvalid, TypeUnauthenticated, TypeImageMissing}
}

// Failure describes one failed attempt. It is the detail of the
// ApplicationError Deliver returns and the Failure of a BatchResult, so the
// Temporal UI shows why an attempt failed. It never holds a secret or a
// token.
type Failure struct {
	EventID string `json:"eventId"`
	// Type is one of the Type constants.
	Type string `json:"type"`
	// Message is a one-line summary, e.g. "POST https://example.com: 404
	// Not Found after 12ms".
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
	// Status is the HTTP status, 0 when there was no response.
	Status int `json:"status,omitempty"`
	// LatencyMS is the time from sending the request to reading the
	// response.
	LatencyMS int64 `json:"latencyMs"`
	// RetryAfterMS is the receiver's Retry-After in milliseconds, capped
	// at Config.MaxRetryAfter; zero when absent.
	RetryAfterMS int64 `json:"retryAfterMs,omitempty"`
	// Body is the start of the response body (Config.MaxResponseBodyBytes).
	Body          string `json:"body,omitempty"`
	BodyTruncated bool   `json:"bodyTruncated,omitempty"`
}

func (f *Failure) Error() string { return f.Message }

// RetryAfter returns RetryAfterMS as a duration.
func (f *Failure) RetryAfter() time.Duration { return time.Duration(f.RetryAfterMS) * time.Millisecond }

// ApplicationError is how an attempt's failure reaches Temporal: the type
// drives the retry policy, Retry-After becomes NextRetryDelay, and the
// Failure itself is the detail that the UI shows and the workflow's
// dead-letter record quotes.
func (f *Failure) ApplicationError() error {
	opts := temporal.ApplicationErrorOptions{
		NonRetryable: !f.Retryable,
		Details:      []any{*f},
	}
	if f.Retryable {
		// Zero asks for the policy's own backoff; the SDK has no way to
		// say "retry immediately", so Retry-After: 0 means exactly that.
		opts.NextRetryDelay = f.RetryAfter()
	}
	return temporal.NewApplicationErrorWithOptions(f.Message, f.Type, opts)
}

// Result describes a successful delivery.
type Result struct {
	EventID   string `json:"eventId"`
	Status    int    `json:"status"`
	LatencyMS int64  `json:"latencyMs"`
}

// BatchResult reports a DeliverBatch: the first Delivered tasks succeeded,
// in order. Failure, when set, is the attempt of task[Delivered] that
// failed; the batch stopped there. Delivered < len(tasks) with no Failure
// means the batch was interrupted (the worker is stopping) before
// task[Delivered] got an answer.
type BatchResult struct {
	Delivered int      `json:"delivered"`
	Results   []Result `json:"results,omitempty"`
	Failure   *Failure `json:"failure,omitempty"`
}
