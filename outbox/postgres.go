package outbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// PostgresStore is the Store on PostgreSQL. It is safe for concurrent use
// when its connection is (a pgxpool.Pool is; a pgx.Conn or pgx.Tx is not).
//
// A PostgresStore is a value bound to one connection and one scope; WithTx
// and Scoped return new views and leave the receiver as it was.
type PostgresStore struct {
	conn db.DBTX // what q runs on; EnqueueMany begins transactions on it
	q    *db.Queries
	// qf plans each statement afresh; claims and locks of many messages use
	// it (see plans.go).
	qf    *db.Queries
	scope string
	cfg   config
	// watch notifies for enqueues in callers' transactions once they
	// commit; nil when they notify themselves (see newCommitWatch). Shared
	// by the store's WithTx and Scoped views.
	watch *commitWatch
}

var _ Store = (*PostgresStore)(nil)

// NewPostgresStore returns a store that runs its statements on conn: a
// *pgxpool.Pool for a service, a *pgx.Conn, or a pgx.Tx to run every call in
// one transaction. The schema must be migrated first (see Migrate).
//
// On a pool, a statement that finds its session read-only (a failover
// demoted the server it was connected to) resets the pool, so that the
// next statement reconnects to the new primary instead of failing on the
// old sessions until they expire.
func NewPostgresStore(conn db.DBTX, opts ...Option) *PostgresStore {
	conn = guard(conn)
	cfg := newConfig(opts)
	return &PostgresStore{conn: conn, q: db.New(conn), qf: queries(conn), cfg: cfg, watch: newCommitWatch(conn, cfg)}
}

// WithTx returns the same store (scope, clock, logger) running every call in
// tx, the caller's transaction. An Enqueue through it commits or rolls back
// with the caller's own writes in tx, and a duplicate dedupe key does not
// abort tx.
func (s *PostgresStore) WithTx(tx pgx.Tx) *PostgresStore {
	c := *s
	c.conn = tx
	c.q = db.New(tx)
	c.qf = queries(tx)
	return &c
}

// Scoped returns a view of the store limited to one tenant scope. The view
// never sees, claims, acks, nacks or dedupes against rows of any other scope,
// including the unscoped store's. Scope ids are not blank, at most
// MaxScopeBytes of UTF-8, and hold no control characters. Scopes do not nest:
// scoping a scoped store is an error.
func (s *PostgresStore) Scoped(scope string) (*PostgresStore, error) {
	if err := validate.Scope(scope); err != nil {
		return nil, fmt.Errorf("outbox: scoped: %w", err)
	}
	if s.scope != "" {
		return nil, fmt.Errorf("outbox: scoped: %w",
			invalid("scope", "the store is already scoped to %q and scopes do not nest", s.scope))
	}
	c := *s
	c.scope = scope
	return &c, nil
}

// Scope returns the store's scope id, "" for the unscoped store.
func (s *PostgresStore) Scope() string { return s.scope }

// now returns the injected clock's time, or nil for the database's clock.
func (s *PostgresStore) now() *time.Time {
	if s.cfg.clock == nil {
		return nil
	}
	t := s.cfg.clock()
	return &t
}

// dedupeRetries bounds how often Enqueue retries when a dedupe key's holder
// vanishes between the insert that found it and the read of it (it was
// purged, or its transaction rolled back). Each retry means another writer
// made progress, so the bound is never reached in practice.
const dedupeRetries = 8

