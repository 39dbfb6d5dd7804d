// Package memstore is an in-memory outbox store for unit tests of code that
// uses pgoutbox: the same semantics as outbox.PostgresStore (validation,
// dedupe, claims, fencing, leases, poison messages, ordering keys, headers,
// scopes), checked by the same conformance suite (package storetest) and a
// model test that runs both side by side, without a database.
//
// It is safe for concurrent use and can drive a relay.Relay, including its
// wake-ups (it implements relay.Wakeups). It keeps everything in memory and
// is not meant for production: nothing survives the process.
package memstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/pgoutbox/pgoutbox/internal/headers"
	"github.com/pgoutbox/pgoutbox/internal/keywalk"
	"github.com/pgoutbox/pgoutbox/internal/msgid"
	"github.com/pgoutbox/pgoutbox/internal/validate"
	"github.com/pgoutbox/pgoutbox/internal/wakeup"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// Store is an in-memory outbox store. The zero value is not usable; call New.
type Store struct {
	st    *state
	scope string
}

// row is a stored message and what PostgresStore keeps beside it.
type row struct {
	outbox.Message
	scope     string
	requested time.Time // the AvailableAt the producer asked for; zero when none
}

// state is shared by a store and its scoped views.
type state struct {
	mu          sync.Mutex
	clock       func() time.Time
	propagator  propagation.TextMapPropagator
	releaseKeys bool
	nextID      int64
	rows        map[int64]*row
	keyCursors  map[string]*keywalk.Places // wakeup.Key -> each claimer's place in the keys
	subs        map[string]map[chan relay.Wakeup]struct{}
}

// Option configures a Store.
type Option func(*state)

// WithClock makes the store read time from now (default time.Now), like
// outbox.WithClock.
func WithClock(now func() time.Time) Option {
	return func(s *state) {
		if now != nil {
			s.clock = now
		}
	}
}

// WithPropagator adds the caller's trace context to each enqueued message's
// headers, like outbox.WithPropagator.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(s *state) { s.propagator = p }
}

// WithSkipDeadLetters makes a dead-lettered message release its ordering key
// at once, like outbox.WithSkipDeadLetters.
func WithSkipDeadLetters(on bool) Option {
	return func(s *state) { s.releaseKeys = on }
}

// New returns an empty store.
func New(opts ...Option) *Store {
	st := &state{
		clock: time.Now, rows: map[int64]*row{}, keyCursors: map[string]*keywalk.Places{},
		subs: map[string]map[chan relay.Wakeup]struct{}{},
	}
	for _, o := range opts {
		o(st)
	}
	return &Store{st: st}
}

// Scoped returns a view of one tenant scope, as outbox.PostgresStore.Scoped.
func (s *Store) Scoped(scope string) (*Store, error) {
	if err := validate.Scope(scope); err != nil {
		return nil, fmt.Errorf("memstore: scoped: %w", err)
	}
	if s.scope != "" {
		return nil, fmt.Errorf("memstore: scoped: %w",
			validate.Invalid("scope", "the store is already scoped to %q and scopes do not nest", s.scope))
	}
	return &Store{st: s.st, scope: scope}, nil
}

// Scope returns the store's scope id, "" for the unscoped store.
func (s *Store) Scope() string { return s.scope }

// now is the store's clock at the database's precision.
func (st *state) now() time.Time { return st.clock().Truncate(time.Microsecond) }

var _ outbox.Store = (*Store)(nil)

// Enqueue implements outbox.Store.
func (s *Store) Enqueue(ctx context.Context, d outbox.Draft) (outbox.EnqueueResult, error) {
	res, err := s.EnqueueMany(ctx, []outbox.Draft{d})
	if err != nil {
		return outbox.EnqueueResult{}, unbatch(err)
	}
	return res[0], nil
}

