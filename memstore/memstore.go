// Package memstore is an in-memory outbox store for unit tests of code that
// uses pgoutbox: the same semantics as outbox.PostgresStore (validation,
// dedupe, claims, fencing, leases, poison messages, scopes), checked by the
// same conformance suite (package storetest), without a database.
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// Store is an in-memory outbox store. The zero value is not usable; call New.
type Store struct {
	st    *state
	scope string
}

// state is shared by a store and its scoped views.
type state struct {
	mu     sync.Mutex
	clock  func() time.Time
	nextID int64
	rows   map[int64]*outbox.Message
	scopes map[int64]string
	subs   map[string]map[chan struct{}]struct{}
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

// New returns an empty store.
func New(opts ...Option) *Store {
	st := &state{clock: time.Now, rows: map[int64]*outbox.Message{}, scopes: map[int64]string{}, subs: map[string]map[chan struct{}]struct{}{}}
	for _, o := range opts {
		o(st)
	}
	return &Store{st: st}
}

// Scoped returns a view of one tenant scope, as outbox.PostgresStore.Scoped.
func (s *Store) Scoped(scope string) (*Store, error) {
	if err := outbox.ValidateScope(scope); err != nil {
		return nil, fmt.Errorf("memstore: scoped: %w", err)
	}
	if s.scope != "" {
		return nil, fmt.Errorf("memstore: scoped: %w", &outbox.ValidationError{
			Field: "scope", Reason: fmt.Sprintf("the store is already scoped to %q and scopes do not nest", s.scope)})
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
func (s *Store) EnqueueMany(_ context.Context, drafts []outbox.Draft) ([]outbox.EnqueueResult, error) {
	if len(drafts) > outbox.MaxBatch {
		return nil, fmt.Errorf("memstore: enqueue many: %w", &outbox.ValidationError{
			Field: "drafts", Reason: fmt.Sprintf("at most %d per call, got %d", outbox.MaxBatch, len(drafts))})
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
	var fresh []*outbox.Message
	for i, d := range drafts {
		if d.DedupeKey != "" {
			if held := st.holder(s.scope, d, fresh); held != nil {
				if field := differs(d, held); field != "" {
					return nil, &batchError{i, &outbox.ConflictError{DedupeKey: d.DedupeKey, Field: field, Existing: *held}}
				}
				results[i] = outbox.EnqueueResult{Message: *held, Deduplicated: true}
				continue
			}
		}
		maxAttempts := d.MaxAttempts
		if maxAttempts == 0 {
			maxAttempts = outbox.DefaultMaxAttempts
		}
		available := now
		if !d.AvailableAt.IsZero() {
			available = d.AvailableAt.Truncate(time.Microsecond)
		}
		m := &outbox.Message{
			ID: strconv.FormatInt(st.nextID+int64(len(fresh))+1, 10), Lane: d.Lane, Target: d.Target,
			Payload: slices.Clone(d.Payload), DedupeKey: d.DedupeKey, Status: outbox.StatusPending,
			AvailableAt: available, MaxAttempts: maxAttempts, CreatedAt: now, UpdatedAt: now,
		}
		fresh = append(fresh, m)
		results[i] = outbox.EnqueueResult{Message: *m}
	}
	for _, m := range fresh {
		st.nextID++
		st.rows[st.nextID] = m
		st.scopes[st.nextID] = s.scope
		st.wake(s.scope, m.Lane, m.Target)
	}
	return results, nil
}

// holder finds the message holding d's dedupe key, among stored rows of the
// scope and the batch's own new ones.
func (st *state) holder(scope string, d outbox.Draft, fresh []*outbox.Message) *outbox.Message {
	match := func(m *outbox.Message) bool {
		return m.Lane == d.Lane && m.Target == d.Target && m.DedupeKey == d.DedupeKey
	}
	for id, m := range st.rows {
		if st.scopes[id] == scope && match(m) {
			return m
		}
	}
	for _, m := range fresh {
		if match(m) {
			return m
		}
	}
	return nil
}

// differs names the first part of d that differs from the message holding
// its key, by the rules of outbox.PostgresStore.Enqueue.
func differs(d outbox.Draft, m *outbox.Message) string {
	maxAttempts := d.MaxAttempts
	if maxAttempts == 0 {
		maxAttempts = outbox.DefaultMaxAttempts
	}
	switch {
	case !jsonEqual(d.Payload, m.Payload):
		return "payload"
	case maxAttempts != m.MaxAttempts:
		return "max_attempts"
	case !d.AvailableAt.IsZero() && !d.AvailableAt.Truncate(time.Microsecond).Equal(m.AvailableAt):
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
// Limit expired leases and up to Limit due messages are candidates, expired
// ones without attempts left are dead-lettered, and the oldest Limit of the
// rest are claimed.
func (s *Store) Claim(_ context.Context, r outbox.ClaimRequest) ([]outbox.Message, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("memstore: claim: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	var expired, due []int64
	for id, m := range st.rows {
		if st.scopes[id] != s.scope || m.Lane != r.Lane || m.Target != r.Target {
			continue
		}
		switch {
		case m.Status == outbox.StatusClaimed && !m.LeaseExpiresAt.After(now):
			expired = append(expired, id)
		case m.Status == outbox.StatusPending && !m.AvailableAt.After(now):
			due = append(due, id)
		}
	}
	expired = st.oldest(expired, r.Limit)
	due = st.oldest(due, r.Limit)
	var candidates []int64
	for _, id := range expired {
		m := st.rows[id]
		if m.AttemptCount >= m.MaxAttempts {
			m.Status, m.LastError = outbox.StatusDeadLetter, fmt.Sprintf("lease expired after %d attempts", m.AttemptCount)
			m.ClaimedBy, m.ClaimToken, m.LeaseExpiresAt, m.UpdatedAt = "", "", time.Time{}, now
			continue
		}
		candidates = append(candidates, id)
	}
	candidates = st.oldest(append(candidates, due...), r.Limit)
	out := make([]outbox.Message, 0, len(candidates))
	for _, id := range candidates {
		m := st.rows[id]
		m.Status, m.AttemptCount, m.ClaimedBy = outbox.StatusClaimed, m.AttemptCount+1, r.ConsumerID
		m.ClaimToken, m.LeaseExpiresAt, m.UpdatedAt = newToken(), now.Add(r.Lease.Truncate(time.Microsecond)), now
		out = append(out, clone(m))
	}
	return out, nil
}

// ClaimAndAck acks then claims, as outbox.PostgresStore.ClaimAndAck.
func (s *Store) ClaimAndAck(ctx context.Context, r outbox.ClaimRequest, acks []outbox.Receipt) ([]outbox.Message, []bool, error) {
	if err := r.Validate(); err != nil {
		return nil, nil, fmt.Errorf("memstore: claim: %w", err)
	}
	acked, err := s.AckMany(ctx, acks)
	if err != nil {
		return nil, nil, err
	}
	claimed, err := s.Claim(ctx, r)
	return claimed, acked, err
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
func (s *Store) held(id, token string) *outbox.Message {
	key, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return nil
	}
	m := s.st.rows[key]
	if m == nil || s.st.scopes[key] != s.scope || m.Status != outbox.StatusClaimed || m.ClaimToken != token {
		return nil
	}
	return m
}

// Ack implements outbox.Store.
func (s *Store) Ack(ctx context.Context, id, claimToken string) (bool, error) {
	if err := outbox.ValidateReceipt(id, claimToken); err != nil {
		return false, fmt.Errorf("memstore: ack: %w", err)
	}
	ok, err := s.AckMany(ctx, []outbox.Receipt{{ID: id, ClaimToken: claimToken}})
	if err != nil {
		return false, err
	}
	return ok[0], nil
}

// AckMany acks a batch, as outbox.PostgresStore.AckMany.
func (s *Store) AckMany(_ context.Context, receipts []outbox.Receipt) ([]bool, error) {
	if err := checkReceipts(receipts); err != nil {
		return nil, fmt.Errorf("memstore: ack: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	ok := make([]bool, len(receipts))
	for i, rc := range receipts {
		if m := s.held(rc.ID, rc.ClaimToken); m != nil {
			m.Status, m.ClaimedBy, m.ClaimToken, m.LeaseExpiresAt, m.UpdatedAt = outbox.StatusDelivered, "", "", time.Time{}, now
			ok[i] = true
			continue
		}
		// The same receipt twice in a batch: acked by the first.
		for j := range i {
			if receipts[j] == rc && ok[j] {
				ok[i] = true
			}
		}
	}
	return ok, nil
}

// Nack implements outbox.Store.
func (s *Store) Nack(_ context.Context, id, claimToken, reason string, retryAt time.Time) (outbox.NackOutcome, error) {
	if err := outbox.ValidateReceipt(id, claimToken); err != nil {
		return 0, fmt.Errorf("memstore: nack: %w", err)
	}
	if !retryAt.IsZero() {
		if err := outbox.ValidateRetryTime(retryAt); err != nil {
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
	if err := outbox.ValidateReceipt(id, claimToken); err != nil {
		return 0, fmt.Errorf("memstore: nack: %w", err)
	}
	if err := outbox.ValidateRetryDelay(delay); err != nil {
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
	m.LastError, m.ClaimedBy, m.ClaimToken, m.LeaseExpiresAt, m.UpdatedAt = outbox.CleanReason(reason), "", "", time.Time{}, now
	if m.AttemptCount >= m.MaxAttempts {
		m.Status = outbox.StatusDeadLetter
		return outbox.NackDeadLettered
	}
	m.Status, m.AvailableAt = outbox.StatusPending, retryAt(now)
	return outbox.NackRequeued
}

// DeadLetter is a permanent failure, as outbox.PostgresStore.DeadLetter.
func (s *Store) DeadLetter(_ context.Context, id, claimToken, reason string) (bool, error) {
	if err := outbox.ValidateReceipt(id, claimToken); err != nil {
		return false, fmt.Errorf("memstore: dead-letter: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	m := s.held(id, claimToken)
	if m == nil {
		return false, nil
	}
	m.Status, m.LastError = outbox.StatusDeadLetter, outbox.CleanReason(reason)
	m.ClaimedBy, m.ClaimToken, m.LeaseExpiresAt, m.UpdatedAt = "", "", time.Time{}, st.now()
	return true, nil
}

// ExtendLease extends one claim's lease, as outbox.PostgresStore.ExtendLease.
func (s *Store) ExtendLease(ctx context.Context, id, claimToken string, lease time.Duration) (bool, error) {
	if err := outbox.ValidateReceipt(id, claimToken); err != nil {
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
	if err := outbox.ValidateLease(lease); err != nil {
		return nil, fmt.Errorf("memstore: extend lease: %w", err)
	}
	if err := checkReceipts(receipts); err != nil {
		return nil, fmt.Errorf("memstore: extend lease: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	ok := make([]bool, len(receipts))
	for i, rc := range receipts {
		if m := s.held(rc.ID, rc.ClaimToken); m != nil {
			m.LeaseExpiresAt, m.UpdatedAt = now.Add(lease.Truncate(time.Microsecond)), now
			ok[i] = true
		}
	}
	return ok, nil
}

func checkReceipts(receipts []outbox.Receipt) error {
	if len(receipts) > outbox.MaxBatch {
		return &outbox.ValidationError{Field: "receipts", Reason: fmt.Sprintf("at most %d per call, got %d", outbox.MaxBatch, len(receipts))}
	}
	for i, rc := range receipts {
		if err := outbox.ValidateReceipt(rc.ID, rc.ClaimToken); err != nil {
			var verr *outbox.ValidationError
			if errors.As(err, &verr) {
				return &outbox.ValidationError{Field: fmt.Sprintf("receipts[%d].%s", i, verr.Field), Reason: verr.Reason}
			}
			return err
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
	after, _ := strconv.ParseInt(f.AfterID, 10, 64)
	var ids []int64
	for id, m := range st.rows {
		if st.scopes[id] == s.scope && id > after && (f.Status == "" || m.Status == f.Status) &&
			(f.Lane == "" || m.Lane == f.Lane) && (f.Target == "" || m.Target == f.Target) &&
			(f.DedupeKey == "" || m.DedupeKey == f.DedupeKey) &&
			(f.ErrorContains == "" || strings.Contains(m.LastError, f.ErrorContains)) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if n := f.EffectiveLimit(); len(ids) > n {
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
	if err := outbox.ValidateID(id); err != nil {
		return outbox.Message{}, fmt.Errorf("memstore: get: %w", err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	key, err := strconv.ParseInt(id, 10, 64)
	if m := st.rows[key]; err == nil && m != nil && st.scopes[key] == s.scope {
		return clone(m), nil
	}
	return outbox.Message{}, fmt.Errorf("memstore: get %q: %w", id, outbox.ErrNotFound)
}

// Subscribe implements relay.Wakeups: the channel receives a wake-up on
// every enqueue of the scope, lane and target.
func (s *Store) Subscribe(scope, lane, target string) (<-chan struct{}, func()) {
	st := s.st
	key := scope + "\x1f" + lane + "\x1f" + target
	ch := make(chan struct{}, 1)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.subs[key] == nil {
		st.subs[key] = map[chan struct{}]struct{}{}
	}
	st.subs[key][ch] = struct{}{}
	return ch, func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		delete(st.subs[key], ch)
	}
}

func (st *state) wake(scope, lane, target string) {
	for ch := range st.subs[scope+"\x1f"+lane+"\x1f"+target] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func clone(m *outbox.Message) outbox.Message {
	c := *m
	c.Payload = slices.Clone(m.Payload)
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
