package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"go.temporal.io/sdk/activity"

	"github.com/triggerflow/triggerflow/egress"
	"github.com/triggerflow/triggerflow/signature"
	"github.com/triggerflow/triggerflow/trigger"
)

// Event types of the webhook body, Standard Webhooks style (dot-separated,
// most general first): a create is "document.created", an update
// "document.updated", a delete "document.deleted".
const (
	EventDocumentCreated = "document.created"
	EventDocumentUpdated = "document.updated"
	EventDocumentDeleted = "document.deleted"
)

// EventType returns the webhook event type of a change type.
func EventType(t trigger.EventType) string {
	switch t {
	case trigger.EventCreate:
		return EventDocumentCreated
	case trigger.EventUpdate:
		return EventDocumentUpdated
	case trigger.EventDelete:
		return EventDocumentDeleted
	}
	return "document." + string(t)
}

// Envelope is the webhook body: the Standard Webhooks {type, timestamp,
// data} envelope. It is the same on every attempt of an event, so a
// receiver can compare bodies as well as webhook-id.
type Envelope struct {
	Type string `json:"type"`
	// Timestamp is when the change committed at the source, not when it
	// was sent (webhook-timestamp carries that).
	Timestamp time.Time `json:"timestamp"`
	Data      EventData `json:"data"`
}

// EventData is the envelope's data: which trigger fired on which document,
// and the document's images. Before is null for a create, After for a
// delete.
type EventData struct {
	Tenant         string          `json:"tenant"`
	TriggerID      string          `json:"triggerId"`
	TriggerVersion string          `json:"triggerVersion,omitempty"`
	Collection     string          `json:"collection"`
	DocKey         string          `json:"docKey"`
	EventID        string          `json:"eventId"`
	Before         json.RawMessage `json:"before"`
	After          json.RawMessage `json:"after"`
	SubjectHashed  bool            `json:"subjectHashed"`
	CommitTime     time.Time       `json:"commitTime"`
}

// Body returns the webhook body of a task.
func Body(task *trigger.DeliveryTask) ([]byte, error) {
	return json.Marshal(Envelope{
		Type:      EventType(task.Type),
		Timestamp: task.CommitTime.UTC(),
		Data: EventData{
			Tenant:         task.Tenant,
			TriggerID:      task.TriggerID,
			TriggerVersion: task.TriggerVersion,
			Collection:     task.Collection,
			DocKey:         task.DocKey,
			EventID:        task.EventID,
			Before:         task.Before,
			After:          task.After,
			SubjectHashed:  task.SubjectHashed,
			CommitTime:     task.CommitTime.UTC(),
		},
	})
}

// Deliver POSTs one task. It returns a retryable or non-retryable
// ApplicationError (type one of the Type constants, detail a Failure) so
// that Temporal's retry policy drives the attempts and records each one.
func (a *Activities) Deliver(ctx context.Context, task trigger.DeliveryTask) (Result, error) {
	res, f := a.post(ctx, &task, false)
	if f != nil {
		if err := ctx.Err(); err != nil && f.Type != TypeTimeout {
			// The activity itself is being cancelled or timed out; let
			// Temporal report that rather than a made-up HTTP failure.
			return Result{}, err
		}
		return Result{}, f.ApplicationError()
	}
	return res, nil
}

// DeliverBatch POSTs tasks in order, one POST each, and stops at the first
// failure, which it reports in the result rather than as an error: the
// workflow then retries that task alone through Deliver, where each attempt
// shows in history. Progress is heartbeated (the number delivered so far),
// so a workflow whose batch timed out knows where to resume.
func (a *Activities) DeliverBatch(ctx context.Context, tasks []trigger.DeliveryTask) (BatchResult, error) {
	out := BatchResult{Results: make([]Result, 0, len(tasks))}
	for i := range tasks {
		if ctx.Err() != nil {
			return out, nil
		}
		res, f := a.post(ctx, &tasks[i], true)
		if f != nil {
			if ctx.Err() != nil && f.Type != TypeTimeout {
				// Interrupted mid-request: no verdict on this task.
				return out, nil
			}
			out.Failure = f
			return out, nil
		}
		out.Delivered++
		out.Results = append(out.Results, res)
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, out.Delivered)
		}
	}
	return out, nil
}

