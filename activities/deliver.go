package activities

import (
	"cmp"
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
	"github.com/triggerflow/triggerflow/images"
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
	a.release(task)
	return res, nil
}

// DeliverBatch POSTs tasks in order, one POST each, and stops at the first
// failure, which it reports in the result rather than as an error: the
// workflow then retries that task alone through Deliver, where each attempt
// shows in history. Progress is heartbeated (the number delivered so far),
// so a workflow whose batch timed out knows where to resume.
func (a *Activities) DeliverBatch(ctx context.Context, tasks []trigger.DeliveryTask) (BatchResult, error) {
	key := replayKey(ctx)
	if key != "" {
		if res, ok := a.replayed.get(key, tasks); ok && len(tasks) > 0 {
			a.metrics.replayed.WithLabelValues(tasks[0].Tenant).Inc()
			return res, nil
		}
	}
	out := a.deliverBatch(ctx, tasks)
	if ctx.Err() == nil {
		if key != "" {
			a.replayed.put(key, tasks, out)
		}
		a.release(tasks[:out.Delivered]...)
	}
	return out, nil
}

// release hands the stored images of delivered tasks to the image store
// for deletion. Only once the activity returns: a batch Temporal runs
// again (its result was never recorded: a worker crash, a timeout)
// delivers its earlier tasks again and needs their images, so the
// release delay counts from here, not from each POST.
func (a *Activities) release(tasks ...trigger.DeliveryTask) {
	if a.images == nil {
		return
	}
	for i := range tasks {
		if tasks[i].BeforeRef != nil || tasks[i].AfterRef != nil {
			a.images.Release(tasks[i].BeforeRef, tasks[i].AfterRef)
		}
	}
}

func (a *Activities) deliverBatch(ctx context.Context, tasks []trigger.DeliveryTask) BatchResult {
	out := BatchResult{Results: make([]Result, 0, len(tasks))}
	for i := range tasks {
		if ctx.Err() != nil {
			return out
		}
		res, f := a.post(ctx, &tasks[i], true)
		if f != nil {
			if ctx.Err() != nil && f.Type != TypeTimeout {
				// Interrupted mid-request: no verdict on this task.
				return out
			}
			out.Failure = f
			return out
		}
		out.Delivered++
		out.Results = append(out.Results, res)
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, out.Delivered)
		}
	}
	return out
}

// post makes one attempt and records its outcome in the metrics and the
// log. batch says it is a DeliverBatch attempt, whose failure the workflow
// rather than Temporal retries. A nil Failure means delivered.
func (a *Activities) post(ctx context.Context, task *trigger.DeliveryTask, batch bool) (Result, *Failure) {
	res, f := a.attempt(ctx, task)
	if f != nil {
		a.failed(ctx, task, f, batch)
		return Result{}, f
	}
	a.delivered(ctx, task, res)
	return res, nil
}

// attemptLog is the logger of one attempt of task.
func (a *Activities) attemptLog(ctx context.Context, task *trigger.DeliveryTask) *slog.Logger {
	attempt := int32(1)
	if activity.IsActivity(ctx) {
		attempt = activity.GetInfo(ctx).Attempt
	}
	return a.log.With(
		slog.String("tenant", task.Tenant), slog.String("triggerId", task.TriggerID),
		slog.String("collection", task.Collection), slog.String("eventId", task.EventID),
		slog.Int("attempt", int(attempt)),
	)
}

// metricLabels are the collection and subjectHashed labels of task's
// delivery metrics.
func metricLabels(task *trigger.DeliveryTask) (collection, hashed string) {
	return task.MetricCollection(), strconv.FormatBool(task.SubjectHashed)
}

