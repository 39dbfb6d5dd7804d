package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/internal/msgid"
	"github.com/pgoutbox/pgoutbox/internal/validate"
	"github.com/pgoutbox/pgoutbox/internal/wakeup"
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
	parent   *PostgresStore // the store the batch was taken from
	tx       pgx.Tx
	messages []Message
	closed   bool
}

// LockRequest asks for a locked batch of one lane and target.
type LockRequest struct {
	Lane, Target string
	// Limit is the most messages to lock, 1 to MaxClaimLimit.
	Limit int
	// IdleTimeout, when positive, is the batch transaction's
	// idle_in_transaction_session_timeout (whole milliseconds, at least
	// one): if the holder stalls and sends no statement (Finish, Alive) for
	// that long, the server ends the transaction, which releases the
	// messages and the xmin horizon the batch holds. It also overrides a
	// shorter timeout set on the server or role, which would end healthy
	// batches while their handlers run. Zero keeps the session's setting.
	IdleTimeout time.Duration
	// ConsumerID names the batch's holder in the turns of ordering keys, as
	// ClaimRequest.ConsumerID does: each holder walks the keys from where
	// its last batch stopped. Optional; holders without one share a place.
	ConsumerID string
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
	probe := ClaimRequest{Lane: r.Lane, Target: r.Target, Limit: r.Limit, Lease: MinLease, ConsumerID: cmp.Or(r.ConsumerID, "lock")}
	if err := probe.validate(); err != nil {
		return nil, fmt.Errorf("outbox: lock batch: %w", err)
	}
	if r.IdleTimeout < 0 || (r.IdleTimeout > 0 && r.IdleTimeout < time.Millisecond) || r.IdleTimeout > MaxLease {
		return nil, fmt.Errorf("outbox: lock batch: %w",
			invalid("idle_timeout", "must be 0 or between 1ms and %s, got %s", MaxLease, r.IdleTimeout))
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
	key := wakeup.Key(s.scope, r.Lane, r.Target)
	start := s.cfg.cursors.start(key, r.ConsumerID, r.Limit)
	tx, err := begin.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("outbox: lock batch: %w", err)
	}
	b := &LockedBatch{store: s.WithTx(tx), parent: s, tx: tx}
	if r.IdleTimeout > 0 {
		err = b.store.q.SessionIdleTimeoutSet(ctx, r.IdleTimeout.Milliseconds())
		if err != nil {
			_ = tx.Rollback(ctx)
			return nil, fmt.Errorf("outbox: lock batch: setting the idle timeout: %w", err)
		}
	}
	msgs, keys, walk, err := b.lock(ctx, r, r.Limit, start, nil)
	if err == nil && start.fromCursor && len(msgs) < r.Limit {
		var more []Message
		var moreKeys []int64
		start = start.rescan()
		more, moreKeys, _, err = b.lock(ctx, r, r.Limit-len(msgs), start, keys)
		msgs, keys = append(msgs, more...), append(keys, moreKeys...)
		sortClaimed(msgs, keys)
	}
	if err != nil {
		s.sawError(err)
		_ = tx.Rollback(ctx)
		return nil, err
	}
	s.cfg.cursors.record(key, r.ConsumerID, start, r.Limit, msgs, keys, walk)
	if len(msgs) == r.Limit {
		s.cfg.plans.backlog()
	}
	b.messages = msgs
	if len(msgs) == 0 {
		b.closed = true
		if err := tx.Rollback(ctx); err != nil {
			return nil, fmt.Errorf("outbox: lock batch: %w", err)
		}
	}
	return b, nil
}

func (b *LockedBatch) lock(ctx context.Context, r LockRequest, limit int, from cursorStart, locked []int64) ([]Message, []int64, keyWalk, error) {
	s := b.store
	rows, err := s.plannedFor(limit).MessageLockDue(ctx, db.MessageLockDueParams{
		Scope: s.scope, Lane: r.Lane, Target: r.Target, Now: s.now(), AfterKey: from.key,
		AfterAvailableAt: from.at, AfterID: from.id, LockedIDs: nonNilIDs(locked), Max: int32(limit), //nolint:gosec // validated above
	})
	if err != nil {
		return nil, nil, keyWalk{}, fmt.Errorf("outbox: lock batch: %w", err)
	}
	var walk keyWalk
	msgs := make([]Message, len(rows))
	keys := make([]int64, len(rows))
	for i, row := range rows {
		msgs[i], keys[i] = toMessage(row.PgoutboxMessage), row.PgoutboxMessage.ID
		walk.add(row.Skipped)
	}
	return msgs, keys, walk, nil
}

