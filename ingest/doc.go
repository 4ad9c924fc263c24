// Package ingest moves delivery tasks from JetStream into Temporal: one
// durable pull consumer on "<stream>.>", and every task handed to the
// delivery workflow of its (tenant, trigger, collection, docKey). A key
// handed off within Config.SignalWindow is signalled
// (SignalWithStartWorkflow, which starts a run if none is open); any other
// key most likely has no open run, and a new run starts with the task as
// its input, which saves Temporal the signal (if the run is open after
// all, Temporal refuses the start and the task is signalled). A key's
// tasks that queue up while an earlier hand-off of the key is in flight go
// together, in stream order (Config.MaxSignalBatch,
// Config.MaxSignalBytes), so a busy key costs Temporal a call and a
// history event per batch rather than per task. A message is acked only
// after the call returned without error, that is once the task is durable
// in the workflow's history; nothing is acked that Temporal does not have.
//
// # Keys
//
// The docKey is always the one decoded from the payload, never the
// subject's last token, which may be a hash (streams.BuildSubject). Each
// message's subject must be exactly the subject the publisher builds from
// the payload's tenant, collection and docKey; anything else is dead-lettered
// as "subject-mismatch". WorkflowID turns the key into a readable,
// injective, length-bounded workflow ID; search attributes (TenantId,
// TriggerId, Collection, DocKey: SearchKeyword shortens long values to a
// "sha256:<hex>" form) and the memo (docKey, collection) carry the full
// values.
//
// # Delivery
//
// A redelivered message becomes a second signal with the same event id;
// the workflow drops it. If the run closed in between (a cold key's run
// closes as soon as it delivered), ingest reads the closed run's result,
// the event ids it saw, and acks the redelivery without a hand-off. Duplicates arise when ingest crashes between the
// signal and the ack, when an ack is lost, and when shutdown cancels a
// hand-off whose outcome it cannot know.
//
// # Order
//
// Messages go to Config.Lanes lanes by a hash of (tenant, trigger,
// collection, docKey), and each lane hands off one batch at a time in the
// order JetStream delivered them: the head of the lane with the queued
// messages of the same key behind it, which overtake only other keys.
// When Temporal is unavailable the lane retries the same batch with backoff (Config.RetryInitial up to
// Config.RetryMax) and resets the ack timer of every message it holds every
// AckWait/4, instead of NAKing the message past later ones of its key.
// Within one ingest process, therefore, a key's tasks reach its workflow in
// stream order.
//
// Across processes it depends on Config.Sharing:
//
//   - "shared": every replica pulls from the one consumer, so two replicas
//     can each hold a task of the same key and hand them off in either
//     order. Per-key order does NOT hold with more than one replica.
//   - "pinned" (the default): the consumer is a priority group with
//     JetStream's pinned_client policy (nats-server 2.11+), so the server
//     delivers to one replica at a time and the others stand by; throughput
//     scales with Lanes, not replicas. On Close the pinned replica pauses
//     the consumer, stops fetching, hands off what it can within
//     DrainTimeout, NAKs the rest lane by lane (each NAK confirmed by the
//     server before the next), unpins itself and resumes the consumer.
//     JetStream redelivers NAKed messages before newer ones, so the standby
//     continues each key in order. The pause is what makes this hold:
//     without it JetStream, finding no pull request it may serve (the
//     closing replica's are gone, the standby is not pinned yet), moves
//     each NAKed message to the back of its redelivery queue.
//
// After a crash of the pinned replica, JetStream alone would stall every
// delivery: it pins another replica only PinnedTTL after the dead one's
// last pull request, and the dead replica's unacked tasks come back only
// after their ack wait. Ingest does not wait for either. Every replica
// answers on a liveness subject named after its pin id
// ("_TRIGGERFLOW.ingest.<stream>.<consumer>.<pin>") for as long as its NATS
// connection lives, and a pinned replica that does not hold the pin (a
// standby, or the crashed replica restarted) checks at start and every
// Config.TakeoverInterval (1s) whether tasks wait while the holder's
// subject has no responders. The server drops a connection's
// subscriptions the moment its TCP connection closes, so "no responders"
// is proof, not a guess; it is asked twice, 100ms apart, of a pin held for
// more than a second, so a holder that has just been pinned has
// subscribed. The replica then resets the consumer to its ack floor and
// unpins the group: JetStream delivers every task from the ack floor on
// again, in stream order, before any newer one, to whichever replica pulls
// next. Per-key order needs nothing more: a key's unacked tasks are all
// above the ack floor, and they come back in stream order ahead of the
// key's later tasks. Tasks acked above the ack floor (lanes ack out of
// order) come back too, as duplicate signals the workflow drops by event
// id. The stall after a crash is the time to detect it (a restart, or at
// most TakeoverInterval for a standby) plus one hand-off; the chaos suite
// measures it (docs/guarantees.md).
//
// This was chosen over the alternatives because it keeps both delays out
// of the failover without weakening either safety net. A shorter ackWait
// with in-progress acks would put a few seconds' deadline on every held
// task (and its renewals on the wire) to fail over in seconds, and still
// leave the pin to PinnedTTL; reclaiming the pin without the reset would
// let newer tasks overtake the dead replica's, which are not yet due.
//
// Its limits: the reset forgets delivery counts, so Config.MaxDeliver does
// not count deliveries across a takeover; a replica that crashes on a task
// (rather than failing to hand it off) would crash again, visibly, in
// triggerflow_ingest_takeovers_total. If the ack floor trails the last
// delivered task by more than Config.TakeoverMaxReplay stream messages (a
// key blocked for long while others moved on), the replica does not reset
// and JetStream's own failover applies, as below. A holder partitioned
// from NATS but still running loses the pin the same way once the server
// drops its connection; what it then hands off is a duplicate of what the
// new holder hands off in order. A holder whose host vanished without
// closing its TCP connection is noticed by the server only after its ping
// timeout, and then taken over.
//
// Where no takeover happens (takeovers off, the replay too long, or the
// server has not yet noticed the dead connection) the standby is pinned
// PinnedTTL after the dead replica's last pull request. With PinnedTTL at
// least twice AckWait (the default) every message the dead replica held is
// due for redelivery by then (its ack timer was last reset at the crash),
// and JetStream serves redeliveries before newer messages. It serves them
// rotated, though: while the dead replica keeps the pin, nats-server moves
// the head of its redelivery queue to the tail each time its delivery loop
// finds only unpinned pull requests. So ingest gathers a burst of
// redeliveries (until a first-time delivery arrives, or
// Config.RedeliveryWindow passes without a message) and routes it sorted by
// stream sequence, which restores each key's order.
//
// Where order does not hold, even when pinned (the first two only after a
// crash that was not taken over):
//
//   - PinnedTTL shorter than twice AckWait (a warning at Start): the pin
//     can move before the dead replica's messages are due, and newer
//     messages overtake them.
//   - A message already redelivered once has a longer ack deadline (the
//     consumer's backoff: 2× and 4× AckWait), so after a second fault in
//     its lifetime it can come back after newer ones; likewise a burst of
//     redeliveries that reaches ingest with a gap longer than
//     RedeliveryWindow.
//   - A replica stalled longer than AckWait (a long pause, or a partition
//     from NATS without a crash) gets its held messages redelivered, and a
//     replica that stops pulling for PinnedTTL without exiting loses the pin
//     while it may still hand off what it holds.
//   - If pausing the consumer is not permitted (an account that may not
//     manage consumers), Close logs a warning and the hand-over may reorder;
//     without permission to reset and unpin it, no takeover happens.
//   - Dead-lettered messages leave the order altogether.
//
// A redelivered message the workflow has already seen is dropped by event
// id; one it has not seen yet arrives after the key's later tasks.
//
// # Poison and collisions
//
// A batch Temporal refuses outright is handed off again one task at a
// time, in order, so only the task at fault is dead-lettered.
//
// A message whose payload is not a valid DeliveryTask ("invalid-task"),
// whose subject does not parse ("invalid-subject") or does not match its
// payload ("subject-mismatch"), that Temporal refuses as invalid
// ("temporal-rejected", such as a payload over Temporal's blob size limit),
// or that JetStream delivered more than Config.MaxDeliver times
// ("max-deliver") is copied with its reason to the dead-letter stream and
// then terminated. Dead-letters go through their own lane, so poison never
// blocks a key. Until the record is stored the message is not terminated.
// The consumer's MaxDeliver is Config.MaxDeliver+1: JetStream would
// otherwise stop delivering such a message silently, so ingest keeps the
// last delivery to dead-letter it.
//
// Two docKeys whose hashed subject tokens are equal (a hash collision)
// are still two workflows, since the key comes from the payload. Ingest
// remembers which docKey it last saw on each hashed subject (up to
// Config.CollisionCacheSize subjects, least recently seen evicted, so
// detection is best effort) and on a second docKey counts
// triggerflow_ingest_collisions_total and applies Config.CollisionPolicy:
// "serialize" and "alert" hand both off (lanes of hashed subjects are
// chosen by the subject's token, so colliding keys share a lane and stay
// in stream order; "alert" also logs a warning), "fail" dead-letters the
// second key's tasks as "hash-collision".
//
// # Shutdown
//
// Close (or the end of Run's context) stops fetching, lets the lanes hand
// off what they hold for up to Config.DrainTimeout, then cancels the
// remaining hand-offs and NAKs every message not handed off so another
// replica takes it. It gives up after Config.ShutdownTimeout with a
// warning; messages still held then are redelivered after AckWait.
//
// # Metrics
//
// Counters triggerflow_ingest_{consumed,redelivered,signalled,started,
// start_refused,acked,naked,terminated,handoff_errors,collisions,
// delivered_before}_total, the histogram
// triggerflow_ingest_handoff_seconds (receipt to ack), the gauge
// triggerflow_ingest_lane_depth and triggerflow_ingest_takeovers_total by
// outcome (taken, holder-alive, holder-unproven, replay-too-long,
// failed). Task series are labelled tenant, collection and subject_hashed; messages that fail validation are
// labelled "_invalid", so a publisher cannot inflate cardinality.
package ingest