func (a *Activities) delivered(ctx context.Context, task *trigger.DeliveryTask, res Result) {
	collection, hashed := metricLabels(task)
	a.metrics.attempts.WithLabelValues(task.Tenant, collection, hashed, "success").Inc()
	a.metrics.tasks.WithLabelValues(task.Tenant, collection, hashed).Inc()
	if !task.CommitTime.IsZero() {
		a.metrics.lag.WithLabelValues(task.Tenant, collection, hashed).Observe(a.now().Sub(task.CommitTime).Seconds())
	}
	// Most deliveries log nothing: build the attempt's logger only when
	// its line is written.
	if a.log.Enabled(ctx, slog.LevelDebug) {
		a.attemptLog(ctx, task).DebugContext(ctx, "webhook delivered", slog.Int("status", res.Status), slog.Int64("latencyMs", res.LatencyMS))
	}
}

// failed stamps f with the task's event id, counts it, and logs it: at
// info when another attempt follows, at warn when it may not.
func (a *Activities) failed(ctx context.Context, task *trigger.DeliveryTask, f *Failure, batch bool) {
	f.EventID = task.EventID
	collection, hashed := metricLabels(task)
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
	a.attemptLog(ctx, task).Log(ctx, level, "webhook attempt failed",
		slog.String("type", f.Type), slog.Int("status", f.Status),
		slog.Int64("latencyMs", f.LatencyMS), slog.String("error", f.Message))
}

// attempt sends task once and classifies what came back.
func (a *Activities) attempt(ctx context.Context, task *trigger.DeliveryTask) (Result, *Failure) {
	if a.verifier != nil {
		// Before the secret is resolved or a token minted: a task that
		// anyone could have written gets neither.
		if err := a.verifier.Verify(task); err != nil {
			return Result{}, &Failure{EventID: task.EventID, Type: TypeUnauthenticated, Message: err.Error()}
		}
	}
	req, f := a.newRequest(ctx, task)
	if f != nil {
		return Result{}, f
	}
	reqCtx, cancel := context.WithTimeout(ctx, req.timeout)
	defer cancel()
	req.Request = req.WithContext(reqCtx)
	start := time.Now()
	resp, err := a.client.Do(req.Request)
	if err != nil {
		return Result{}, sendFailure(ctx, req, err, time.Since(start))
	}
	body := readExcerpt(resp.Body, a.cfg.MaxResponseBodyBytes)
	latency := time.Since(start)
	a.metrics.duration.WithLabelValues(task.Tenant, task.MetricCollection()).Observe(latency.Seconds())
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// A 2xx is a delivery even if its body could not be read.
		return Result{EventID: task.EventID, Status: resp.StatusCode, LatencyMS: latency.Milliseconds()}, nil
	}
	return Result{}, a.statusFailure(resp, body, req, latency)
}

// request is one attempt's signed POST and what describing its failure
// needs.
type request struct {
	*retryablehttp.Request
	// target is "POST scheme://host": only scheme and host reach messages
	// and logs, as many providers put a credential in the path or query.
	target string
	// token is the bearer token sent, which a response must not echo into
	// history.
	token   string
	timeout time.Duration
}

// newRequest builds task's POST: the body, the signature over it and the
// bearer token. Its failures are the task's or the secret store's; nothing
// has been sent.
func (a *Activities) newRequest(ctx context.Context, task *trigger.DeliveryTask) (*request, *Failure) {
	u, err := url.Parse(task.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &Failure{Type: TypeInvalid, Message: "webhook url is not an absolute http(s) URL"}
	}
	body, f := a.body(ctx, task)
	if f != nil {
		return nil, f
	}
	secrets, f := a.signingSecrets(ctx, task)
	if f != nil {
		return nil, f
	}
	r := &request{target: "POST " + u.Scheme + "://" + u.Host, timeout: a.cfg.Timeout}
	if a.tokens != nil {
		if r.token, err = a.tokens.Token(ctx, task.Tenant); err != nil {
			return nil, &Failure{Type: TypeToken, Retryable: true, Message: "getting bearer token: " + err.Error()}
		}
	}
	if task.Timeout > 0 {
		r.timeout = task.Timeout.D()
	}
	if r.Request, err = retryablehttp.NewRequestWithContext(ctx, http.MethodPost, task.URL, body); err != nil {
		return nil, &Failure{Type: TypeInvalid, Message: "building request: " + err.Error()}
	}
	return r, a.setHeaders(r, task, body, secrets)
}