// Messages returns the locked messages, oldest first. Their status is
// pending and their attempt count does not include this delivery yet.
func (b *LockedBatch) Messages() []Message { return b.messages }

// ErrBatchClosed is returned by Finish and Release on a batch already
// finished or released.
var ErrBatchClosed = errors.New("outbox: locked batch already finished or released")

// ErrBatchLost is wrapped by Alive and Finish when the batch's transaction
// ended before Finish: its connection was closed or the server terminated it
// (a network failure, a failover, pg_terminate_backend, or
// idle_in_transaction_session_timeout; see LockRequest.IdleTimeout). The
// server rolled the batch back: every message is pending again, no attempt
// counted, and another consumer may take them at once, so handlers still
// running should stop.
var ErrBatchLost = errors.New("outbox: locked batch lost: its transaction ended before Finish")

// Alive checks that the batch's transaction is still open, with one empty
// statement on its connection (which also restarts the server's idle
// timer). It returns an error wrapping ErrBatchLost when the transaction is
// gone. Like every method of a batch it must not run concurrently with
// another (Finish, Release).
func (b *LockedBatch) Alive(ctx context.Context) error {
	if b.closed {
		return ErrBatchClosed
	}
	if err := b.tx.Conn().Ping(ctx); err != nil {
		return fmt.Errorf("outbox: locked batch: %w", b.lost(err))
	}
	return nil
}

// lost wraps err with ErrBatchLost when it says the transaction is gone.
func (b *LockedBatch) lost(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case b.tx.Conn().IsClosed():
		return fmt.Errorf("%w: %w", ErrBatchLost, err)
	case errors.As(err, &pgErr) && (pgErr.Code == pgerrcode.IdleInTransactionSessionTimeout ||
		pgErr.Code == pgerrcode.AdminShutdown || pgErr.Code == pgerrcode.InFailedSQLTransaction):
		return fmt.Errorf("%w: %w", ErrBatchLost, err)
	}
	return err
}

// Finish writes every outcome in one statement and commits: delivered for a
// nil Err, otherwise pending again after RetryAfter or, when Permanent or
// out of attempts, a dead letter. Every outcome counts an attempt. Messages
// of the batch without an outcome return to pending untouched. It returns
// each outcome's resulting status.
//
// Every outcome must name a message of the batch, once: an id that is not
// in the batch (or is given twice) fails validation, writes nothing and
// leaves the batch open. When the transaction was lost the error wraps
// ErrBatchLost and nothing was written.
func (b *LockedBatch) Finish(ctx context.Context, outcomes []Outcome) ([]Status, error) {
	if b.closed {
		return nil, ErrBatchClosed
	}
	inBatch := make(map[string]bool, len(b.messages))
	for _, m := range b.messages {
		inBatch[m.ID] = true
	}
	p := db.MessageFinishLockedParams{Now: b.store.now(), Scope: b.store.scope, ReleaseKeys: b.store.cfg.releaseKeys}
	seen := make(map[string]bool, len(outcomes))
	for i, o := range outcomes {
		key, ok := msgid.Parse(o.ID)
		switch {
		case !ok || !inBatch[o.ID]:
			return nil, fmt.Errorf("outbox: finish batch: %w",
				invalid(fmt.Sprintf("outcomes[%d].id", i), "%q is not a message of this batch", o.ID))
		case seen[o.ID]:
			return nil, fmt.Errorf("outbox: finish batch: %w",
				invalid(fmt.Sprintf("outcomes[%d].id", i), "message %s has two outcomes", o.ID))
		}
		seen[o.ID] = true
		reason := ""
		if o.Err != nil {
			reason = validate.CleanReason(o.Err.Error())
		}
		p.IDs = append(p.IDs, key)
		p.Oks = append(p.Oks, o.Err == nil)
		p.Permanents = append(p.Permanents, o.Permanent)
		p.RetryAfterMicros = append(p.RetryAfterMicros, min(max(o.RetryAfter, 0), MaxRetryDelay).Microseconds())
		p.Reasons = append(p.Reasons, reason)
	}
	b.closed = true
	rows, err := b.store.qf.MessageFinishLocked(ctx, p)
	if err != nil {
		b.parent.sawError(err)
		_ = b.tx.Rollback(ctx)
		return nil, fmt.Errorf("outbox: finish batch: %w", b.lost(err))
	}
	if err := b.tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("outbox: finish batch: %w", b.lost(err))
	}
	status := make(map[int64]Status, len(rows))
	for _, r := range rows {
		status[r.ID] = Status(r.Status)
	}
	out := make([]Status, len(outcomes))
	for i := range outcomes {
		out[i] = status[p.IDs[i]]
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
