package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgoutbox/pgoutbox/db"
)

// MaxBatch caps the number of drafts or receipts one batch call takes.
const MaxBatch = 10_000

// Receipt identifies a claim: the message and the token its claimer holds.
type Receipt struct {
	ID, ClaimToken string
}

// Receipt returns the receipt of a claimed message.
func (m Message) Receipt() Receipt { return Receipt{ID: m.ID, ClaimToken: m.ClaimToken} }

// EnqueueMany validates every draft, then stores them in one statement, with
// the same dedupe rules as Enqueue. Results are in the order of drafts.
//
// The call is atomic: when any draft conflicts with a stored message (or
// with an earlier draft of the batch under the same key) it returns a
// *ConflictError naming the draft's index and writes nothing. Inside a
// caller's transaction (WithTx) it uses a savepoint, so a conflict leaves the
// caller's transaction usable.
func (s *PostgresStore) EnqueueMany(ctx context.Context, drafts []Draft) ([]EnqueueResult, error) {
	if len(drafts) > MaxBatch {
		return nil, fmt.Errorf("outbox: enqueue many: %w", invalid("drafts", "at most %d per call, got %d", MaxBatch, len(drafts)))
	}
	keyed := false
	for i, d := range drafts {
		if err := d.validate(); err != nil {
			return nil, fmt.Errorf("outbox: enqueue many: draft %d: %w", i, err)
		}
		keyed = keyed || d.DedupeKey != ""
	}
	if len(drafts) == 0 {
		return []EnqueueResult{}, nil
	}
	if !keyed {
		// One statement is atomic on its own and nothing can conflict.
		return s.insertMany(ctx, s.q, drafts)
	}
	begin, ok := s.conn.(interface {
		Begin(context.Context) (pgx.Tx, error)
	})
	if !ok {
		return nil, fmt.Errorf("outbox: enqueue many: dedupe keys need a connection that can begin a transaction, and %T cannot", s.conn)
	}
	for range dedupeRetries {
		tx, err := begin.Begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("outbox: enqueue many: %w", err)
		}
		results, err := s.insertMany(ctx, db.New(tx), drafts)
		if err != nil {
			_ = tx.Rollback(ctx)
			if errors.Is(err, errHolderVanished) {
				continue
			}
			return nil, err
		}
		if err := tx.Commit(ctx); err != nil {
			return nil, fmt.Errorf("outbox: enqueue many: %w", err)
		}
		return results, nil
	}
	return nil, fmt.Errorf("outbox: enqueue many: dedupe keys changed hands %d times in a row; giving up", dedupeRetries)
}

var errHolderVanished = errors.New("outbox: a dedupe key's holder vanished")

func (s *PostgresStore) insertMany(ctx context.Context, q *db.Queries, drafts []Draft) ([]EnqueueResult, error) {
	notify := false
	for _, d := range drafts {
		// allow for every distinct key, so each counts as notified.
		notify = s.cfg.notifier.allow(s.scope, d.Lane, d.Target) || notify
	}
	p := db.MessageInsertManyParams{
		Notify:         notify,
		Now:            s.now(),
		Scope:          s.scope,
		Lanes:          make([]string, len(drafts)),
		Targets:        make([]string, len(drafts)),
		Payloads:       make([]json.RawMessage, len(drafts)),
		DedupeKeys:     make([]string, len(drafts)),
		AvailableAts:   make([]time.Time, len(drafts)),
		HasAvailableAt: make([]bool, len(drafts)),
		MaxAttempts:    make([]int32, len(drafts)),
	}
	for i, d := range drafts {
		p.Lanes[i], p.Targets[i], p.DedupeKeys[i] = d.Lane, d.Target, d.DedupeKey
		p.Payloads[i] = d.Payload
		p.AvailableAts[i], p.HasAvailableAt[i] = d.AvailableAt, !d.AvailableAt.IsZero()
		p.MaxAttempts[i] = d.maxAttempts()
	}
	rows, err := q.MessageInsertMany(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("outbox: enqueue many: %w", err)
	}
	// Rows come back in draft order; a keyed draft whose row is not next was
	// not inserted: its key is held.
	results := make([]EnqueueResult, len(drafts))
	var held []int
	next := 0
	for i, d := range drafts {
		if next < len(rows) && insertedFor(d, rows[next].PgoutboxMessage) {
			results[i].Message = toMessage(rows[next].PgoutboxMessage)
			next++
			continue
		}
		if d.DedupeKey == "" {
			return nil, fmt.Errorf("outbox: enqueue many: draft %d has no row (statement returned %d rows for %d drafts)", i, len(rows), len(drafts))
		}
		held = append(held, i)
	}
	if len(held) == 0 {
		return results, nil
	}
	lookup := db.MessageGetByDedupeKeysParams{Scope: s.scope}
	for _, i := range held {
		d := drafts[i]
		lookup.Lanes = append(lookup.Lanes, d.Lane)
		lookup.Targets = append(lookup.Targets, d.Target)
		lookup.DedupeKeys = append(lookup.DedupeKeys, d.DedupeKey)
		lookup.Payloads = append(lookup.Payloads, d.Payload)
	}
	holders, err := q.MessageGetByDedupeKeys(ctx, lookup)
	if err != nil {
		return nil, fmt.Errorf("outbox: enqueue many: reading the holders of dedupe keys: %w", err)
	}
	if len(holders) != len(held) {
		return nil, errHolderVanished
	}
	for _, h := range holders {
		i := held[h.Ordinal-1]
		existing := toMessage(h.PgoutboxMessage)
		if field := draftDiffers(drafts[i], existing, h.PayloadMatches); field != "" {
			return nil, fmt.Errorf("outbox: enqueue many: draft %d: %w", i,
				&ConflictError{DedupeKey: drafts[i].DedupeKey, Field: field, Existing: existing})
		}
		results[i] = EnqueueResult{Message: existing, Deduplicated: true}
	}
	return results, nil
}