// body is task's webhook body, within Config.MaxBodyBytes, with the
// images it references fetched.
func (a *Activities) body(ctx context.Context, task *trigger.DeliveryTask) ([]byte, *Failure) {
	full, f := a.withImages(ctx, task)
	if f != nil {
		return nil, f
	}
	body, err := Body(full)
	if err != nil {
		return nil, &Failure{Type: TypeInvalid, Message: "encoding body: " + err.Error()}
	}
	if len(body) > a.cfg.MaxBodyBytes {
		return nil, a.oversize(len(body))
	}
	return body, nil
}

func (a *Activities) oversize(n int) *Failure {
	return &Failure{Type: TypeOversize, Message: fmt.Sprintf(
		"webhook body is %d bytes, more than the %d allowed (worker.maxBodyBytes)", n, a.cfg.MaxBodyBytes)}
}

// imageFetchTimeout bounds the fetch of one image, so a fetch stuck on a
// lost connection fails the attempt (IMAGE_UNAVAILABLE, retried) instead
// of holding a batch until its own timeout.
const imageFetchTimeout = 30 * time.Second

// withImages returns task with the images it references fetched and
// verified, or task itself when it carries them.
func (a *Activities) withImages(ctx context.Context, task *trigger.DeliveryTask) (*trigger.DeliveryTask, *Failure) {
	if task.BeforeRef == nil && task.AfterRef == nil {
		return task, nil
	}
	var size int64
	for _, r := range []*trigger.ImageRef{task.BeforeRef, task.AfterRef} {
		if r != nil {
			size += r.Size
		}
	}
	if size > int64(a.cfg.MaxBodyBytes) {
		// Known before anything is fetched.
		return nil, a.oversize(int(size))
	}
	if a.images == nil {
		return nil, &Failure{Type: TypeImageUnavailable, Retryable: true,
			Message: "the task references stored document images and the worker has no image store"}
	}
	full := *task
	for _, img := range []struct {
		which string
		ref   *trigger.ImageRef
		raw   *json.RawMessage
	}{{"before", task.BeforeRef, &full.Before}, {"after", task.AfterRef, &full.After}} {
		if img.ref == nil {
			continue
		}
		if err := images.CheckRef(task, img.which, img.ref); err != nil {
			return nil, &Failure{Type: TypeImageMissing, Message: err.Error()}
		}
		fctx, cancel := context.WithTimeout(ctx, imageFetchTimeout)
		b, err := a.images.Fetch(fctx, img.ref)
		cancel()
		switch {
		case errors.Is(err, images.ErrMissing), errors.Is(err, images.ErrCorrupt), errors.Is(err, images.ErrUnknownBucket):
			return nil, &Failure{Type: TypeImageMissing, Message: err.Error()}
		case err != nil:
			return nil, &Failure{Type: TypeImageUnavailable, Retryable: true, Message: err.Error()}
		}
		*img.raw = b
	}
	full.BeforeRef, full.AfterRef = nil, nil
	return &full, nil
}

// signingSecrets resolves task's secretsRef; none means unsigned. A
// lookup failure is retryable: a secret store outage must delay
// deliveries, never unsign them.
func (a *Activities) signingSecrets(ctx context.Context, task *trigger.DeliveryTask) ([]signature.Secret, *Failure) {
	if task.SecretsRef == "" {
		return nil, nil
	}
	if a.secrets == nil {
		return nil, &Failure{Type: TypeSecret, Retryable: true, Message: fmt.Sprintf(
			"secret %q: the worker has no secret resolver", task.SecretsRef)}
	}
	secrets, err := a.secrets.Resolve(ctx, task.Tenant, task.SecretsRef)
	if err == nil && len(secrets) == 0 {
		err = errors.New("no secrets configured")
	}
	if err != nil {
		return nil, &Failure{Type: TypeSecret, Retryable: true, Message: fmt.Sprintf(
			"resolving secret %q: %v", task.SecretsRef, err)}
	}
	return secrets, nil
}

