// Package outbox is a transactional outbox for Go services on PostgreSQL.
//
// A service writes its domain rows and an outbox message in one transaction
// (Enqueue on a store bound to the caller's pgx transaction with
// PostgresStore.WithTx). Relays on any number of hosts then Claim messages
// under a lease, deliver them, and Ack or Nack them. Delivery is at least
// once: nothing that committed is lost, and a message is handed out again
// only when its holder nacked it or its lease expired.
//
// # Guarantees
//
//   - Fencing: every claim carries a fresh random token. Only the holder of the
//     current token can ack or nack; a consumer whose lease expired and whose
//     message was claimed again gets false (Ack) or NackLostClaim (Nack).
//   - Dedupe: a dedupe key is unique per (scope, lane, target) while its row
//     exists. Enqueuing the same draft again returns the stored message with
//     Deduplicated set; a different draft under the key fails with ErrConflict.
//     Neither outcome aborts the caller's transaction.
//   - Retries and dead letters: a nack requeues the message at a retry time
//     until its attempts run out, then dead-letters it. A message whose lease
//     expires with no attempts left (a poison message that crashes its
//     consumer) is dead-lettered by the next claim instead of handed out again.
//   - Scopes: PostgresStore.Scoped gives a view of one tenant that cannot see,
//     claim, ack, nack or dedupe against any other scope's rows.
//   - One clock: by default every timestamp comes from the database, so relays
//     on hosts with skewed clocks agree on leases. WithClock injects a clock for
//     deterministic tests.
//
// # Beyond the contract
//
// EnqueueMany (one statement, same dedupe rules), AckMany and ClaimAndAck
// (acks riding on the next claim), ExtendLease(s) (heartbeats), NackAfter
// (a delay on the store's clock), DeadLetter (permanent failures), LockBatch
// (the opt-in lock mode), and the operations Redrive, Purge, PurgeCount,
// Stats and Get. Package relay runs consumers on top of them; package
// memstore is the same store in memory for unit tests.
//
// # Ordering
//
// Messages with the same Draft.OrderingKey in one scope, lane and target are
// handed out one at a time, in enqueue (id) order: the key's head, its
// oldest message that is pending, claimed, or a dead letter not released
// (Message.HoldsOrderingKey), must be acked before the next is claimed. A
// nacked head keeps the key until it succeeds or dies; a dead-lettered head
// holds it until it is redriven or the key is released
// (PostgresStore.ReleaseOrderingKey, or WithSkipDeadLetters). A keyed
// Enqueue takes a transaction-scoped advisory lock on its key, so a later
// message of a key never commits before an earlier one; a caller taking its
// own locks in another order can deadlock (SQLSTATE 40P01). Unkeyed messages
// and other keys are never held back by a key, and a claim visits keys
// round robin. Delivery stays at least once. The README's "Ordering" section
// has the whole contract and the rolling-deploy steps.
//
// # Errors
//
// Every invalid input fails before anything is written, with an error that
// wraps ErrValidation and names the field (see ValidationError). A dedupe
// conflict wraps ErrConflict (see ConflictError). A failed call leaves the
// table as it was.
//
// # Schema
//
// Migrate applies the embedded goose migrations (package schema) under an
// advisory lock; the same files work with the goose CLI. The SQL the store runs
// lives in the repository's queries/ directory and is compiled by sqlc into
// package db.
package outbox
