// Package workflows holds the per-key delivery workflow: one mailbox
// workflow per (tenant, trigger, collection, docKey) that receives delivery
// tasks as signals and delivers them strictly in arrival order.
package workflows

import (
	"bytes"
	"encoding/json"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/triggerflow/triggerflow/trigger"
)

// Names shared by ingest (which signals) and the worker (which runs the
// workflow). They are part of the wire contract with Temporal histories:
// changing one breaks running workflows and recorded histories.
const (
	// DeliveryWorkflow is the registered workflow type name.
	DeliveryWorkflow = "triggerflow.Delivery"
	// TaskSignal carries one trigger.DeliveryTask, or a JSON array of
	// them (one key's tasks, in order), as ingest batches them.
	TaskSignal = "delivery-task"
)

// Search attributes set at start so operators can find every delivery of
// a tenant, trigger, collection or document in the Temporal UI, and those
// with failures.
var (
	TenantID         = temporal.NewSearchAttributeKeyKeyword("TenantId")
	TriggerID        = temporal.NewSearchAttributeKeyKeyword("TriggerId")
	Collection       = temporal.NewSearchAttributeKeyKeyword("Collection")
	DocKey           = temporal.NewSearchAttributeKeyKeyword("DocKey")
	FailedDeliveries = temporal.NewSearchAttributeKeyInt64("FailedDeliveries")
)

// SearchAttributes lists every custom search attribute the workflows use;
// a Temporal namespace must have them registered.
func SearchAttributes() temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		TenantID.ValueSet(""), TriggerID.ValueSet(""), Collection.ValueSet(""),
		DocKey.ValueSet(""), FailedDeliveries.ValueSet(0),
	)
}

// DeliveryParams is the workflow's input, both when ingest starts it and
// when it continues as new. Ingest sets only the key fields.
type DeliveryParams struct {
	Tenant     string `json:"tenant"`
	TriggerID  string `json:"triggerId"`
	Collection string `json:"collection"`
	DocKey     string `json:"docKey"`
	// Pending are tasks received but not yet delivered, carried across
	// continue-as-new.
	Pending []trigger.DeliveryTask `json:"pending,omitempty"`
	// Seen are the dedupe keys (trigger.DeliveryTask.DedupeKey: the event id,
	// plus the redrive number of a redriven task) of recent tasks, oldest
	// first: the bounded dedupe set.
	Seen []string `json:"seen,omitempty"`
	// Failed counts deliveries that failed for good in this workflow's
	// lifetime, mirrored in the FailedDeliveries search attribute.
	Failed int64 `json:"failed,omitempty"`
	// Blocked is set while the key waits for an operator's UnblockSignal;
	// the blocked task is Pending[0].
	Blocked *BlockState `json:"blocked,omitempty"`
	// Lifecycle says when an idle run closes. Ingest starts runs with
	// LifecycleCloseWhenCold; zero is how runs recorded before it behave,
	// and is kept so they replay. It is part of the input, hence of
	// history, so a run keeps the lifecycle it started with.
	Lifecycle Lifecycle `json:"lifecycle,omitempty"`
}

// StartParams is the input of a run that ingest (or an operator) starts
// for t's key.
func StartParams(t *trigger.DeliveryTask) DeliveryParams {
	return DeliveryParams{
		Tenant: t.Tenant, TriggerID: t.TriggerID, Collection: t.Collection, DocKey: t.DocKey,
		Lifecycle: LifecycleCloseWhenCold,
	}
}

// StartInput is the input of a run that ingest starts with its first
// tasks instead of signalling them (a key quiet long enough that its last
// run has most likely closed): DeliveryParams, as StartParams fills it,
// with the tasks in Pending. A start records no signal, so the run's
// history is one event shorter. The tasks stay as ingest received them,
// so fields this version does not know reach a newer worker. A worker
// tells such a run from a continued one by its empty Seen: a continued
// run's pending tasks are always in its dedupe set.
func StartInput(t *trigger.DeliveryTask, tasks []json.RawMessage) any {
	p := StartParams(t)
	return startInput{
		Tenant: p.Tenant, TriggerID: p.TriggerID, Collection: p.Collection, DocKey: p.DocKey,
		Pending: tasks, Lifecycle: p.Lifecycle,
	}
}

// startInput encodes as DeliveryParams with raw tasks.
type startInput struct {
	Tenant     string            `json:"tenant"`
	TriggerID  string            `json:"triggerId"`
	Collection string            `json:"collection"`
	DocKey     string            `json:"docKey"`
	Pending    []json.RawMessage `json:"pending"`
	Lifecycle  Lifecycle         `json:"lifecycle"`
}

// Lifecycle is when an idle delivery run closes.
type Lifecycle int

const (
	// LifecycleQuiet waits QuietPeriod without a task before closing,
	// whatever the key's traffic: a cold key pays a timer (five history
	// events) for a wait that rarely catches anything.
	LifecycleQuiet Lifecycle = 0
	// LifecycleCloseWhenCold closes as soon as the queue is empty when
	// the run has seen one task only (a cold key: Started with the task as
	// input, or Started and Signaled, then one workflow task, the
	// delivery's marker, Completed), and waits
	// QuietPeriod like LifecycleQuiet once it has seen two or more (a hot
	// key, whose next task is likely to come soon).
	LifecycleCloseWhenCold Lifecycle = 1
)

// DeliveryResult is what a run returns when it closes: the dedupe keys it
// had seen, oldest first. Ingest reads it to drop a redelivered task the
// closed run already delivered, since a new run would not know it.
type DeliveryResult struct {
	Seen []string `json:"seen,omitempty"`
}

// SplitTaskSignal returns the tasks a TaskSignal payload carries, in order,
// still encoded: the payload itself, or the elements of a JSON array.
func SplitTaskSignal(raw json.RawMessage) ([]json.RawMessage, error) {
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return []json.RawMessage{raw}, nil
	}
	var batch []json.RawMessage
	if err := json.Unmarshal(trimmed, &batch); err != nil {
		return nil, fmt.Errorf("task batch is not a JSON array: %w", err)
	}
	return batch, nil
}

// DefaultTaskQueue is the task queue ingest starts delivery workflows on
// and the worker polls, unless configured otherwise.
const DefaultTaskQueue = "triggerflow"