// setHeaders sets the trigger's headers, then the ones a trigger may not
// override: content type, user agent, the Standard Webhooks id, timestamp
// and signature, and the bearer token.
func (a *Activities) setHeaders(r *request, task *trigger.DeliveryTask, body []byte, secrets []signature.Secret) *Failure {
	for k, v := range task.Headers {
		r.Header.Set(k, v)
	}
	sent := a.now()
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("User-Agent", a.cfg.UserAgent)
	r.Header.Set(signature.HeaderID, task.EventID)
	r.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(sent.Unix(), 10))
	if len(secrets) > 0 {
		sig, err := signature.Sign(task.EventID, sent, body, secrets...)
		if err != nil {
			return &Failure{Type: TypeInvalid, Message: "signing: " + err.Error()}
		}
		r.Header.Set(signature.HeaderSignature, sig)
	}
	if r.token != "" {
		r.Header.Set("Authorization", "Bearer "+r.token)
	}
	return nil
}

// sendFailure classifies a request that got no response. ctx is the
// activity's, r's context the attempt's: only the attempt's own timeout is
// a timeout; when ctx ended the request, the caller reports that instead.
func sendFailure(ctx context.Context, r *request, err error, latency time.Duration) *Failure {
	f := &Failure{LatencyMS: latency.Milliseconds()}
	switch {
	case errors.Is(err, egress.ErrDenied):
		f.Type, f.Message = TypeForbidden, r.target+": "+rootCause(err)
	case r.Context().Err() != nil && ctx.Err() == nil:
		f.Type, f.Retryable = TypeTimeout, true
		f.Message = fmt.Sprintf("%s: no response within %s", r.target, r.timeout)
	default:
		f.Type, f.Retryable, f.Message = TypeNetwork, true, r.target+": "+rootCause(err)
	}
	return f
}

// statusFailure classifies a non-2xx response: a redirect and a 4xx
// outside Config.RetryableStatuses fail for good; the rest are retried,
// honouring Retry-After.
func (a *Activities) statusFailure(resp *http.Response, body excerpt, r *request, latency time.Duration) *Failure {
	f := &Failure{
		Status:        resp.StatusCode,
		LatencyMS:     latency.Milliseconds(),
		Body:          redact(body.text, r.token),
		BodyTruncated: body.truncated,
		Message:       fmt.Sprintf("%s: %s after %s", r.target, statusText(resp.StatusCode), latency.Round(time.Millisecond)),
	}
	if body.err != nil {
		f.Message += " (reading body: " + rootCause(body.err) + ")"
	}
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		f.Type = TypeHTTP3xx
		f.Message += redirectNote(resp.Header.Get("Location"))
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
	return f
}

// redirectNote tells where a redirect pointed, scheme and host only.
func redirectNote(location string) string {
	if location == "" {
		return ""
	}
	if u, err := url.Parse(location); err == nil && u.Host != "" {
		return " (redirects to " + u.Scheme + "://" + u.Host + "; redirects are not followed)"
	}
	return " (redirects are not followed)"
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
		return cmp.Or(task.RetryPolicy.MaxAttempts, a.cfg.DefaultMaxAttempts) > 1
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

// excerpt is the start of a response body, kept for the failure record.
type excerpt struct {
	text      string
	truncated bool
	err       error // reading the body failed after text
}

// readExcerpt keeps the first n bytes of a response body and drains a
// little more so the connection can be reused.
func readExcerpt(body io.ReadCloser, n int) excerpt {
	defer body.Close()
	buf, err := io.ReadAll(io.LimitReader(body, int64(n)+1))
	truncated := len(buf) > n
	if truncated {
		buf = buf[:n]
		_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	}
	return excerpt{text: strings.ToValidUTF8(string(buf), "\uFFFD"), truncated: truncated, err: err}
}

// redact removes the bearer token from text a receiver sent back: an echo
// endpoint would otherwise copy it into workflow history.
func redact(s, token string) string {
	if token == "" {
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
