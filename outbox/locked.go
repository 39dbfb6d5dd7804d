package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgoutbox/pgoutbox/db"
)

// LockedBatch is a batch taken in lock mode: due messages held by row locks
// in an open transaction instead of claimed. Deliver them, then Finish the
// batch (which writes every outcome and commits) or Release it (which rolls
// back: every message is pending again, no attempt counted).
//
// Lock mode writes each message once (pending to its outcome) and commits
// once per batch, where claims write it twice; it suits fast handlers. It
// gives up three guarantees of claims, which is why it is opt-in:
//
//   - A crash counts no attempt: the transaction rolls back, so a message
//     that kills its consumer every time is retried forever instead of being
//     dead-lettered after MaxAttempts.
//   - There is no lease to extend: the whole batch must finish while the
//     transaction stays open, holding a connection and its row locks.
//   - The messages stay pending while they are worked (Stats counts them as
//     pending); only other lock-mode batches and claims skip them.
//
// A LockedBatch is not safe for concurrent use; run handlers concurrently
// and Finish once.
type LockedBatch struct {
	store    *PostgresStore // bound to the batch's transaction
	tx       pgx.Tx
	messages []Message
	closed   bool
}

// LockRequest asks for a locked batch of one lane and target.
type LockRequest struct {
	Lane, Target string
	// Limit is the most messages to lock, 1 to MaxClaimLimit.
	Limit int
}

// Outcome is what delivering one message of a locked batch came to.
type Outcome struct {
	// ID is the message's id.
	ID string
	// Err is nil for a delivered message.
	Err error
	// Permanent dead-letters a failed message at once.
	Permanent bool
	// RetryAfter delays a failed message's next attempt.
	RetryAfter time.Duration
}

// LockBatch begins a transaction on the store's connection (which must be
// able to begin one: a pool, a connection, or a transaction for a savepoint)
// and locks up to r.Limit due pending messages, oldest first. It returns a
// batch with no messages (and nothing open) when none is due.
func (s *PostgresStore) LockBatch(ctx context.Context, r LockRequest) (*LockedBatch, error) {
	probe := ClaimRequest{Lane: r.Lane, Target: r.Target, Limit: r.Limit, Lease: MinLease, ConsumerID: "lock"}
	if err := probe.validate(); err != nil {
		return nil, fmt.Errorf("outbox: lock batch: %w", err)
	}
	begin, ok := s.conn.(interface {
		Begin(context.Context) (pgx.Tx, error)
	})
	if !ok {
		return nil, fmt.Errorf("outbox: lock batch: needs a connection that can begin a transaction, and %T cannot", s.conn)
	}
	b, err := s.lockBatch(ctx, begin, r)
	// As in Claim: the server may abort the locking statement as a
	// deadlock; the transaction (or savepoint) it ran in is rolled back, so
	// it starts again.
	for retry := 0; retry < maxClaimRetries && retryable(err); retry++ {
		s.cfg.logger.DebugContext(ctx, "outbox: lock statement aborted by the server; running it again",
			"lane", r.Lane, "target", r.Target, "error", err)
		b, err = s.lockBatch(ctx, begin, r)
	}
	return b, err
}

func (s *PostgresStore) lockBatch(ctx context.Context, begin interface {
	Begin(context.Context) (pgx.Tx, error)
}, r LockRequest,
) (*LockedBatch, error) {
	key := cursorKey(s.scope, r.Lane, r.Target)
	afterAt, afterID, fromCursor := s.cfg.cursors.start(key, r.Limit)
	tx, err := begin.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("outbox: lock batch: %w", err)
	}
	b := &LockedBatch{store: s.WithTx(tx), tx: tx}
	msgs, keys, err := b.lock(ctx, r, r.Limit, afterAt, afterID, nil)
	if err == nil && fromCursor && len(msgs) < r.Limit {
		at, id := scanFromStart()
		var more []Message
		var moreKeys []int64
		more, moreKeys, err = b.lock(ctx, r, r.Limit-len(msgs), at, id, keys)
		fromCursor = false
		msgs, keys = append(msgs, more...), append(keys, moreKeys...)
		sortClaimed(msgs, keys)
	}
	if err != nil {
		_ = tx.Rollback(ctx)
		return nil, err
	}
	s.cfg.cursors.record(key, fromCursor, r.Limit, msgs, keys)
	b.messages = msgs
	if len(msgs) == 0 {
		b.closed = true
		if err := tx.Rollback(ctx); err != nil {
			return nil, fmt.Errorf("outbox: lock batch: %w", err)
		}
	}
	return b, nil
}