// EnqueueMany stores a batch atomically, as outbox.PostgresStore.EnqueueMany.
func (s *Store) EnqueueMany(ctx context.Context, drafts []outbox.Draft) ([]outbox.EnqueueResult, error) {
	if err := validate.BatchSize("drafts", len(drafts)); err != nil {
		return nil, fmt.Errorf("memstore: enqueue many: %w", err)
	}
	for i, d := range drafts {
		if err := d.Validate(); err != nil {
			return nil, &batchError{i, err}
		}
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	results := make([]outbox.EnqueueResult, len(drafts))
	var fresh []*row
	for i, d := range drafts {
		if d.DedupeKey != "" {
			if held := st.holder(s.scope, d, fresh); held != nil {
				if field := st.differs(d, held); field != "" {
					return nil, &batchError{i, &outbox.ConflictError{DedupeKey: d.DedupeKey, Field: field, Existing: clone(held)}}
				}
				results[i] = outbox.EnqueueResult{Message: clone(held), Deduplicated: true}
				continue
			}
		}
		maxAttempts := d.MaxAttempts
		if maxAttempts == 0 {
			maxAttempts = outbox.DefaultMaxAttempts
		}
		r := &row{scope: s.scope, Message: outbox.Message{
			ID: msgid.Format(st.nextID + int64(len(fresh)) + 1), Lane: d.Lane, Target: d.Target,
			Payload: slices.Clone(d.Payload), DedupeKey: d.DedupeKey, OrderingKey: d.OrderingKey,
			Headers:     stored(headers.Inject(ctx, st.propagator, d.Headers)),
			Status:      outbox.StatusPending,
			AvailableAt: now, MaxAttempts: maxAttempts, CreatedAt: now, UpdatedAt: now,
		}}
		if !d.AvailableAt.IsZero() {
			r.AvailableAt = d.AvailableAt.Truncate(time.Microsecond)
			r.requested = r.AvailableAt
		}
		fresh = append(fresh, r)
		results[i] = outbox.EnqueueResult{Message: clone(r)}
	}
	for _, r := range fresh {
		st.nextID++
		st.rows[st.nextID] = r
		st.wake(s.scope, r.Lane, r.Target)
	}
	return results, nil
}

// stored is a copy of h as the store keeps it: nil when empty.
func stored(h map[string]string) map[string]string {
	if len(h) == 0 {
		return nil
	}
	return maps.Clone(h)
}

// holder finds the message holding d's dedupe key, among stored rows of the
// scope and the batch's own new ones.
func (st *state) holder(scope string, d outbox.Draft, fresh []*row) *row {
	match := func(r *row) bool {
		return r.scope == scope && r.Lane == d.Lane && r.Target == d.Target && r.DedupeKey == d.DedupeKey
	}
	for _, r := range st.rows {
		if match(r) {
			return r
		}
	}
	for _, r := range fresh {
		if match(r) {
			return r
		}
	}
	return nil
}

// differs names the first part of d that differs from the message holding
// its key, by the rules of outbox.PostgresStore.Enqueue: what the producer
// set, not what deliveries moved.
func (st *state) differs(d outbox.Draft, r *row) string {
	maxAttempts := d.MaxAttempts
	if maxAttempts == 0 {
		maxAttempts = outbox.DefaultMaxAttempts
	}
	switch {
	case !jsonEqual(d.Payload, r.Payload):
		return "payload"
	case maxAttempts != r.MaxAttempts:
		return "max_attempts"
	case d.OrderingKey != r.OrderingKey:
		return "ordering_key"
	case !headers.SameDraft(d.Headers, r.Headers, st.propagator):
		return "headers"
	case !d.AvailableAt.IsZero() && !d.AvailableAt.Truncate(time.Microsecond).Equal(r.requested):
		return "available_at"
	}
	return ""
}

// batchError is a failure of one draft in a batch.
type batchError struct {
	index int
	err   error
}

func (e *batchError) Error() string {
	return fmt.Sprintf("memstore: enqueue many: draft %d: %v", e.index, e.err)
}
func (e *batchError) Unwrap() error { return e.err }

// unbatch turns a batch error of a one-draft batch into Enqueue's error.
func unbatch(err error) error {
	var b *batchError
	if errors.As(err, &b) {
		return fmt.Errorf("memstore: enqueue: %w", b.err)
	}
	return err
}

// Claim implements outbox.Store with the statement's exact rules: up to
// Limit expired leases, up to Limit due unkeyed messages and up to Limit
// claimable heads of ordering keys (walked round robin from the last key
// that claimer served) are candidates; expired ones without attempts left are
// dead-lettered, and the oldest Limit of the rest are claimed.
func (s *Store) Claim(ctx context.Context, r outbox.ClaimRequest) ([]outbox.Message, error) {
	claimed, _, err := s.ClaimAndAck(ctx, r, nil)
	return claimed, err
}

// ClaimAndAck acks and claims in one step, as
// outbox.PostgresStore.ClaimAndAck. As in its single statement, the claim
// sees the acked messages as they were before the ack: a head acked here
// lets its key's next message go at the next claim, not in this one.
func (s *Store) ClaimAndAck(_ context.Context, r outbox.ClaimRequest, acks []outbox.Receipt) ([]outbox.Message, []bool, error) {
	if err := r.Validate(); err != nil {
		return nil, nil, fmt.Errorf("memstore: claim: %w", err)
	}
	if err := checkReceipts(acks); err != nil {
		return nil, nil, fmt.Errorf("memstore: claim: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	held := s.heldReceipts(acks)
	acking := map[int64]bool{}
	for i, ok := range held {
		if ok {
			id, _ := msgid.Parse(acks[i].ID)
			acking[id] = true
		}
	}
	var expired, due []int64
	for id, m := range st.rows {
		if m.scope != s.scope || m.Lane != r.Lane || m.Target != r.Target {
			continue
		}
		switch {
		case m.Status == outbox.StatusClaimed && !m.LeaseExpiresAt.After(now) && !acking[id]:
			expired = append(expired, id)
		case m.Status == outbox.StatusPending && m.OrderingKey == "" && !m.AvailableAt.After(now):
			due = append(due, id)
		}
	}
	expired = st.oldest(expired, r.Limit)
	due = st.oldest(due, r.Limit)
	heads := s.claimableHeads(r, now)
	var candidates []int64
	for _, id := range expired {
		m := st.rows[id]
		if m.AttemptCount >= m.MaxAttempts {
			st.deadLetter(m, fmt.Sprintf("lease expired after %d attempts", m.AttemptCount), now)
			continue
		}
		candidates = append(candidates, id)
	}
	candidates = st.oldest(append(append(candidates, due...), heads...), r.Limit)
	out := make([]outbox.Message, 0, len(candidates))
	served := make([]string, 0, len(candidates))
	for _, id := range candidates {
		m := st.rows[id]
		m.Status, m.AttemptCount, m.ClaimedBy = outbox.StatusClaimed, m.AttemptCount+1, r.ConsumerID
		m.ClaimToken, m.LeaseExpiresAt, m.UpdatedAt = newToken(), now.Add(r.Lease.Truncate(time.Microsecond)), now
		out = append(out, clone(m))
		served = append(served, m.OrderingKey)
	}
	places := st.places(wakeup.Key(s.scope, r.Lane, r.Target))
	places.Set(r.ConsumerID, keywalk.Next(places.Get(r.ConsumerID), served))
	s.ack(acks, held, now)
	return out, held, nil
}

// claimableHeads returns the heads of the ordering keys of r's lane and
// target that are pending and due, in the order of the claim's walk (from
// the key after the last one served, wrapping around), at most r.Limit.
func (s *Store) claimableHeads(r outbox.ClaimRequest, now time.Time) []int64 {
	st := s.st
	heads := map[string]*row{}
	ids := map[*row]int64{}
	for id, m := range st.rows {
		if m.scope != s.scope || m.Lane != r.Lane || m.Target != r.Target || !m.HoldsOrderingKey() {
			continue
		}
		if h, ok := heads[m.OrderingKey]; !ok || id < ids[h] {
			heads[m.OrderingKey], ids[m] = m, id
		}
	}
	from := st.places(wakeup.Key(s.scope, r.Lane, r.Target)).Get(r.ConsumerID)
	keys := slices.Collect(maps.Keys(heads))
	slices.SortFunc(keys, func(a, b string) int {
		switch {
		case keywalk.Less(from, a, b):
			return -1
		case keywalk.Less(from, b, a):
			return 1
		}
		return 0
	})
	var out []int64
	for _, k := range keys {
		if h := heads[k]; h.Status == outbox.StatusPending && !h.AvailableAt.After(now) && len(out) < r.Limit {
			out = append(out, ids[h])
		}
	}
	return out
}

// deadLetter ends a message, releasing its key when the store says so.
func (st *state) deadLetter(m *row, reason string, now time.Time) {
	m.Status, m.LastError = outbox.StatusDeadLetter, reason
	m.ClaimedBy, m.ClaimToken, m.LeaseExpiresAt, m.UpdatedAt = "", "", time.Time{}, now
	m.OrderingKeyReleased = st.releaseKeys && m.OrderingKey != ""
}

// oldest sorts ids by (available_at, id) and keeps the first n.
func (st *state) oldest(ids []int64, n int) []int64 {
	slices.SortFunc(ids, func(a, b int64) int {
		if c := st.rows[a].AvailableAt.Compare(st.rows[b].AvailableAt); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	if len(ids) > n {
		ids = ids[:n]
	}
	return ids
}

// held returns the message a receipt holds in this scope, or nil.
func (s *Store) held(id, token string) *row {
	key, ok := msgid.Parse(id)
	if !ok {
		return nil
	}
	m := s.st.rows[key]
	if m == nil || m.scope != s.scope || m.Status != outbox.StatusClaimed || m.ClaimToken != token {
		return nil
	}
	return m
}

// heldReceipts reports, receipt by receipt, which ones hold their message.
func (s *Store) heldReceipts(receipts []outbox.Receipt) []bool {
	ok := make([]bool, len(receipts))
	for i, rc := range receipts {
		ok[i] = s.held(rc.ID, rc.ClaimToken) != nil
	}
	return ok
}

// ack delivers the messages of the receipts found held.
func (s *Store) ack(receipts []outbox.Receipt, held []bool, now time.Time) {
	for i, rc := range receipts {
		if !held[i] {
			continue
		}
		if m := s.held(rc.ID, rc.ClaimToken); m != nil {
			m.Status, m.ClaimedBy, m.ClaimToken, m.LeaseExpiresAt, m.UpdatedAt = outbox.StatusDelivered, "", "", time.Time{}, now
		}
	}
}

// Ack implements outbox.Store.
func (s *Store) Ack(ctx context.Context, id, claimToken string) (bool, error) {
	if err := validate.Receipt(id, claimToken); err != nil {
		return false, fmt.Errorf("memstore: ack: %w", err)
	}
	ok, err := s.AckMany(ctx, []outbox.Receipt{{ID: id, ClaimToken: claimToken}})
	if err != nil {
		return false, err
	}
	return ok[0], nil
}

// AckMany acks a batch, as outbox.PostgresStore.AckMany: each receipt is
// judged on its own, so of a stale and the current receipt of one message
// the current one acks it.
func (s *Store) AckMany(_ context.Context, receipts []outbox.Receipt) ([]bool, error) {
	if err := checkReceipts(receipts); err != nil {
		return nil, fmt.Errorf("memstore: ack: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	held := s.heldReceipts(receipts)
	s.ack(receipts, held, st.now())
	return held, nil
}

// Nack implements outbox.Store.
func (s *Store) Nack(_ context.Context, id, claimToken, reason string, retryAt time.Time) (outbox.NackOutcome, error) {
	if err := validate.Receipt(id, claimToken); err != nil {
		return 0, fmt.Errorf("memstore: nack: %w", err)
	}
	if !retryAt.IsZero() {
		if err := validate.Time("retry_at", retryAt); err != nil {
			return 0, fmt.Errorf("memstore: nack: %w", err)
		}
	}
	return s.nack(id, claimToken, reason, func(now time.Time) time.Time {
		if retryAt.IsZero() {
			return now
		}
		return retryAt.Truncate(time.Microsecond)
	}), nil
}

// NackAfter is Nack with a delay on the store's clock, as
// outbox.PostgresStore.NackAfter.
func (s *Store) NackAfter(_ context.Context, id, claimToken, reason string, delay time.Duration) (outbox.NackOutcome, error) {
	if err := validate.Receipt(id, claimToken); err != nil {
		return 0, fmt.Errorf("memstore: nack: %w", err)
	}
	if err := validate.RetryDelay(delay); err != nil {
		return 0, fmt.Errorf("memstore: nack: %w", err)
	}
	return s.nack(id, claimToken, reason, func(now time.Time) time.Time {
		return now.Add(delay.Truncate(time.Microsecond))
	}), nil
}

func (s *Store) nack(id, token, reason string, retryAt func(now time.Time) time.Time) outbox.NackOutcome {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	m := s.held(id, token)
	if m == nil {
		return outbox.NackLostClaim
	}
	now := st.now()
	if m.AttemptCount >= m.MaxAttempts {
		st.deadLetter(m, validate.CleanReason(reason), now)
		return outbox.NackDeadLettered
	}
	m.LastError, m.ClaimedBy, m.ClaimToken, m.LeaseExpiresAt, m.UpdatedAt = validate.CleanReason(reason), "", "", time.Time{}, now
	m.Status, m.AvailableAt = outbox.StatusPending, retryAt(now)
	return outbox.NackRequeued
}

// DeadLetter is a permanent failure, as outbox.PostgresStore.DeadLetter.
func (s *Store) DeadLetter(_ context.Context, id, claimToken, reason string) (bool, error) {
	if err := validate.Receipt(id, claimToken); err != nil {
		return false, fmt.Errorf("memstore: dead-letter: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	m := s.held(id, claimToken)
	if m == nil {
		return false, nil
	}
	st.deadLetter(m, validate.CleanReason(reason), st.now())
	return true, nil
}

// ExtendLease extends one claim's lease, as outbox.PostgresStore.ExtendLease.
func (s *Store) ExtendLease(ctx context.Context, id, claimToken string, lease time.Duration) (bool, error) {
	if err := validate.Receipt(id, claimToken); err != nil {
		return false, fmt.Errorf("memstore: extend lease: %w", err)
	}
	ok, err := s.ExtendLeases(ctx, []outbox.Receipt{{ID: id, ClaimToken: claimToken}}, lease)
	if err != nil {
		return false, err
	}
	return ok[0], nil
}

// ExtendLeases extends a batch of leases, as outbox.PostgresStore.ExtendLeases.
func (s *Store) ExtendLeases(_ context.Context, receipts []outbox.Receipt, lease time.Duration) ([]bool, error) {
	if err := validate.Lease(lease); err != nil {
		return nil, fmt.Errorf("memstore: extend lease: %w", err)
	}
	if err := checkReceipts(receipts); err != nil {
		return nil, fmt.Errorf("memstore: extend lease: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	ok := s.heldReceipts(receipts)
	for i, rc := range receipts {
		if ok[i] {
			m := s.held(rc.ID, rc.ClaimToken)
			m.LeaseExpiresAt, m.UpdatedAt = now.Add(lease.Truncate(time.Microsecond)), now
		}
	}
	return ok, nil
}

func checkReceipts(receipts []outbox.Receipt) error {
	if err := validate.BatchSize("receipts", len(receipts)); err != nil {
		return err
	}
	for i, rc := range receipts {
		if err := validate.Receipt(rc.ID, rc.ClaimToken); err != nil {
			return validate.In(fmt.Sprintf("receipts[%d]", i), err)
		}
	}
	return nil
}

// List implements outbox.Store.
func (s *Store) List(_ context.Context, f outbox.ListFilter) ([]outbox.Message, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("memstore: list: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	after, _ := msgid.Parse(f.AfterID)
	var ids []int64
	for id, m := range st.rows {
		if m.scope == s.scope && id > after && (f.Status == "" || m.Status == f.Status) &&
			(f.Lane == "" || m.Lane == f.Lane) && (f.Target == "" || m.Target == f.Target) &&
			(f.OrderingKey == "" || m.OrderingKey == f.OrderingKey) &&
			(f.DedupeKey == "" || m.DedupeKey == f.DedupeKey) &&
			(f.ErrorContains == "" || strings.Contains(m.LastError, f.ErrorContains)) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if n, _ := validate.ListLimit(f.Limit); len(ids) > n {
		ids = ids[:n]
	}
	out := make([]outbox.Message, len(ids))
	for i, id := range ids {
		out[i] = clone(st.rows[id])
	}
	return out, nil
}

// Get returns one message of the scope, or outbox.ErrNotFound.
func (s *Store) Get(_ context.Context, id string) (outbox.Message, error) {
	if err := validate.ID("id", id); err != nil {
		return outbox.Message{}, fmt.Errorf("memstore: get: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	key, ok := msgid.Parse(id)
	if m := st.rows[key]; ok && m != nil && m.scope == s.scope {
		return clone(m), nil
	}
	return outbox.Message{}, fmt.Errorf("memstore: get %q: %w", id, outbox.ErrNotFound)
}

// Subscribe implements relay.Wakeups: the channel receives a wake-up on
// every enqueue of the scope, lane and target (each enqueue wakes, so no
// follow-up is needed).
func (s *Store) Subscribe(scope, lane, target string) (<-chan relay.Wakeup, func()) {
	st := s.st
	key := wakeup.Key(scope, lane, target)
	ch := make(chan relay.Wakeup, 1)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.subs[key] == nil {
		st.subs[key] = map[chan relay.Wakeup]struct{}{}
	}
	st.subs[key][ch] = struct{}{}
	return ch, func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		delete(st.subs[key], ch)
	}
}

func (st *state) wake(scope, lane, target string) {
	for ch := range st.subs[wakeup.Key(scope, lane, target)] {
		relay.Signal(ch, relay.Wakeup{})
	}
}

// NextDue implements relay.DueScheduler, as outbox.PostgresStore.NextDue:
// how long until the earliest pending unkeyed message of lane and target
// that is not yet due becomes due.
func (s *Store) NextDue(_ context.Context, lane, target string) (time.Duration, bool, error) {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	var next time.Time
	for _, m := range st.rows {
		if m.scope == s.scope && m.Lane == lane && m.Target == target && m.Status == outbox.StatusPending &&
			m.OrderingKey == "" && m.AvailableAt.After(now) && (next.IsZero() || m.AvailableAt.Before(next)) {
			next = m.AvailableAt
		}
	}
	if next.IsZero() {
		return 0, false, nil
	}
	return next.Sub(now), true, nil
}

func clone(m *row) outbox.Message {
	c := m.Message
	c.Payload = slices.Clone(m.Payload)
	c.Headers = maps.Clone(m.Headers)
	return c
}

// newToken returns a random (version 4) UUID, as gen_random_uuid does.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// places returns the claimers' places in the keys of queue (a wakeup.Key).
// The caller holds st.mu.
func (st *state) places(queue string) *keywalk.Places {
	p, ok := st.keyCursors[queue]
	if !ok {
		p = &keywalk.Places{}
		st.keyCursors[queue] = p
	}
	return p
}
