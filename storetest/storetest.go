// Package storetest is the conformance suite of outbox stores: one set of
// tests that outbox.PostgresStore (on real PostgreSQL) and memstore.Store
// both pass, so that unit tests written against the in-memory store hold
// against the real one.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// Store is the surface both stores implement.
type Store interface {
	outbox.Store
	Scope() string
	Get(ctx context.Context, id string) (outbox.Message, error)
	EnqueueMany(ctx context.Context, drafts []outbox.Draft) ([]outbox.EnqueueResult, error)
	AckMany(ctx context.Context, receipts []outbox.Receipt) ([]bool, error)
	NackAfter(ctx context.Context, id, claimToken, reason string, delay time.Duration) (outbox.NackOutcome, error)
	DeadLetter(ctx context.Context, id, claimToken, reason string) (bool, error)
	ExtendLease(ctx context.Context, id, claimToken string, lease time.Duration) (bool, error)
	ExtendLeases(ctx context.Context, receipts []outbox.Receipt, lease time.Duration) ([]bool, error)
	Redrive(ctx context.Context, r outbox.RedriveRequest) (outbox.RedriveResult, error)
	Purge(ctx context.Context, r outbox.PurgeRequest) (int64, error)
	PurgeCount(ctx context.Context, r outbox.PurgeRequest) (int64, error)
	Stats(ctx context.Context, withDelivered bool) ([]outbox.Stats, error)
	ReleaseOrderingKey(ctx context.Context, lane, target, key string) (int, error)
	ClaimAndAck(ctx context.Context, r outbox.ClaimRequest, acks []outbox.Receipt) ([]outbox.Message, []bool, error)
	NextDue(ctx context.Context, lane, target string) (time.Duration, bool, error)
}

// Harness makes stores for the suite.
type Harness struct {
	// New returns an empty store that reads time from now.
	New func(t *testing.T, now func() time.Time) Store
	// Scoped returns a view of s limited to scope.
	Scoped func(s Store, scope string) (Store, error)
	// NewSkippingDeadLetters returns an empty store with the opt-in policy
	// that a dead-lettered message releases its ordering key
	// (outbox.WithSkipDeadLetters); nil when the store has no such policy.
	NewSkippingDeadLetters func(t *testing.T, now func() time.Time) Store
	// Features says which guarantees beyond the core contract the store
	// gives; tests of a feature it lacks do not run.
	Features Features
}

// Features are the guarantees a store may give beyond the core contract
// (Watermill's pubsub tests take the same approach). Both stores of this
// module give all of them.
type Features struct {
	// OrderingKeys: messages of one ordering key are handed out one at a
	// time, in enqueue order (Draft.OrderingKey).
	OrderingKeys bool
	// Headers: drafts carry headers to their messages (Draft.Headers).
	Headers bool
}

func orderingKeys(h Harness) bool { return h.Features.OrderingKeys }
func headers(h Harness) bool      { return h.Features.Headers }

func skipsDeadLetters(h Harness) bool {
	return h.Features.OrderingKeys && h.NewSkippingDeadLetters != nil
}

// Test is one named conformance test. Func can also be called on its own,
// for example from a store's own test to run a single case.
type Test struct {
	Name string
	Func func(t *testing.T, h Harness)
	// Needs, when set, says whether the harness's store can run the test
	// (it has the features the test is about).
	Needs func(Harness) bool
}