// post makes one attempt. batch says it is a DeliverBatch attempt, whose
// failure the workflow rather than Temporal retries. A nil Failure means
// delivered.
func (a *Activities) post(ctx context.Context, task *trigger.DeliveryTask, batch bool) (Result, *Failure) {
	attempt := int32(1)
	if activity.IsActivity(ctx) {
		attempt = activity.GetInfo(ctx).Attempt
	}
	log := a.log.With(
		slog.String("tenant", task.Tenant), slog.String("triggerId", task.TriggerID),
		slog.String("collection", task.Collection), slog.String("eventId", task.EventID),
		slog.Int("attempt", int(attempt)),
	)
	collection, hashed := task.MetricCollection(), strconv.FormatBool(task.SubjectHashed)
	fail := func(f *Failure) (Result, *Failure) {
		f.EventID = task.EventID
		a.metrics.attempts.WithLabelValues(task.Tenant, collection, hashed, f.Type).Inc()
		if a.retried(ctx, task, f, batch) {
			a.metrics.retries.WithLabelValues(task.Tenant, f.Type).Inc()
		} else {
			a.metrics.tasks.WithLabelValues(task.Tenant, collection, hashed).Inc()
		}
		level := slog.LevelWarn
		if f.Retryable {
			level = slog.LevelInfo
		}
		log.Log(ctx, level, "webhook attempt failed",
			slog.String("type", f.Type), slog.Int("status", f.Status),
			slog.Int64("latencyMs", f.LatencyMS), slog.String("error", f.Message))
		return Result{}, f
	}

	u, err := url.Parse(task.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fail(&Failure{Type: TypeInvalid, Message: "webhook url is not an absolute http(s) URL"})
	}
	// Only scheme and host reach messages and logs: many providers put a
	// credential in the path or query.
	target := "POST " + u.Scheme + "://" + u.Host

	body, err := Body(task)
	if err != nil {
		return fail(&Failure{Type: TypeInvalid, Message: "encoding body: " + err.Error()})
	}
	if len(body) > a.cfg.MaxBodyBytes {
		return fail(&Failure{Type: TypeOversize, Message: fmt.Sprintf(
			"webhook body is %d bytes, more than the %d allowed", len(body), a.cfg.MaxBodyBytes)})
	}

	var secrets []signature.Secret
	if task.SecretsRef != "" {
		if a.secrets == nil {
			return fail(&Failure{Type: TypeSecret, Retryable: true, Message: fmt.Sprintf(
				"secret %q: the worker has no secret resolver", task.SecretsRef)})
		}
		secrets, err = a.secrets.Resolve(ctx, task.Tenant, task.SecretsRef)
		if err == nil && len(secrets) == 0 {
			err = errors.New("no secrets configured")
		}
		if err != nil {
			return fail(&Failure{Type: TypeSecret, Retryable: true, Message: fmt.Sprintf(
				"resolving secret %q: %v", task.SecretsRef, err)})
		}
	}
	var token string
	if a.tokens != nil {
		if token, err = a.tokens.Token(ctx, task.Tenant); err != nil {
			return fail(&Failure{Type: TypeToken, Retryable: true, Message: "getting bearer token: " + err.Error()})
		}
	}

	timeout := a.cfg.Timeout
	if task.Timeout > 0 {
		timeout = task.Timeout.D()
	}
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := retryablehttp.NewRequestWithContext(reqCtx, http.MethodPost, task.URL, body)
	if err != nil {
		return fail(&Failure{Type: TypeInvalid, Message: "building request: " + err.Error()})
	}
	for k, v := range task.Headers {
		req.Header.Set(k, v)
	}
	sent := a.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", a.cfg.UserAgent)
	req.Header.Set(signature.HeaderID, task.EventID)
	req.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(sent.Unix(), 10))
	if len(secrets) > 0 {
		sig, err := signature.Sign(task.EventID, sent, body, secrets...)
		if err != nil {
			return fail(&Failure{Type: TypeInvalid, Message: "signing: " + err.Error()})
		}
		req.Header.Set(signature.HeaderSignature, sig)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}

	start := time.Now()
	resp, err := a.client.Do(req)
	if err != nil {
		latency := time.Since(start).Milliseconds()
		switch {
		case errors.Is(err, egress.ErrDenied):
			return fail(&Failure{Type: TypeForbidden, LatencyMS: latency, Message: target + ": " + rootCause(err)})
		case reqCtx.Err() != nil && ctx.Err() == nil:
			return fail(&Failure{Type: TypeTimeout, Retryable: true, LatencyMS: latency,
				Message: fmt.Sprintf("%s: no response within %s", target, timeout)})
		default:
			return fail(&Failure{Type: TypeNetwork, Retryable: true, LatencyMS: latency, Message: target + ": " + rootCause(err)})
		}
	}
	excerpt, truncated, readErr := readExcerpt(resp.Body, a.cfg.MaxResponseBodyBytes)
	latency := time.Since(start)
	a.metrics.duration.WithLabelValues(task.Tenant, collection).Observe(latency.Seconds())

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// A 2xx is a delivery even if its body could not be read.
		a.metrics.attempts.WithLabelValues(task.Tenant, collection, hashed, "success").Inc()
		a.metrics.tasks.WithLabelValues(task.Tenant, collection, hashed).Inc()
		if !task.CommitTime.IsZero() {
			a.metrics.lag.WithLabelValues(task.Tenant, collection, hashed).Observe(a.now().Sub(task.CommitTime).Seconds())
		}
		log.Debug("webhook delivered", slog.Int("status", resp.StatusCode), slog.Int64("latencyMs", latency.Milliseconds()))
		return Result{EventID: task.EventID, Status: resp.StatusCode, LatencyMS: latency.Milliseconds()}, nil
	}

	f := &Failure{
		Status:        resp.StatusCode,
		LatencyMS:     latency.Milliseconds(),
		Body:          redact(excerpt, token),
		BodyTruncated: truncated,
		Message:       fmt.Sprintf("%s: %s after %s", target, statusText(resp.StatusCode), latency.Round(time.Millisecond)),
	}
	if readErr != nil {
		f.Message += " (reading body: " + rootCause(readErr) + ")"
	}
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		f.Type = TypeHTTP3xx
		if loc := resp.Header.Get("Location"); loc != "" {
			if lu, err := url.Parse(loc); err == nil && lu.Host != "" {
				f.Message += " (redirects to " + lu.Scheme + "://" + lu.Host + "; redirects are not followed)"
			} else {
				f.Message += " (redirects are not followed)"
			}
		}
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && !a.retryable[resp.StatusCode]:
		f.Type = TypeHTTP4xx
	default:
		f.Type = TypeHTTP5xx
		if resp.StatusCode < 500 {
			f.Type = TypeHTTPThrottled
		}
		f.Retryable = true
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), a.now()); ok {
			d = min(d, a.cfg.MaxRetryAfter)
			f.RetryAfterMS = d.Milliseconds()
			f.Message += fmt.Sprintf(", Retry-After %s", d)
		}
	}
	return fail(f)
}