// Enqueue validates d and stores it as a pending message. With a dedupe key
// already held in this scope, lane and target, it returns the holder with
// Deduplicated set when d is the same draft (same payload as JSON, same max
// attempts, same AvailableAt when d names one), and a *ConflictError
// (ErrConflict) otherwise. Neither aborts the caller's transaction.
func (s *PostgresStore) Enqueue(ctx context.Context, d Draft) (EnqueueResult, error) {
	if err := d.validate(); err != nil {
		return EnqueueResult{}, fmt.Errorf("outbox: enqueue: %w", err)
	}
	var availableAt *time.Time
	if !d.AvailableAt.IsZero() {
		availableAt = &d.AvailableAt
	}
	now := s.now()
	n := s.notice(d.Lane, d.Target)
	injected := headers.Inject(ctx, s.cfg.propagator, d.Headers)
	hdrs := headers.Encode(injected)
	orderingKey, lockIDs := s.orderingKey(d)
	if d.DedupeKey == "" {
		row, err := s.q.MessageInsert(ctx, db.MessageInsertParams{
			LockIDs: lockIDs, Scope: s.scope, Lane: d.Lane, Target: d.Target, Payload: d.Payload,
			OrderingKey: orderingKey, Headers: hdrs, AvailableAt: availableAt, Now: now, MaxAttempts: d.maxAttempts(),
			NotifyChannel: wakeup.Channel, NotifyPayload: n.payload,
		})
		if err != nil {
			return EnqueueResult{}, fmt.Errorf("outbox: enqueue: %w", err)
		}
		s.settle(ctx, n, row.Notified, true, row.Xact)
		return EnqueueResult{Message: insertedMessage(d, injected, stored(row))}, nil
	}
	for range dedupeRetries {
		row, err := s.q.MessageInsertDeduplicated(ctx, db.MessageInsertDeduplicatedParams{
			LockIDs: lockIDs, Scope: s.scope, Lane: d.Lane, Target: d.Target, Payload: d.Payload, DedupeKey: d.DedupeKey,
			OrderingKey: orderingKey, Headers: hdrs, AvailableAt: availableAt, Now: now, MaxAttempts: d.maxAttempts(),
			NotifyChannel: wakeup.Channel, NotifyPayload: n.payload,
		})
		if err == nil {
			s.settle(ctx, n, row.Notified, true, row.Xact)
			return EnqueueResult{Message: insertedMessage(d, injected, stored(db.MessageInsertRow(row)))}, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return EnqueueResult{}, fmt.Errorf("outbox: enqueue: %w", explainSerialization(d.DedupeKey, err))
		}
		held, err := s.qf.MessageGetByDedupeKey(ctx, db.MessageGetByDedupeKeyParams{
			Payload: d.Payload, Scope: s.scope, Lane: d.Lane, Target: d.Target, DedupeKey: d.DedupeKey,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return EnqueueResult{}, fmt.Errorf("outbox: enqueue: reading the holder of dedupe key %q: %w", d.DedupeKey, err)
		}
		existing := toMessage(held.PgoutboxMessage)
		if field := s.draftDiffers(d, held.PgoutboxMessage, existing, held.PayloadMatches); field != "" {
			return EnqueueResult{}, fmt.Errorf("outbox: enqueue: %w",
				&ConflictError{DedupeKey: d.DedupeKey, Field: field, Existing: existing})
		}
		return EnqueueResult{Message: existing, Deduplicated: true}, nil
	}
	return EnqueueResult{}, fmt.Errorf("outbox: enqueue: dedupe key %q changed hands %d times in a row; giving up", d.DedupeKey, dedupeRetries)
}

// draftDiffers names the first part of d that differs from the message
// already holding its dedupe key, or returns "". Only what the producer set
// counts: the stored row's available_at moves with nacks and redrives, so
// the draft's AvailableAt is compared with the one the holder's producer
// asked for.
func (s *PostgresStore) draftDiffers(d Draft, row db.PgoutboxMessage, m Message, payloadMatches bool) string {
	var requested time.Time
	if row.RequestedAvailableAt != nil {
		requested = *row.RequestedAvailableAt
	}
	switch {
	case !payloadMatches:
		return "payload"
	case int(d.maxAttempts()) != m.MaxAttempts:
		return "max_attempts"
	case d.OrderingKey != m.OrderingKey:
		return "ordering_key"
	case !headers.SameDraft(d.Headers, m.Headers, s.cfg.propagator):
		return "headers"
	case !d.AvailableAt.IsZero() && !d.AvailableAt.Truncate(time.Microsecond).Equal(requested):
		// Postgres keeps microseconds; pgx truncates to them when it encodes.
		return "available_at"
	}
	return ""
}

// orderingKey returns d's ordering key as the insert takes it, and the
// advisory lock it is inserted under (none for an unkeyed draft).
func (s *PostgresStore) orderingKey(d Draft) (*string, []int64) {
	if d.OrderingKey == "" {
		return nil, []int64{}
	}
	return &d.OrderingKey, []int64{keylock.ID(keylock.Ordering, s.scope, d.Lane, d.Target, d.OrderingKey)}
}

// Claim takes up to r.Limit messages of r.Lane and r.Target that are pending
// and available, or claimed under a lease that has expired, oldest
// available_at (then enqueue order) first. Each comes back claimed by
// r.ConsumerID with a fresh claim token, one more attempt counted, and a
// lease of r.Lease. Concurrent claimers never get the same message while its
// lease holds.
//
// A message whose lease expired after its last attempt is dead-lettered
// ("lease expired after N attempts") instead of returned, and logged.
func (s *PostgresStore) Claim(ctx context.Context, r ClaimRequest) ([]Message, error) {
	claimed, _, err := s.ClaimAndAck(ctx, r, nil)
	return claimed, err
}

// ClaimAndAck acks acks (as AckMany) and claims (as Claim) in one statement
// and one commit: a consumer that keeps up acks each batch with the claim of
// the next. acked[i] reports whether acks[i] was still held and is now
// delivered. When the claim fails, nothing was acked.
func (s *PostgresStore) ClaimAndAck(ctx context.Context, r ClaimRequest, acks []Receipt) (claimed []Message, acked []bool, err error) {
	if err := r.validate(); err != nil {
		return nil, nil, fmt.Errorf("outbox: claim: %w", err)
	}
	ackIDs, ackTokens, index, verr := parseReceipts(acks)
	if verr != nil {
		return nil, nil, fmt.Errorf("outbox: claim: %w", verr)
	}
	key := wakeup.Key(s.scope, r.Lane, r.Target)
	start := s.cfg.cursors.start(key, r.ConsumerID, r.Limit)
	claimed, keys, walk, held, err := s.claim(ctx, r, r.Limit, start, ackIDs, ackTokens)
	if err != nil {
		return nil, nil, err
	}
	acked = make([]bool, len(acks))
	markHeld(acked, index, ackIDs, ackTokens, held)
	if start.fromCursor && len(claimed) < r.Limit {
		// The backlog behind the cursor is drained: scan from the start
		// once, for messages that became due behind it.
		full := start.rescan()
		more, moreKeys, _, _, err := s.claim(ctx, r, r.Limit-len(claimed), full, nil, nil)
		if err != nil {
			// The first statement committed: its claims and acks stand and
			// the caller must get them, or they would sit claimed by nobody
			// until their lease ends. The next claim scans from the start.
			s.cfg.logger.WarnContext(ctx, "outbox: claim: follow-up scan from the start failed",
				"lane", r.Lane, "target", r.Target, "error", err)
			s.cfg.cursors.record(key, r.ConsumerID, start, r.Limit, claimed, keys, walk)
			return claimed, acked, nil
		}
		start = full
		claimed, keys = append(claimed, more...), append(keys, moreKeys...)
		sortClaimed(claimed, keys)
	}
	s.cfg.cursors.record(key, r.ConsumerID, start, r.Limit, claimed, keys, walk)
	if len(claimed) == r.Limit {
		s.cfg.plans.backlog()
	}
	return claimed, acked, nil
}

// claim runs one claim statement for up to limit messages, unkeyed due ones
// taken after the cursor's position and keyed heads from its key on, acking
// the given claims on the way.
func (s *PostgresStore) claim(ctx context.Context, r ClaimRequest, limit int, from cursorStart,
	ackIDs []int64, ackTokens []pgtype.UUID,
) ([]Message, []int64, keyWalk, map[heldClaim]bool, error) {
	params := db.MessageClaimParams{
		Now:              s.now(),
		LeaseMicros:      r.Lease.Microseconds(),
		Scope:            s.scope,
		Lane:             r.Lane,
		Target:           r.Target,
		Max:              int32(limit), //nolint:gosec // validate bounds it by MaxClaimLimit
		AfterAvailableAt: from.at,
		AfterID:          from.id,
		AfterKey:         from.key,
		ReleaseKeys:      s.cfg.releaseKeys,
		AckIDs:           nonNilIDs(ackIDs),
		AckTokens:        nonNilTokens(ackTokens),
		ConsumerID:       r.ConsumerID,
	}
	q := s.plannedFor(limit)
	rows, err := q.MessageClaim(ctx, params)
	// SKIP LOCKED does not make the claim wait-free: when a candidate row's
	// updater commits at the instant the claim looks at it, PostgreSQL
	// follows the row's update chain and waits on the next version's
	// locker, which can close a cycle with another claimer and end in a
	// deadlock error. The statement is atomic, so it is run again; inside a
	// caller's transaction the error is the caller's to handle, as the
	// transaction is aborted.
	for retry := 0; retry < maxClaimRetries && retryable(err) && !s.inTx(); retry++ {
		s.cfg.logger.DebugContext(ctx, "outbox: claim statement aborted by the server; running it again",
			"lane", r.Lane, "target", r.Target, "error", err)
		rows, err = q.MessageClaim(ctx, params)
	}
	if err != nil {
		return nil, nil, keyWalk{}, nil, fmt.Errorf("outbox: claim: %w", err)
	}
	var walk keyWalk
	claimed := make([]Message, 0, len(rows))
	keys := make([]int64, 0, len(rows))
	held := map[heldClaim]bool{}
	text := claimText(rows)
	for _, row := range rows {
		switch Status(row.Status) {
		case StatusClaimed:
			var id, token string
			id, token, text = cutClaimText(text, row.ID, row.ClaimToken)
			claimed = append(claimed, messageFrom(claimedRow(row), id, token))
			keys = append(keys, row.ID)
			walk.add(row.Skipped)
		case StatusDelivered:
			// Acked on the way; the statement returns the token it was acked with.
			held[heldClaim{row.ID, row.ClaimToken.Bytes}] = true
		default:
			s.cfg.logger.WarnContext(ctx, "outbox: dead-lettered a message whose lease expired after its last attempt",
				"id", msgid.Format(row.ID), "scope", s.scope, "lane", row.Lane, "target", row.Target, "attempts", row.AttemptCount)
		}
	}
	return claimed, keys, walk, held, nil
}

// claimedRow is a claim statement's row as a table row: all of it but the
// count of skipped heads.
func claimedRow(r db.MessageClaimRow) db.PgoutboxMessage {
	return db.PgoutboxMessage{
		ID: r.ID, Scope: r.Scope, Lane: r.Lane, Target: r.Target, Payload: r.Payload,
		DedupeKey: r.DedupeKey, Status: r.Status, AvailableAt: r.AvailableAt,
		AttemptCount: r.AttemptCount, MaxAttempts: r.MaxAttempts, ClaimedBy: r.ClaimedBy,
		ClaimToken: r.ClaimToken, LeaseExpiresAt: r.LeaseExpiresAt, LastError: r.LastError,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, OrderingKey: r.OrderingKey,
		OrderingKeyReleased: r.OrderingKeyReleased, Headers: r.Headers,
		RequestedAvailableAt: r.RequestedAvailableAt,
	}
}

// Postgres reads a nil Go slice as a NULL array, and id = ANY(NULL) as NULL.
func nonNilIDs(ids []int64) []int64 {
	if ids == nil {
		return []int64{}
	}
	return ids
}

func nonNilTokens(t []pgtype.UUID) []pgtype.UUID {
	if t == nil {
		return []pgtype.UUID{}
	}
	return t
}

// Ack marks a claimed message delivered and clears its claim. It returns
// true only for the holder of the message's current claim token; a message
// that is not claimed, not in this scope, or claimed under another token
// gives false and is left alone. A holder whose lease has expired still
// succeeds while nobody has claimed the message since.
func (s *PostgresStore) Ack(ctx context.Context, id, claimToken string) (bool, error) {
	key, token, ok, verr := parseReceipt(id, claimToken)
	if verr != nil {
		return false, fmt.Errorf("outbox: ack: %w", verr)
	}
	if !ok {
		return false, nil
	}
	n, err := s.qf.MessageAck(ctx, db.MessageAckParams{Now: s.now(), ID: key, Scope: s.scope, ClaimToken: token})
	if err != nil {
		return false, fmt.Errorf("outbox: ack %s: %w", id, err)
	}
	return n == 1, nil
}

// Nack gives back a claimed message that could not be delivered, storing
// reason as its last error. With attempts left it becomes pending again,
// claimable from retryAt (zero means now): NackRequeued. Without, it becomes
// a dead letter: NackDeadLettered. A caller that does not hold the current
// claim token gets NackLostClaim and nothing changes.
//
// The reason never makes a nack fail: NUL bytes are dropped, invalid UTF-8
// replaced and the text cut to MaxErrorBytes.
func (s *PostgresStore) Nack(ctx context.Context, id, claimToken, reason string, retryAt time.Time) (NackOutcome, error) {
	var at *time.Time
	if !retryAt.IsZero() {
		if verr := validate.Time("retry_at", retryAt); verr != nil {
			return 0, fmt.Errorf("outbox: nack: %w", verr)
		}
		at = &retryAt
	}
	return s.nack(ctx, id, claimToken, reason, at, nil)
}

// NackAfter is Nack with a retry delay instead of a retry time: the message
// becomes claimable delay after now on the store's clock (the database's by
// default), so a backoff computed on a host with a wrong clock still waits
// as long as it meant to.
func (s *PostgresStore) NackAfter(ctx context.Context, id, claimToken, reason string, delay time.Duration) (NackOutcome, error) {
	if verr := validate.RetryDelay(delay); verr != nil {
		return 0, fmt.Errorf("outbox: nack: %w", verr)
	}
	micros := delay.Microseconds()
	return s.nack(ctx, id, claimToken, reason, nil, &micros)
}

func (s *PostgresStore) nack(ctx context.Context, id, claimToken, reason string, retryAt *time.Time, afterMicros *int64) (NackOutcome, error) {
	key, token, ok, verr := parseReceipt(id, claimToken)
	if verr != nil {
		return 0, fmt.Errorf("outbox: nack: %w", verr)
	}
	if !ok {
		return NackLostClaim, nil
	}
	status, err := s.qf.MessageNack(ctx, db.MessageNackParams{
		Now: s.now(), RetryAt: retryAt, RetryAfterMicros: afterMicros, LastError: validate.CleanReason(reason),
		ID: key, Scope: s.scope, ClaimToken: token, ReleaseKeys: s.cfg.releaseKeys,
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return NackLostClaim, nil
	case err != nil:
		return 0, fmt.Errorf("outbox: nack %s: %w", id, err)
	case Status(status) == StatusDeadLetter:
		return NackDeadLettered, nil
	}
	return NackRequeued, nil
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
	n, err := s.qf.MessageDeadLetter(ctx, db.MessageDeadLetterParams{
		Now: s.now(), LastError: validate.CleanReason(reason), ID: key, Scope: s.scope, ClaimToken: token,
		ReleaseKeys: s.cfg.releaseKeys,
	})
	if err != nil {
		return false, fmt.Errorf("outbox: dead-letter %s: %w", id, err)
	}
	return n == 1, nil
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

// List returns the scope's messages matching f, oldest first, at most
// f.Limit of them (see ListFilter for defaults, caps and paging).
func (s *PostgresStore) List(ctx context.Context, f ListFilter) ([]Message, error) {
	if verr := f.check(); verr != nil {
		return nil, fmt.Errorf("outbox: list: %w", verr)
	}
	limit, _ := validate.ListLimit(f.Limit)
	after, _ := msgid.Parse(f.AfterID)
	// Planned per execution (s.qf): the filters given are then constants, so
	// the planner can use the partial and dedupe indexes they match.
	var rows []db.PgoutboxMessage
	var err error
	switch f.Status {
	case StatusPending, StatusClaimed, StatusDeadLetter:
		rows, err = s.qf.MessageListLive(ctx, db.MessageListLiveParams{
			Scope: s.scope, Status: string(f.Status), Lane: optional(f.Lane), Target: optional(f.Target),
			OrderingKey: optional(f.OrderingKey), DedupeKey: optional(f.DedupeKey), ErrorContains: f.ErrorContains,
			AfterID: after, Max: int32(limit), //nolint:gosec // ListLimit bounds it by MaxListLimit
		})
	default:
		rows, err = s.qf.MessageList(ctx, db.MessageListParams{
			Scope: s.scope, Status: optional(string(f.Status)), Lane: optional(f.Lane), Target: optional(f.Target),
			OrderingKey: optional(f.OrderingKey), DedupeKey: optional(f.DedupeKey), ErrorContains: f.ErrorContains,
			AfterID: after, Max: int32(limit), //nolint:gosec // ListLimit bounds it by MaxListLimit
		})
	}
	if err != nil {
		return nil, fmt.Errorf("outbox: list: %w", err)
	}
	out := make([]Message, len(rows))
	for i, row := range rows {
		out[i] = toMessage(row)
	}
	return out, nil
}

// Get returns one message of the store's scope by id, or ErrNotFound.
func (s *PostgresStore) Get(ctx context.Context, id string) (Message, error) {
	if verr := validate.ID("id", id); verr != nil {
		return Message{}, fmt.Errorf("outbox: get: %w", verr)
	}
	key, ok := msgid.Parse(id)
	if !ok {
		return Message{}, fmt.Errorf("outbox: get %q: %w", id, ErrNotFound)
	}
	row, err := s.qf.MessageGet(ctx, db.MessageGetParams{ID: key, Scope: s.scope})
	if errors.Is(err, pgx.ErrNoRows) {
		return Message{}, fmt.Errorf("outbox: get %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Message{}, fmt.Errorf("outbox: get %s: %w", id, err)
	}
	return toMessage(row), nil
}

// NextDue says how long, on the store's clock, until the earliest pending
// message of lane and target that is not yet due becomes due, and false
// when none is scheduled. An idle relay sleeps until then rather than until
// its next poll (relay.DueScheduler).
func (s *PostgresStore) NextDue(ctx context.Context, lane, target string) (time.Duration, bool, error) {
	micros, err := s.qf.MessageNextDue(ctx, db.MessageNextDueParams{Now: s.now(), Scope: s.scope, Lane: lane, Target: target})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("outbox: next due: %w", err)
	}
	return time.Duration(micros) * time.Microsecond, true, nil
}

// parseReceipt turns the id and token a consumer holds into their database
// forms. Blank values are a caller's bug and fail validation; values that
// cannot be an id or token this store issued are simply not held (ok false).
func parseReceipt(id, claimToken string) (key int64, token pgtype.UUID, ok bool, err *ValidationError) {
	if err := validate.Receipt(id, claimToken); err != nil {
		return 0, token, false, err
	}
	key, idOK := msgid.Parse(id)
	token, tokenOK := parseToken(claimToken)
	return key, token, idOK && tokenOK, nil
}

// parseToken accepts the canonical 36-character form of a UUID.
func parseToken(s string) (pgtype.UUID, bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return pgtype.UUID{}, false
	}
	// Decoded here rather than with pgtype.UUID.Scan, which builds the
	// dashless string and decodes it into a fresh slice: two allocations
	// for every receipt of every ack. Hex digits of either case, as there.
	u := pgtype.UUID{Valid: true}
	for i, j := 0, 0; i < len(s); j++ {
		if i == 8 || i == 13 || i == 18 || i == 23 { // the dashes, checked above
			i++
		}
		hi, okHi := hexDigit(s[i])
		lo, okLo := hexDigit(s[i+1])
		if !okHi || !okLo {
			return pgtype.UUID{}, false
		}
		u.Bytes[j] = hi<<4 | lo
		i += 2
	}
	return u, true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// claimText formats the ids and claim tokens of the claimed rows of a claim
// into one string, which cutClaimText then cuts row by row: one allocation
// per claim instead of two per message. A message's ID and ClaimToken are
// substrings of it, and keep it alive (about 45 bytes per message of the
// claim) while either is referenced.
func claimText(rows []db.MessageClaimRow) string {
	n := 0
	for _, row := range rows {
		if Status(row.Status) == StatusClaimed {
			n += decimalLen(row.ID) + uuidLen(row.ClaimToken)
		}
	}
	var b strings.Builder
	b.Grow(n)
	var buf [36]byte
	for _, row := range rows {
		if Status(row.Status) != StatusClaimed {
			continue
		}
		b.Write(strconv.AppendInt(buf[:0], row.ID, 10))
		if row.ClaimToken.Valid {
			b.Write(appendUUID(buf[:0], row.ClaimToken.Bytes))
		}
	}
	return b.String()
}

// cutClaimText takes the id and token of the next claimed row off the front
// of text, which claimText wrote, and returns the rest.
func cutClaimText(text string, id int64, token pgtype.UUID) (idText, tokenText, rest string) {
	i := decimalLen(id)
	t := i + uuidLen(token)
	return text[:i], text[i:t], text[t:]
}

func decimalLen(n int64) int {
	var buf [20]byte
	return len(strconv.AppendInt(buf[:0], n, 10))
}

// uuidLen is the length of token's String form.
func uuidLen(token pgtype.UUID) int {
	if !token.Valid {
		return 0
	}
	return 36
}

// appendUUID appends b in the canonical form, lower-case hex with dashes
// after 4, 6, 8 and 10 bytes, as pgtype.UUID.String writes it.
func appendUUID(dst []byte, b [16]byte) []byte {
	const digits = "0123456789abcdef"
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, digits[c>>4], digits[c&0xf])
	}
	return dst
}

func toMessage(r db.PgoutboxMessage) Message {
	return messageFrom(r, msgid.Format(r.ID), r.ClaimToken.String())
}

// messageFrom is toMessage with the id and claim token already formatted.
func messageFrom(r db.PgoutboxMessage, id, claimToken string) Message {
	// The column holds what headers.Encode wrote; a value it cannot read
	// was written by hand, and is shown as no headers rather than failing
	// the whole read.
	h, _ := headers.Decode(r.Headers)
	m := Message{
		ID:          id,
		Lane:        r.Lane,
		Target:      r.Target,
		Payload:     r.Payload,
		DedupeKey:   deref(r.DedupeKey),
		OrderingKey: deref(r.OrderingKey),
		// The column is only ever set on a dead letter (and cleared by
		// Redrive); the status check keeps the documented promise even for
		// a row written by hand.
		OrderingKeyReleased: r.OrderingKeyReleased && r.Status == string(StatusDeadLetter),
		Headers:             h,
		Status:              Status(r.Status),
		AvailableAt:         r.AvailableAt,
		AttemptCount:        int(r.AttemptCount),
		MaxAttempts:         int(r.MaxAttempts),
		ClaimedBy:           deref(r.ClaimedBy),
		ClaimToken:          claimToken,
		LastError:           deref(r.LastError),
		CreatedAt:           r.CreatedAt,
		UpdatedAt:           r.UpdatedAt,
	}
	if r.LeaseExpiresAt != nil {
		m.LeaseExpiresAt = *r.LeaseExpiresAt
	}
	return m
}

// optional maps "" to NULL, meaning "any" in a filter.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