// Tests returns the conformance suite, in the order Run runs it.
func Tests() []Test {
	return []Test{
		{Name: "EnqueueThenGet", Func: TestEnqueueThenGet},
		{Name: "InvalidDraftsWriteNothing", Func: TestInvalidDraftsWriteNothing},
		{Name: "Dedupe", Func: TestDedupe},
		{Name: "EnqueueManyIsAtomic", Func: TestEnqueueManyIsAtomic},
		{Name: "EnqueueReturnsTheStoredMessage", Func: TestEnqueueReturnsTheStoredMessage},
		{Name: "ClaimOrderAndFields", Func: TestClaimOrderAndFields},
		{Name: "ClaimLimitLaneTargetAndValidation", Func: TestClaimLimitLaneTargetAndValidation},
		{Name: "LeaseFencing", Func: TestLeaseFencing},
		{Name: "PoisonMessageDeadLettered", Func: TestPoisonMessageDeadLettered},
		{Name: "ConcurrentClaimsHaveOneOwner", Func: TestConcurrentClaimsHaveOneOwner},
		{Name: "ClaimAndAckAcksAnExpiredHolder", Func: TestClaimAndAckAcksAnExpiredHolder},
		{Name: "AckAndAckMany", Func: TestAckAndAckMany},
		{Name: "EachReceiptIsJudgedOnItsOwn", Func: TestEachReceiptIsJudgedOnItsOwn},
		{Name: "NackRequeueThenDeadLetter", Func: TestNackRequeueThenDeadLetter},
		{Name: "NackAfterAndDeadLetter", Func: TestNackAfterAndDeadLetter},
		{Name: "ExtendLease", Func: TestExtendLease},
		{Name: "NextDue", Func: TestNextDue},
		{Name: "ListFiltersAndLimits", Func: TestListFiltersAndLimits},
		{Name: "ListFiltersPages", Func: TestListFiltersPages},
		{Name: "ListFiltersByDedupeKeyAndError", Func: TestListFiltersByDedupeKeyAndError},
		{Name: "ListLiveStatusesPageInIDOrder", Func: TestListLiveStatusesPageInIDOrder},
		{Name: "Redrive", Func: TestRedrive},
		{Name: "RedriveNamesEachIDOnce", Func: TestRedriveNamesEachIDOnce},
		{Name: "PurgeAndStats", Func: TestPurgeAndStats},
		{Name: "StatsInByteOrder", Func: TestStatsInByteOrder},
		{Name: "PurgeFreesDedupeKeys", Func: TestPurgeFreesDedupeKeys},
		{Name: "ScopesAreIsolated", Func: TestScopesAreIsolated},
		{Name: "IDsHaveOneForm", Func: TestIDsHaveOneForm},
		{Name: "SameDraftAfterNack", Func: TestSameDraftAfterNack},
		{Name: "OrderingOneHeadPerKey", Func: TestOrderingOneHeadPerKey, Needs: orderingKeys},
		{Name: "OrderingNackedHeadHoldsKey", Func: TestOrderingNackedHeadHoldsKey, Needs: orderingKeys},
		{Name: "OrderingExpiredHeadHandedOutAgain", Func: TestOrderingExpiredHeadHandedOutAgain, Needs: orderingKeys},
		{Name: "OrderingDeadHeadHoldsKey", Func: TestOrderingDeadHeadHoldsKey, Needs: orderingKeys},
		{Name: "OrderingReleaseKey", Func: TestOrderingReleaseKey, Needs: orderingKeys},
		{Name: "OrderingSkipDeadLetters", Func: TestOrderingSkipDeadLetters, Needs: skipsDeadLetters},
		{Name: "OrderingKeyIsPerLaneTargetAndScope", Func: TestOrderingKeyIsPerLaneTargetAndScope, Needs: orderingKeys},
		{Name: "OrderingKeysTakeTurns", Func: TestOrderingKeysTakeTurns, Needs: orderingKeys},
		{Name: "OrderingDedupeAddsNothingToTheKey", Func: TestOrderingDedupeAddsNothingToTheKey, Needs: orderingKeys},
		{Name: "OrderingKeyValidationAndListing", Func: TestOrderingKeyValidationAndListing, Needs: orderingKeys},
		{Name: "HeadersRoundTrip", Func: TestHeadersRoundTrip, Needs: headers},
	}
}

// Run runs every test of the suite that the store's features allow, each
// in a parallel subtest on a fresh store.
func Run(t *testing.T, h Harness) {
	for _, tc := range Tests() {
		if tc.Needs != nil && !tc.Needs(h) {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			tc.Func(t, h)
		})
	}
}

// start gives a test a fresh store on a clock of its own.
func start(t *testing.T, h Harness) *env {
	t.Helper()
	clk := &clock{now: time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)}
	return &env{T: t, ctx: t.Context(), h: h, clk: clk, s: h.New(t, clk.Now)}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	*testing.T
	ctx context.Context
	h   Harness
	clk *clock
	s   Store
}

const lane, target = "lane", "target"

func draft(payload string) outbox.Draft {
	return outbox.Draft{Lane: lane, Target: target, Payload: json.RawMessage(payload)}
}

func req(limit int, lease time.Duration) outbox.ClaimRequest {
	return outbox.ClaimRequest{Lane: lane, Target: target, Limit: limit, Lease: lease, ConsumerID: "consumer"}
}

func (e *env) enqueue(s Store, d outbox.Draft) outbox.Message {
	e.Helper()
	r, err := s.Enqueue(e.ctx, d)
	if err != nil {
		e.Fatalf("enqueue: %v", err)
	}
	return r.Message
}

func (e *env) claim(s Store, r outbox.ClaimRequest) []outbox.Message {
	e.Helper()
	m, err := s.Claim(e.ctx, r)
	if err != nil {
		e.Fatalf("claim: %v", err)
	}
	return m
}

func (e *env) get(id string) outbox.Message {
	e.Helper()
	m, err := e.s.Get(e.ctx, id)
	if err != nil {
		e.Fatalf("get %s: %v", id, err)
	}
	return m
}

func (e *env) all() []outbox.Message {
	e.Helper()
	l, err := e.s.List(e.ctx, outbox.ListFilter{Limit: outbox.MaxListLimit})
	if err != nil {
		e.Fatal(err)
	}
	return l
}

func wantField(t *testing.T, err error, field string) {
	t.Helper()
	var verr *outbox.ValidationError
	if !errors.Is(err, outbox.ErrValidation) || !errors.As(err, &verr) || verr.Field != field {
		t.Errorf("err = %v, want ErrValidation on %s", err, field)
	}
}
