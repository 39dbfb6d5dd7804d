package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/internal/msgid"
	"github.com/pgoutbox/pgoutbox/internal/validate"
)

// RedriveRequest selects dead letters to send back: either IDs, or every
// dead letter of Lane and Target (optionally only those whose last error
// contains ErrorContains).
type RedriveRequest struct {
	IDs           []string
	Lane, Target  string
	ErrorContains string
}

// RedriveResult says what a redrive did.
type RedriveResult struct {
	// Redriven is how many dead letters are pending again.
	Redriven int
	// NotDead lists the requested IDs that were not dead letters of this
	// scope (pending, claimed, delivered, unknown): nothing was done to them.
	NotDead []string
}

// purgeBatch is how many rows one purge or redrive statement handles.
const purgeBatch = 1000

// Redrive sends dead letters back to pending, due now, with their attempts
// reset; their last error stays as the record of why they died. Messages
// that are not dead letters are left alone and reported in NotDead. An id
// given twice is redriven and reported once.
func (s *PostgresStore) Redrive(ctx context.Context, r RedriveRequest) (RedriveResult, error) {
	if verr := r.check(); verr != nil {
		return RedriveResult{}, fmt.Errorf("outbox: redrive: %w", verr)
	}
	if len(r.IDs) > 0 {
		return s.redriveIDs(ctx, r.IDs)
	}
	var res RedriveResult
	for {
		ids, err := s.qf.MessageRedriveByLaneTarget(ctx, db.MessageRedriveByLaneTargetParams{
			Now: s.now(), Scope: s.scope, Lane: r.Lane, Target: r.Target, ErrorContains: r.ErrorContains, Max: purgeBatch,
		})
		if err != nil {
			return res, fmt.Errorf("outbox: redrive: %w", err)
		}
		res.Redriven += len(ids)
		if len(ids) < purgeBatch {
			return res, nil
		}
	}
}

func (s *PostgresStore) redriveIDs(ctx context.Context, ids []string) (RedriveResult, error) {
	ids = msgid.Unique(ids)
	keys := make([]int64, 0, len(ids))
	for _, id := range ids {
		if key, ok := msgid.Parse(id); ok {
			keys = append(keys, key)
		}
	}
	redriven, err := s.qf.MessageRedriveByIDs(ctx, db.MessageRedriveByIDsParams{Now: s.now(), IDs: keys, Scope: s.scope})
	if err != nil {
		return RedriveResult{}, fmt.Errorf("outbox: redrive: %w", err)
	}
	done := make(map[string]bool, len(redriven))
	for _, id := range redriven {
		done[msgid.Format(id)] = true
	}
	res := RedriveResult{Redriven: len(redriven)}
	for _, id := range ids {
		if !done[id] {
			res.NotDead = append(res.NotDead, id)
		}
	}
	return res, nil
}

// PurgeRequest says which finished messages to delete.
type PurgeRequest struct {
	// OlderThan keeps messages that finished (were last updated) less than
	// this long ago on the store's clock. Zero purges every message that
	// finished before now.
	OlderThan time.Duration
	// DeadLetters purges dead letters too; by default only delivered
	// messages go.
	DeadLetters bool
	// BatchSize bounds the rows one statement examines and deletes (default
	// 1000, at most MaxBatch), so that no statement holds many locks or
	// writes much WAL at once.
	BatchSize int
	// Progress, when set, is called after every batch with the total
	// deleted so far.
	Progress func(deleted int64)
}

// Statuses returns the statuses r purges: delivered, and dead letters when
// r.DeadLetters is set. Stores and tools that explain a purge (a dry run)
// read it here.
func (r PurgeRequest) Statuses() []Status {
	if r.DeadLetters {
		return []Status{StatusDelivered, StatusDeadLetter}
	}
	return []Status{StatusDelivered}
}

func (r PurgeRequest) statuses() []string {
	var out []string
	for _, st := range r.Statuses() {
		out = append(out, string(st))
	}
	return out
}