// retried reports whether another attempt of the task follows a failed
// one, the way it will be decided: by Temporal under the Deliver
// activity's retry policy, or, for a batch's first attempt, by the
// workflow, which retries when the task's policy allows a second attempt.
// It only sorts the attempt into the retry or the finished-task counter;
// it decides nothing.
func (a *Activities) retried(ctx context.Context, task *trigger.DeliveryTask, f *Failure, batch bool) bool {
	if !f.Retryable {
		return false
	}
	if batch {
		n := task.RetryPolicy.MaxAttempts
		if n == 0 {
			n = a.cfg.DefaultMaxAttempts
		}
		return n > 1
	}
	if !activity.IsActivity(ctx) {
		return true
	}
	info := activity.GetInfo(ctx)
	rp := info.RetryPolicy
	if rp == nil {
		// The server did not say; Temporal's default policy has no limit.
		return true
	}
	if slices.Contains(rp.NonRetryableErrorTypes, f.Type) {
		return false
	}
	return rp.MaximumAttempts <= 0 || info.Attempt < rp.MaximumAttempts
}

// readExcerpt keeps the first n bytes of a response body and drains a
// little more so the connection can be reused.
func readExcerpt(body io.ReadCloser, n int) (string, bool, error) {
	defer body.Close()
	buf, err := io.ReadAll(io.LimitReader(body, int64(n)+1))
	truncated := len(buf) > n
	if truncated {
		buf = buf[:n]
		_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	}
	return strings.ToValidUTF8(string(buf), "\uFFFD"), truncated, err
}

// redact removes the bearer token from text a receiver sent back: an echo
// endpoint would otherwise copy it into workflow history.
func redact(s, token string) string {
	if token == "" || !strings.Contains(s, token) {
		return s
	}
	return strings.ReplaceAll(s, token, "[redacted]")
}

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

// rootCause drops the url.Error wrapper, whose text repeats the full URL.
func rootCause(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}
