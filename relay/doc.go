// Package relay delivers outbox messages: it claims them from a store in
// batches, runs a handler on each with bounded concurrency, and acks,
// retries or dead-letters them.
//
// A Relay serves one lane and target of one store (scoped or not). Run it on
// as many hosts as you like; claims never overlap while their leases hold.
//
//	r, err := relay.New(store, relay.Config{
//		Lane: outbox.LaneCanonical, Target: "order_webhook",
//		Handler: func(ctx context.Context, m outbox.Message) error {
//			return post(ctx, m.Payload) // nil acks; an error retries with backoff
//		},
//		Wakeups: notifier, // optional: LISTEN/NOTIFY instead of polling alone
//	})
//	err = r.Run(ctx) // until ctx ends, then drains
//
// What a handler's result does:
//
//   - nil: the message is acked (in batches, flushed within AckInterval and
//     always before Run returns);
//   - an error: the message is nacked and retried after Config.Backoff's
//     delay, measured on the store's clock; after its last attempt it is
//     dead-lettered;
//   - an error wrapped with Permanent: dead-lettered at once;
//   - a panic: recovered, logged with its stack, treated as an error.
//
// While a handler runs, the relay extends the message's lease every
// HeartbeatInterval, so handlers may run longer than the lease. If the
// extension finds the claim lost (another consumer took the message after a
// long stall), the handler's context is cancelled and its result ignored.
//
// Run stops claiming when its context ends, lets in-flight handlers finish
// for up to DrainTimeout, then cancels the rest and leaves their messages to
// lease expiry: nothing that did not succeed is acked.
//
// Delivery is at least once. A message is handled twice only when its lease
// expired (its relay died or stalled past the heartbeat) or its ack was lost
// (the database was unreachable when the ack batch was flushed).
//
// # Lock mode
//
// Config.Mode = ModeLock trades three guarantees for about half the database
// work per message: a batch is held by row locks in one transaction instead
// of claimed, and every outcome is written by one statement and one commit.
// A crash then counts no attempt (a message that kills its relay is retried
// forever), a batch must finish within Lease (no heartbeat), and messages
// stay pending while they are worked. See outbox.LockedBatch.
package relay