// Purge deletes delivered messages (and dead letters when asked) that
// finished more than r.OlderThan ago, in batches, walking the table once in
// id order. Deleting a message frees its dedupe key. When ctx ends the purge
// stops between batches (the batch under way completes) and returns what it
// deleted with ctx's error.
func (s *PostgresStore) Purge(ctx context.Context, r PurgeRequest) (int64, error) {
	if verr := r.check(); verr != nil {
		return 0, fmt.Errorf("outbox: purge: %w", verr)
	}
	batch := r.BatchSize
	if batch == 0 {
		batch = purgeBatch
	}
	var deleted, after int64
	for {
		if err := ctx.Err(); err != nil {
			return deleted, fmt.Errorf("outbox: purge: stopped after deleting %d messages: %w", deleted, err)
		}
		// A batch, once started, finishes: interrupting it would roll it back.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		row, err := s.qf.MessagePurge(bctx, db.MessagePurgeParams{
			Now: s.now(), OlderThanMicros: r.OlderThan.Microseconds(), Statuses: r.statuses(),
			Scope: s.scope, AfterID: after, Max: int32(batch),
		})
		cancel()
		if err != nil {
			return deleted, fmt.Errorf("outbox: purge: %w", err)
		}
		deleted += row.Deleted
		if r.Progress != nil {
			r.Progress(deleted)
		}
		if row.Scanned < int64(batch) {
			return deleted, nil
		}
		after = row.LastID
	}
}

// PurgeCount says how many messages Purge would delete now, without
// deleting any. It reads the whole scope.
func (s *PostgresStore) PurgeCount(ctx context.Context, r PurgeRequest) (int64, error) {
	if verr := r.check(); verr != nil {
		return 0, fmt.Errorf("outbox: purge: %w", verr)
	}
	n, err := s.qf.MessagePurgeCount(ctx, db.MessagePurgeCountParams{
		Now: s.now(), OlderThanMicros: r.OlderThan.Microseconds(), Statuses: r.statuses(), Scope: s.scope,
	})
	if err != nil {
		return 0, fmt.Errorf("outbox: purge count: %w", err)
	}
	return n, nil
}

// Stats describes the messages of one lane and target.
type Stats struct {
	Lane, Target string
	// Pending counts pending messages; Due those of them already available.
	Pending, Due int64
	// Claimed counts claimed messages; ExpiredLeases those of them whose
	// lease has run out and that wait for a claim to take them over (a
	// consumer died or stalled).
	Claimed, ExpiredLeases int64
	DeadLetters            int64
	// Delivered counts delivered messages, only when asked for (it reads the
	// whole table); otherwise it is -1.
	Delivered int64
	// OldestDueAge is how long the oldest due message has waited: the
	// number to alert on. Zero when nothing is due.
	OldestDueAge time.Duration
}

// Stats returns per (lane, target) counts and ages for the store's scope.
// Without withDelivered it reads only the partial indexes of pending,
// claimed and dead messages, so its cost follows the live backlog, not the
// table's history: cheap enough to poll every few seconds.
func (s *PostgresStore) Stats(ctx context.Context, withDelivered bool) ([]Stats, error) {
	rows, err := s.qf.MessageStats(ctx, db.MessageStatsParams{Now: s.now(), Scope: s.scope, WithDelivered: withDelivered})
	if err != nil {
		return nil, fmt.Errorf("outbox: stats: %w", err)
	}
	out := make([]Stats, len(rows))
	for i, r := range rows {
		out[i] = Stats{
			Lane: r.Lane, Target: r.Target, Pending: r.Pending, Due: r.Due, Claimed: r.Claimed,
			ExpiredLeases: r.ExpiredLeases, DeadLetters: r.DeadLetters, Delivered: r.Delivered,
			OldestDueAge: time.Duration(r.OldestDueAgeMicros) * time.Microsecond,
		}
		if !withDelivered {
			out[i].Delivered = -1
		}
	}
	return out, nil
}

// ReleaseOrderingKey lets an ordering key that a dead letter holds move on:
// its dead letters (normally one, the head) stop holding the key, so the
// key's next message becomes its head and is handed out. They stay dead
// letters; Redrive still sends one back, to its place in the key. It
// returns how many dead letters it released: 0 when the key was not held by
// one (an unknown key is not an error).
//
// A dead-lettered head holds its key by design (order is never broken
// silently); this is the operator's decision to break it at that message.
// WithSkipDeadLetters makes the store do it as it dead-letters.
func (s *PostgresStore) ReleaseOrderingKey(ctx context.Context, lane, target, key string) (int, error) {
	if verr := validate.ReleaseKey(lane, target, key); verr != nil {
		return 0, fmt.Errorf("outbox: release ordering key: %w", verr)
	}
	ids, err := s.qf.MessageReleaseOrderingKey(ctx, db.MessageReleaseOrderingKeyParams{
		Now: s.now(), Scope: s.scope, Lane: lane, Target: target, OrderingKey: key,
	})
	if err != nil {
		return 0, fmt.Errorf("outbox: release ordering key %q: %w", key, err)
	}
	return len(ids), nil
}
