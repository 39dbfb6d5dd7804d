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
	"github.com/pgoutbox/pgoutbox/internal/headers"
	"github.com/pgoutbox/pgoutbox/internal/keylock"
	"github.com/pgoutbox/pgoutbox/internal/msgid"
	"github.com/pgoutbox/pgoutbox/internal/validate"
	"github.com/pgoutbox/pgoutbox/internal/wakeup"
)

// Receipt identifies a claim: the message and the token its claimer holds.
type Receipt struct {
	ID, ClaimToken string
}

// Receipt returns the receipt of a claimed message.
func (m Message) Receipt() Receipt { return Receipt{ID: m.ID, ClaimToken: m.ClaimToken} }

// EnqueueMany validates every draft, then stores them in one statement, with
// the same dedupe rules as Enqueue. Results are in the order of drafts, and
// the messages' ids (their enqueue order) follow it.
//
// The call is atomic: when any draft conflicts with a stored message (or
// with an earlier draft of the batch under the same key) it returns a
// *ConflictError naming the draft's index and writes nothing. Inside a
// caller's transaction (WithTx) it uses a savepoint, so a conflict leaves the
// caller's transaction usable. Concurrent batches that share dedupe keys, in
// any order, converge on one row per key: each batch locks its keys in one
// global order before inserting (see internal/keylock).
func (s *PostgresStore) EnqueueMany(ctx context.Context, drafts []Draft) ([]EnqueueResult, error) {
	if verr := validate.BatchSize("drafts", len(drafts)); verr != nil {
		return nil, fmt.Errorf("outbox: enqueue many: %w", verr)
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
	notices := s.batchNotices(drafts)
	if !keyed {
		// One statement is atomic on its own and nothing can conflict.
		results, sent, err := s.insertMany(ctx, s.q, s.qf, drafts, notices, false)
		if err != nil {
			return nil, err
		}
		s.settleBatch(ctx, notices, sent, drafts, results)
		return results, nil
	}
	begin, ok := s.conn.(interface {
		Begin(context.Context) (pgx.Tx, error)
	})
	if !ok {
		return nil, fmt.Errorf("outbox: enqueue many: dedupe keys need a connection that can begin a transaction, and %T cannot", s.conn)
	}
	for attempt := 0; ; attempt++ {
		results, sent, err := s.insertManyTx(ctx, begin, drafts, notices)
		switch {
		case err == nil:
			s.settleBatch(ctx, notices, sent, drafts, results)
			return results, nil
		case errors.Is(err, errHolderVanished) && attempt < dedupeRetries:
			continue
		case errors.Is(err, errHolderVanished):
			return nil, fmt.Errorf("outbox: enqueue many: dedupe keys changed hands %d times in a row; giving up", dedupeRetries)
		case retryable(err) && !s.inTx() && attempt < maxClaimRetries:
			// A deadlock with a caller's own transaction that holds some of
			// the keys: the batch rolled back whole, so it runs again.
			s.cfg.logger.DebugContext(ctx, "outbox: enqueue many aborted by the server; running it again", "error", err)
			continue
		}
		return nil, err
	}
}

// insertManyTx runs one attempt of a keyed batch in a transaction of its own
// (a savepoint inside a caller's transaction).
func (s *PostgresStore) insertManyTx(ctx context.Context, begin interface {
	Begin(context.Context) (pgx.Tx, error)
}, drafts []Draft, notices map[string]notice,
) ([]EnqueueResult, batchSent, error) {
	tx, err := begin.Begin(ctx)
	if err != nil {
		return nil, batchSent{}, fmt.Errorf("outbox: enqueue many: %w", err)
	}
	results, sent, err := s.insertMany(ctx, db.New(tx), queries(tx), drafts, notices, true)
	if err != nil {
		s.sawError(err)
		_ = tx.Rollback(ctx)
		return nil, batchSent{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, batchSent{}, fmt.Errorf("outbox: enqueue many: %w", err)
	}
	return results, sent, nil
}

var errHolderVanished = errors.New("outbox: a dedupe key's holder vanished")

// batchSent is what a batch insert did about waking relays: whether it
// notified, and the id of its transaction (for the commit watcher).
type batchSent struct {
	notified bool
	xact     int64
}

// batchNotices decides, per distinct scope, lane and target of a batch,
// whether the batch notifies (see notice).
func (s *PostgresStore) batchNotices(drafts []Draft) map[string]notice {
	out := map[string]notice{}
	for _, d := range drafts {
		if s.cfg.notifier == nil {
			break
		}
		if k := wakeup.Key(s.scope, d.Lane, d.Target); out[k].key == "" {
			out[k] = s.notice(d.Lane, d.Target)
		}
	}
	return out
}

// settleBatch settles each notice of a batch that has committed.
func (s *PostgresStore) settleBatch(ctx context.Context, notices map[string]notice, sent batchSent, drafts []Draft, results []EnqueueResult) {
	inserted := map[string]bool{}
	for i, d := range drafts {
		if !results[i].Deduplicated {
			inserted[wakeup.Key(s.scope, d.Lane, d.Target)] = true
		}
	}
	for k, n := range notices {
		s.settle(ctx, n, sent.notified && n.payload != "", inserted[k], sent.xact)
	}
}

// insertMany runs the batch insert on q (prepared: an insert scans no
// table) and reads the holders of taken keys on fresh (planned per
// execution, see plans.go). dedupe says whether the batch carries dedupe
// keys: only then does the insert need ON CONFLICT (see
// MessageInsertMany).
func (s *PostgresStore) insertMany(ctx context.Context, q, fresh *db.Queries, drafts []Draft, notices map[string]notice, dedupe bool) ([]EnqueueResult, batchSent, error) {
	p := db.MessageInsertManyParams{
		NotifyChannel:  wakeup.Channel,
		NotifyPayloads: []string{},
		LockIDs:        []int64{},
		Now:            s.now(),
		Scope:          s.scope,
		Lanes:          make([]string, len(drafts)),
		Targets:        make([]string, len(drafts)),
		Payloads:       make([]json.RawMessage, len(drafts)),
		DedupeKeys:     make([]string, len(drafts)),
		OrderingKeys:   make([]string, len(drafts)),
		Headers:        make([]json.RawMessage, len(drafts)),
		AvailableAts:   make([]time.Time, len(drafts)),
		HasAvailableAt: make([]bool, len(drafts)),
		MaxAttempts:    make([]int32, len(drafts)),
	}
	for _, n := range notices {
		if n.payload != "" {
			p.NotifyPayloads = append(p.NotifyPayloads, n.payload)
		}
	}
	injected := make([]map[string]string, len(drafts))
	for i, d := range drafts {
		p.Lanes[i], p.Targets[i], p.DedupeKeys[i], p.OrderingKeys[i] = d.Lane, d.Target, d.DedupeKey, d.OrderingKey
		p.Payloads[i] = d.Payload
		injected[i] = headers.Inject(ctx, s.cfg.propagator, d.Headers)
		p.Headers[i] = headers.Encode(injected[i])
		p.AvailableAts[i], p.HasAvailableAt[i] = d.AvailableAt, !d.AvailableAt.IsZero()
		p.MaxAttempts[i] = d.maxAttempts()
		if d.DedupeKey != "" {
			p.LockIDs = append(p.LockIDs, keylock.ID(keylock.Dedupe, s.scope, d.Lane, d.Target, d.DedupeKey))
		}
		if d.OrderingKey != "" {
			p.LockIDs = append(p.LockIDs, keylock.ID(keylock.Ordering, s.scope, d.Lane, d.Target, d.OrderingKey))
		}
	}
	p.LockIDs = keylock.Ordered(p.LockIDs)
	var rows []db.MessageInsertManyRow
	var err error
	if dedupe {
		// The same columns: only the ON CONFLICT clause differs.
		var drows []db.MessageInsertManyDeduplicatedRow
		drows, err = q.MessageInsertManyDeduplicated(ctx, db.MessageInsertManyDeduplicatedParams(p))
		rows = make([]db.MessageInsertManyRow, len(drows))
		for i, r := range drows {
			rows[i] = db.MessageInsertManyRow(r)
		}
	} else {
		rows, err = q.MessageInsertMany(ctx, p)
	}
	if err != nil {
		return nil, batchSent{}, fmt.Errorf("outbox: enqueue many: %w", explainSerialization(firstKey(drafts), err))
	}
	var sent batchSent
	if len(rows) > 0 {
		sent = batchSent{notified: rows[0].Notified > 0, xact: rows[0].Xact}
	}
	// Rows come back in draft order; a keyed draft whose row is not next was
	// not inserted: its key is held.
	results := make([]EnqueueResult, len(drafts))
	var held []int
	next := 0
	for i, d := range drafts {
		if next < len(rows) && insertedFor(d, rows[next]) {
			r := rows[next]
			results[i].Message = insertedMessage(d, injected[i], insertedRow{id: r.ID, payload: r.Payload, availableAt: r.AvailableAt, createdAt: r.CreatedAt})
			next++
			continue
		}
		if d.DedupeKey == "" {
			return nil, batchSent{}, fmt.Errorf("outbox: enqueue many: draft %d has no row (statement returned %d rows for %d drafts)", i, len(rows), len(drafts))
		}
		held = append(held, i)
	}
	if len(held) == 0 {
		return results, sent, nil
	}
	lookup := db.MessageGetByDedupeKeysParams{Scope: s.scope}
	for _, i := range held {
		d := drafts[i]
		lookup.Lanes = append(lookup.Lanes, d.Lane)
		lookup.Targets = append(lookup.Targets, d.Target)
		lookup.DedupeKeys = append(lookup.DedupeKeys, d.DedupeKey)
		lookup.Payloads = append(lookup.Payloads, d.Payload)
	}
	holders, err := fresh.MessageGetByDedupeKeys(ctx, lookup)
	if err != nil {
		return nil, batchSent{}, fmt.Errorf("outbox: enqueue many: reading the holders of dedupe keys: %w", err)
	}
	if len(holders) != len(held) {
		return nil, batchSent{}, errHolderVanished
	}
	for _, h := range holders {
		i := held[h.Ordinal-1]
		existing := toMessage(h.PgoutboxMessage)
		if field := s.draftDiffers(drafts[i], h.PgoutboxMessage, existing, h.PayloadMatches); field != "" {
			return nil, batchSent{}, fmt.Errorf("outbox: enqueue many: draft %d: %w", i,
				&ConflictError{DedupeKey: drafts[i].DedupeKey, Field: field, Existing: existing})
		}
		results[i] = EnqueueResult{Message: existing, Deduplicated: true}
	}
	return results, sent, nil
}

// firstKey is a batch's first dedupe key, to name one in an error.
func firstKey(drafts []Draft) string {
	for _, d := range drafts {
		if d.DedupeKey != "" {
			return d.DedupeKey
		}
	}
	return ""
}

// insertedFor reports whether row is the one inserted for draft d.
func insertedFor(d Draft, row db.MessageInsertManyRow) bool {
	if row.Lane != d.Lane || row.Target != d.Target {
		return false
	}
	if d.DedupeKey == "" {
		return row.DedupeKey == nil
	}
	return row.DedupeKey != nil && *row.DedupeKey == d.DedupeKey
}

// insertedRow is what an insert statement returns about a row it wrote:
// only what the server made.
type insertedRow struct {
	id                     int64
	payload                string
	availableAt, createdAt time.Time
}

func stored(r db.MessageInsertRow) insertedRow {
	return insertedRow{id: r.ID, payload: r.Payload, availableAt: r.AvailableAt, createdAt: r.CreatedAt}
}

// insertedMessage is the message an insert stored for draft d, with h the
// headers it wrote: the id, the times and the payload (as jsonb keeps it)
// from the server, the rest from the draft, as the insert wrote it.
func insertedMessage(d Draft, h map[string]string, r insertedRow) Message {
	return Message{
		ID:          msgid.Format(r.id),
		Lane:        d.Lane,
		Target:      d.Target,
		Payload:     json.RawMessage(r.payload),
		DedupeKey:   d.DedupeKey,
		OrderingKey: d.OrderingKey,
		Headers:     headers.Stored(h),
		Status:      StatusPending,
		AvailableAt: r.availableAt,
		MaxAttempts: int(d.maxAttempts()),
		CreatedAt:   r.createdAt,
		// Every insert statement sets updated_at from the same expression
		// as created_at.
		UpdatedAt: r.createdAt,
	}
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
	acked, err := s.qf.MessageAckMany(ctx, db.MessageAckManyParams{Now: s.now(), IDs: ids, ClaimTokens: tokens, Scope: s.scope})
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

// ExtendLeases is ExtendLease for a batch of claims in one statement; ok[i]
// reports whether receipts[i] is still held.
func (s *PostgresStore) ExtendLeases(ctx context.Context, receipts []Receipt, lease time.Duration) (ok []bool, err error) {
	if verr := validate.Lease(lease); verr != nil {
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
	extended, err := s.qf.MessageExtendLeases(ctx, db.MessageExtendLeasesParams{
		IDs: ids, ClaimTokens: tokens, Scope: s.scope, Now: s.now(), LeaseMicros: lease.Microseconds(),
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

// parseReceipts parses a batch of receipts. index[i] is the position in ids
// of receipts[i], or -1 when it cannot be a claim this store issued.
func parseReceipts(receipts []Receipt) (ids []int64, tokens []pgtype.UUID, index []int, verr *ValidationError) {
	if verr := validate.BatchSize("receipts", len(receipts)); verr != nil {
		return nil, nil, nil, verr
	}
	index = make([]int, len(receipts))
	for i, r := range receipts {
		key, token, ok, err := parseReceipt(r.ID, r.ClaimToken)
		if err != nil {
			return nil, nil, nil, validate.In(fmt.Sprintf("receipts[%d]", i), err)
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