// insertedFor reports whether row is the one inserted for draft d.
func insertedFor(d Draft, row db.PgoutboxMessage) bool {
	if row.Lane != d.Lane || row.Target != d.Target {
		return false
	}
	if d.DedupeKey == "" {
		return row.DedupeKey == nil
	}
	return row.DedupeKey != nil && *row.DedupeKey == d.DedupeKey
}

// AckMany acks a batch of claims in one statement. ok[i] reports whether
// receipts[i] was still held and is now delivered; the rest are left alone,
// as Ack would.
func (s *PostgresStore) AckMany(ctx context.Context, receipts []Receipt) (ok []bool, err error) {
	ids, tokens, index, verr := parseReceipts(receipts)
	if verr != nil {
		return nil, fmt.Errorf("outbox: ack many: %w", verr)
	}
	ok = make([]bool, len(receipts))
	if len(ids) == 0 {
		return ok, nil
	}
	acked, err := s.q.MessageAckMany(ctx, db.MessageAckManyParams{Now: s.now(), Ids: ids, ClaimTokens: tokens, Scope: s.scope})
	if err != nil {
		return nil, fmt.Errorf("outbox: ack many: %w", err)
	}
	held := make(map[heldClaim]bool, len(acked))
	for _, r := range acked {
		held[heldClaim{r.ID, r.ClaimToken.Bytes}] = true
	}
	markHeld(ok, index, ids, tokens, held)
	return ok, nil
}

// ExtendLease moves the lease of a claimed message to now + lease, so that a
// handler running longer than its first lease keeps the message. It returns
// false when the caller no longer holds the claim; the handler should then
// stop, as the message may be with another consumer.
func (s *PostgresStore) ExtendLease(ctx context.Context, id, claimToken string, lease time.Duration) (bool, error) {
	ok, err := s.ExtendLeases(ctx, []Receipt{{ID: id, ClaimToken: claimToken}}, lease)
	if err != nil {
		return false, err
	}
	return ok[0], nil
}

// ExtendLeases is ExtendLease for a batch of claims in one statement; ok[i]
// reports whether receipts[i] is still held.
func (s *PostgresStore) ExtendLeases(ctx context.Context, receipts []Receipt, lease time.Duration) (ok []bool, err error) {
	if verr := checkLease(lease); verr != nil {
		return nil, fmt.Errorf("outbox: extend lease: %w", verr)
	}
	ids, tokens, index, verr := parseReceipts(receipts)
	if verr != nil {
		return nil, fmt.Errorf("outbox: extend lease: %w", verr)
	}
	ok = make([]bool, len(receipts))
	if len(ids) == 0 {
		return ok, nil
	}
	extended, err := s.q.MessageExtendLeases(ctx, db.MessageExtendLeasesParams{
		Ids: ids, ClaimTokens: tokens, Scope: s.scope, Now: s.now(), LeaseMicros: lease.Microseconds(),
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: extend lease: %w", err)
	}
	held := make(map[heldClaim]bool, len(extended))
	for _, r := range extended {
		held[heldClaim{r.ID, r.ClaimToken.Bytes}] = true
	}
	markHeld(ok, index, ids, tokens, held)
	return ok, nil
}

// DeadLetter is a permanent failure: the holder of a claimed message moves it
// to the dead letters at once, with reason as its last error, whatever
// attempts it has left. It returns false, changing nothing, when the caller
// does not hold the claim. The reason is cleaned as Nack cleans it.
func (s *PostgresStore) DeadLetter(ctx context.Context, id, claimToken, reason string) (bool, error) {
	key, token, ok, verr := parseReceipt(id, claimToken)
	if verr != nil {
		return false, fmt.Errorf("outbox: dead-letter: %w", verr)
	}
	if !ok {
		return false, nil
	}
	n, err := s.q.MessageDeadLetter(ctx, db.MessageDeadLetterParams{
		Now: s.now(), LastError: cleanReason(reason), ID: key, Scope: s.scope, ClaimToken: token,
	})
	if err != nil {
		return false, fmt.Errorf("outbox: dead-letter %s: %w", id, err)
	}
	return n == 1, nil
}

// parseReceipts parses a batch of receipts. index[i] is the position in ids
// of receipts[i], or -1 when it cannot be a claim this store issued.
func parseReceipts(receipts []Receipt) (ids []int64, tokens []pgtype.UUID, index []int, verr *ValidationError) {
	if len(receipts) > MaxBatch {
		return nil, nil, nil, invalid("receipts", "at most %d per call, got %d", MaxBatch, len(receipts))
	}
	index = make([]int, len(receipts))
	for i, r := range receipts {
		key, token, ok, err := parseReceipt(r.ID, r.ClaimToken)
		if err != nil {
			err.Field = fmt.Sprintf("receipts[%d].%s", i, err.Field)
			return nil, nil, nil, err
		}
		index[i] = -1
		if ok {
			index[i] = len(ids)
			ids = append(ids, key)
			tokens = append(tokens, token)
		}
	}
	return ids, tokens, index, nil
}

// heldClaim is an (id, token) pair a batch statement found held.
type heldClaim struct {
	id    int64
	token [16]byte
}

// markHeld sets ok[i] for every receipt whose (id, token) pair came back: a
// stale token for a message someone else now holds stays false.
func markHeld(ok []bool, index []int, ids []int64, tokens []pgtype.UUID, held map[heldClaim]bool) {
	for i, pos := range index {
		if pos >= 0 {
			ok[i] = held[heldClaim{ids[pos], tokens[pos].Bytes}]
		}
	}
}