func (b *LockedBatch) lock(ctx context.Context, r LockRequest, limit int, afterAt time.Time, afterID int64, locked []int64) ([]Message, []int64, error) {
	s := b.store
	rows, err := s.plannedFor(limit).MessageLockDue(ctx, db.MessageLockDueParams{
		Scope: s.scope, Lane: r.Lane, Target: r.Target, Now: s.now(),
		AfterAvailableAt: afterAt, AfterID: afterID, LockedIds: nonNilIDs(locked), Max: int32(limit), //nolint:gosec // validated above
	})
	if err != nil {
		return nil, nil, fmt.Errorf("outbox: lock batch: %w", err)
	}
	msgs := make([]Message, len(rows))
	keys := make([]int64, len(rows))
	for i, row := range rows {
		msgs[i], keys[i] = toMessage(row), row.ID
	}
	return msgs, keys, nil
}

// Messages returns the locked messages, oldest first. Their status is
// pending and their attempt count does not include this delivery yet.
func (b *LockedBatch) Messages() []Message { return b.messages }

// ErrBatchClosed is returned by Finish and Release on a batch already
// finished or released.
var ErrBatchClosed = errors.New("outbox: locked batch already finished or released")

// Finish writes every outcome in one statement and commits: delivered for a
// nil Err, otherwise pending again after RetryAfter or, when Permanent or
// out of attempts, a dead letter. Every outcome counts an attempt. Messages
// of the batch without an outcome return to pending untouched. It returns
// each outcome's resulting status.
func (b *LockedBatch) Finish(ctx context.Context, outcomes []Outcome) ([]Status, error) {
	if b.closed {
		return nil, ErrBatchClosed
	}
	b.closed = true
	p := db.MessageFinishLockedParams{Now: b.store.now(), Scope: b.store.scope}
	for _, o := range outcomes {
		key, ok := parseID(o.ID)
		if !ok {
			_ = b.tx.Rollback(ctx)
			return nil, fmt.Errorf("outbox: finish batch: %w", invalid("id", "%q is not a message id", o.ID))
		}
		reason := ""
		if o.Err != nil {
			reason = cleanReason(o.Err.Error())
		}
		p.Ids = append(p.Ids, key)
		p.Oks = append(p.Oks, o.Err == nil)
		p.Permanents = append(p.Permanents, o.Permanent)
		p.RetryAfterMicros = append(p.RetryAfterMicros, min(max(o.RetryAfter, 0), MaxRetryDelay).Microseconds())
		p.Reasons = append(p.Reasons, reason)
	}
	rows, err := b.store.q.MessageFinishLocked(ctx, p)
	if err != nil {
		_ = b.tx.Rollback(ctx)
		return nil, fmt.Errorf("outbox: finish batch: %w", err)
	}
	if err := b.tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("outbox: finish batch: %w", err)
	}
	status := make(map[int64]Status, len(rows))
	for _, r := range rows {
		status[r.ID] = Status(r.Status)
	}
	out := make([]Status, len(outcomes))
	for i := range outcomes {
		out[i] = status[p.Ids[i]]
	}
	return out, nil
}

// Release rolls the batch back: every message is pending again as it was,
// with no attempt counted.
func (b *LockedBatch) Release(ctx context.Context) error {
	if b.closed {
		return ErrBatchClosed
	}
	b.closed = true
	return b.tx.Rollback(ctx)
}
