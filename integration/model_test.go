package integration

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/memstore"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/storetest"
)

// modelStore is what the model test drives in both stores.
type modelStore interface {
	storetest.Store
}

// A model-based property test: random sequences of enqueue (with and
// without dedupe keys), claim, claim-and-ack, ack (singly and in batches
// holding stale and repeated receipts), nack, extend, dead-letter, redrive
// (by lane and by ids, repeated and in other forms), ordering-key releases,
// purge, get, stats and clock jumps, on drafts with and without ordering keys
// and headers, run against PostgresStore and memstore side by side; after every step their observable states agree. Message ids and
// claim tokens differ between the stores, so the test maps one onto the
// other as they are handed out.
//
// Cases: OUTBOX_MODEL_CASES (or -rapid.checks) sets how many; make soak runs
// more.
func TestModelPostgresAgreesWithMemstore(t *testing.T) {
	d := pgtest.NewDB(t) // every case works in a scope of its own
	var cases atomic.Int64
	rapid.Check(t, func(rt *rapid.T) {
		n := cases.Add(1)
		clk := newClock()
		scope := fmt.Sprintf("model-%d-%d", time.Now().UnixNano(), n)
		pg, err := outbox.NewPostgresStore(d.Pool, outbox.WithClock(clk.Now), outbox.WithNotify(false)).Scoped(scope)
		if err != nil {
			rt.Fatal(err)
		}
		mem, err := memstore.New(memstore.WithClock(clk.Now)).Scoped(scope)
		if err != nil {
			rt.Fatal(err)
		}
		m := &model{t: rt, pg: pg, mem: mem, clk: clk, idMap: map[string]string{}}
		rt.Repeat(map[string]func(*rapid.T){
			"enqueue":     m.enqueue,
			"enqueueMany": m.enqueueMany,
			"claim":       m.claim,
			"claimAndAck": m.claimAndAck,
			"ack":         m.ack,
			"ackMany":     m.ackMany,
			"get":         m.get,
			"stats":       m.stats,
			"nack":        m.nack,
			"extend":      m.extend,
			"deadLetter":  m.deadLetter,
			"redrive":     m.redrive,
			"redriveIDs":  m.redriveIDs,
			"releaseKey":  m.releaseKey,
			"purge":       m.purge,
			"advance":     m.advance,
			"":            m.check,
		})
	})
	t.Logf("model cases run: %d", cases.Load())
}

type heldPair struct {
	pg, mem outbox.Receipt
}

type model struct {
	t     *rapid.T
	pg    modelStore
	mem   modelStore
	clk   *clock
	idMap map[string]string // pg id -> memstore id
	held  []heldPair        // claims handed out (current or stale)
}

var modelTargets = []string{"a", "b"}

func (m *model) draft(t *rapid.T) outbox.Draft {
	d := outbox.Draft{
		Lane:        "lane",
		Target:      rapid.SampledFrom(modelTargets).Draw(t, "target"),
		Payload:     json.RawMessage(fmt.Sprintf(`{"v":%d}`, rapid.IntRange(0, 3).Draw(t, "payload"))),
		MaxAttempts: rapid.IntRange(0, 3).Draw(t, "maxAttempts"),
	}
	if rapid.Bool().Draw(t, "keyed") {
		d.DedupeKey = fmt.Sprintf("k%d", rapid.IntRange(0, 3).Draw(t, "key"))
	}
	if rapid.IntRange(0, 2).Draw(t, "ordered") > 0 {
		d.OrderingKey = rapid.SampledFrom([]string{"x", "y", "z"}).Draw(t, "orderingKey")
	}
	if rapid.IntRange(0, 3).Draw(t, "withHeaders") == 0 {
		d.Headers = map[string]string{"h": fmt.Sprint(rapid.IntRange(0, 1).Draw(t, "header"))}
	}
	if rapid.Bool().Draw(t, "delayed") {
		d.AvailableAt = m.clk.Now().Add(time.Duration(rapid.IntRange(-5, 5).Draw(t, "delay")) * time.Second)
	}
	return d
}

// same checks that both stores answered alike: both errors of the same kind,
// or both results.
func same(t *rapid.T, what string, pgErr, memErr error) bool {
	if (pgErr == nil) != (memErr == nil) {
		t.Fatalf("%s: postgres %v, memstore %v", what, pgErr, memErr)
	}
	if pgErr != nil {
		for _, target := range []error{outbox.ErrValidation, outbox.ErrConflict, outbox.ErrNotFound} {
			if errorsIs(pgErr, target) != errorsIs(memErr, target) {
				t.Fatalf("%s: postgres %v, memstore %v", what, pgErr, memErr)
			}
		}
		return false
	}
	return true
}

func (m *model) mapID(t *rapid.T, pgID, memID string) {
	if prev, ok := m.idMap[pgID]; ok && prev != memID {
		t.Fatalf("postgres message %s is memstore %s and %s", pgID, prev, memID)
	}
	m.idMap[pgID] = memID
}

func (m *model) enqueue(t *rapid.T) {
	d := m.draft(t)
	a, errA := m.pg.Enqueue(t.Context(), d)
	b, errB := m.mem.Enqueue(t.Context(), d)
	if !same(t, "enqueue", errA, errB) {
		return
	}
	if a.Deduplicated != b.Deduplicated {
		t.Fatalf("enqueue: deduplicated %v vs %v", a.Deduplicated, b.Deduplicated)
	}
	m.mapID(t, a.Message.ID, b.Message.ID)
}

func (m *model) enqueueMany(t *rapid.T) {
	n := rapid.IntRange(1, 4).Draw(t, "n")
	drafts := make([]outbox.Draft, n)
	for i := range drafts {
		drafts[i] = m.draft(t)
	}
	a, errA := m.pg.EnqueueMany(t.Context(), drafts)
	b, errB := m.mem.EnqueueMany(t.Context(), drafts)
	if !same(t, "enqueue many", errA, errB) {
		return
	}
	for i := range a {
		if a[i].Deduplicated != b[i].Deduplicated {
			t.Fatalf("enqueue many [%d]: deduplicated %v vs %v", i, a[i].Deduplicated, b[i].Deduplicated)
		}
		m.mapID(t, a[i].Message.ID, b[i].Message.ID)
	}
}

func (m *model) claim(t *rapid.T) {
	r := outbox.ClaimRequest{
		Lane: "lane", Target: rapid.SampledFrom(modelTargets).Draw(t, "target"),
		Limit: rapid.IntRange(1, 4).Draw(t, "limit"), Lease: time.Duration(rapid.IntRange(1, 10).Draw(t, "lease")) * time.Second,
		ConsumerID: "model",
	}
	a, errA := m.pg.Claim(t.Context(), r)
	b, errB := m.mem.Claim(t.Context(), r)
	if !same(t, "claim", errA, errB) {
		return
	}
	if len(a) != len(b) {
		t.Fatalf("claim: %d vs %d messages", len(a), len(b))
	}
	for i := range a {
		if m.idMap[a[i].ID] != b[i].ID {
			t.Fatalf("claim [%d]: postgres %s (memstore %s) vs memstore %s", i, a[i].ID, m.idMap[a[i].ID], b[i].ID)
		}
		m.held = append(m.held, heldPair{a[i].Receipt(), b[i].Receipt()})
	}
}

// claimAndAck acks some held receipts (current or stale) and claims, in one
// call.
func (m *model) claimAndAck(t *rapid.T) {
	r := outbox.ClaimRequest{
		Lane: "lane", Target: rapid.SampledFrom(modelTargets).Draw(t, "target"),
		Limit: rapid.IntRange(1, 4).Draw(t, "limit"), Lease: time.Duration(rapid.IntRange(1, 10).Draw(t, "lease")) * time.Second,
		ConsumerID: "model",
	}
	pgAcks, memAcks := m.pickReceipts(t)
	a, okA, errA := m.pg.ClaimAndAck(t.Context(), r, pgAcks)
	b, okB, errB := m.mem.ClaimAndAck(t.Context(), r, memAcks)
	if !same(t, "claim and ack", errA, errB) {
		return
	}
	if fmt.Sprint(okA) != fmt.Sprint(okB) {
		t.Fatalf("claim and ack: acked %v vs %v", okA, okB)
	}
	if len(a) != len(b) {
		t.Fatalf("claim and ack: %d vs %d messages", len(a), len(b))
	}
	for i := range a {
		if m.idMap[a[i].ID] != b[i].ID {
			t.Fatalf("claim and ack [%d]: postgres %s (memstore %s) vs memstore %s", i, a[i].ID, m.idMap[a[i].ID], b[i].ID)
		}
		m.held = append(m.held, heldPair{a[i].Receipt(), b[i].Receipt()})
	}
}

// pickReceipts draws up to four held receipts, repeats allowed.
func (m *model) pickReceipts(t *rapid.T) (pg, mem []outbox.Receipt) {
	if len(m.held) == 0 {
		return nil, nil
	}
	for range rapid.IntRange(0, 4).Draw(t, "receipts") {
		h := m.held[rapid.IntRange(0, len(m.held)-1).Draw(t, "receipt")]
		pg, mem = append(pg, h.pg), append(mem, h.mem)
	}
	return pg, mem
}

func (m *model) ackMany(t *rapid.T) {
	pg, mem := m.pickReceipts(t)
	a, errA := m.pg.AckMany(t.Context(), pg)
	b, errB := m.mem.AckMany(t.Context(), mem)
	if same(t, "ack many", errA, errB) && fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("ack many: %v vs %v", a, b)
	}
}

// otherForm writes an id the way a careless caller might: it must name no
// message in either store.
func otherForm(t *rapid.T, id string) string {
	return rapid.SampledFrom([]string{id, "0" + id, "+" + id}).Draw(t, "form")
}

func (m *model) get(t *rapid.T) {
	if len(m.idMap) == 0 {
		t.Skip("nothing enqueued yet")
	}
	ids := make([]string, 0, len(m.idMap))
	for id := range m.idMap {
		ids = append(ids, id)
	}
	pgID := rapid.SampledFrom(ids).Draw(t, "id")
	form := otherForm(t, "")
	a, errA := m.pg.Get(t.Context(), form+pgID)
	b, errB := m.mem.Get(t.Context(), form+m.idMap[pgID])
	if same(t, "get "+form+pgID, errA, errB) && (a.Status != b.Status || a.AttemptCount != b.AttemptCount) {
		t.Fatalf("get: %+v vs %+v", a, b)
	}
}

func (m *model) redriveIDs(t *rapid.T) {
	if len(m.idMap) == 0 {
		t.Skip("nothing enqueued yet")
	}
	var pg, mem []string
	for pgID, memID := range m.idMap {
		if rapid.Bool().Draw(t, "pick") {
			form := otherForm(t, "")
			for range rapid.IntRange(1, 2).Draw(t, "times") {
				pg, mem = append(pg, form+pgID), append(mem, form+memID)
			}
		}
	}
	if len(pg) == 0 {
		t.Skip("no ids drawn")
	}
	a, errA := m.pg.Redrive(t.Context(), outbox.RedriveRequest{IDs: pg})
	b, errB := m.mem.Redrive(t.Context(), outbox.RedriveRequest{IDs: mem})
	if same(t, "redrive ids", errA, errB) && (a.Redriven != b.Redriven || len(a.NotDead) != len(b.NotDead)) {
		t.Fatalf("redrive ids: %+v vs %+v", a, b)
	}
}

func (m *model) releaseKey(t *rapid.T) {
	target := rapid.SampledFrom(modelTargets).Draw(t, "target")
	key := rapid.SampledFrom([]string{"x", "y", "z"}).Draw(t, "orderingKey")
	a, errA := m.pg.ReleaseOrderingKey(t.Context(), "lane", target, key)
	b, errB := m.mem.ReleaseOrderingKey(t.Context(), "lane", target, key)
	if same(t, "release key", errA, errB) && a != b {
		t.Fatalf("release key: %d vs %d", a, b)
	}
}

func (m *model) stats(t *rapid.T) {
	withDelivered := rapid.Bool().Draw(t, "delivered")
	a, errA := m.pg.Stats(t.Context(), withDelivered)
	b, errB := m.mem.Stats(t.Context(), withDelivered)
	if same(t, "stats", errA, errB) && fmt.Sprintf("%+v", a) != fmt.Sprintf("%+v", b) {
		t.Fatalf("stats:\npostgres %+v\nmemstore %+v", a, b)
	}
}

func (m *model) pickHeld(t *rapid.T) (heldPair, bool) {
	if len(m.held) == 0 {
		return heldPair{}, false
	}
	return m.held[rapid.IntRange(0, len(m.held)-1).Draw(t, "held")], true
}

func (m *model) ack(t *rapid.T) {
	h, ok := m.pickHeld(t)
	if !ok {
		t.Skip("nothing claimed yet")
	}
	a, errA := m.pg.Ack(t.Context(), h.pg.ID, h.pg.ClaimToken)
	b, errB := m.mem.Ack(t.Context(), h.mem.ID, h.mem.ClaimToken)
	if same(t, "ack", errA, errB) && a != b {
		t.Fatalf("ack: %v vs %v", a, b)
	}
}

func (m *model) nack(t *rapid.T) {
	h, ok := m.pickHeld(t)
	if !ok {
		t.Skip("nothing claimed yet")
	}
	delay := time.Duration(rapid.IntRange(0, 5).Draw(t, "retry")) * time.Second
	a, errA := m.pg.NackAfter(t.Context(), h.pg.ID, h.pg.ClaimToken, "boom", delay)
	b, errB := m.mem.NackAfter(t.Context(), h.mem.ID, h.mem.ClaimToken, "boom", delay)
	if same(t, "nack", errA, errB) && a != b {
		t.Fatalf("nack: %v vs %v", a, b)
	}
}

func (m *model) extend(t *rapid.T) {
	h, ok := m.pickHeld(t)
	if !ok {
		t.Skip("nothing claimed yet")
	}
	lease := time.Duration(rapid.IntRange(1, 10).Draw(t, "lease")) * time.Second
	a, errA := m.pg.ExtendLease(t.Context(), h.pg.ID, h.pg.ClaimToken, lease)
	b, errB := m.mem.ExtendLease(t.Context(), h.mem.ID, h.mem.ClaimToken, lease)
	if same(t, "extend", errA, errB) && a != b {
		t.Fatalf("extend: %v vs %v", a, b)
	}
}

func (m *model) deadLetter(t *rapid.T) {
	h, ok := m.pickHeld(t)
	if !ok {
		t.Skip("nothing claimed yet")
	}
	a, errA := m.pg.DeadLetter(t.Context(), h.pg.ID, h.pg.ClaimToken, "permanent")
	b, errB := m.mem.DeadLetter(t.Context(), h.mem.ID, h.mem.ClaimToken, "permanent")
	if same(t, "dead-letter", errA, errB) && a != b {
		t.Fatalf("dead-letter: %v vs %v", a, b)
	}
}

func (m *model) redrive(t *rapid.T) {
	r := outbox.RedriveRequest{Lane: "lane", Target: rapid.SampledFrom(modelTargets).Draw(t, "target")}
	a, errA := m.pg.Redrive(t.Context(), r)
	b, errB := m.mem.Redrive(t.Context(), r)
	if same(t, "redrive", errA, errB) && a.Redriven != b.Redriven {
		t.Fatalf("redrive: %d vs %d", a.Redriven, b.Redriven)
	}
}

func (m *model) purge(t *rapid.T) {
	r := outbox.PurgeRequest{OlderThan: time.Duration(rapid.IntRange(0, 10).Draw(t, "age")) * time.Second, DeadLetters: rapid.Bool().Draw(t, "dead")}
	a, errA := m.pg.Purge(t.Context(), r)
	b, errB := m.mem.Purge(t.Context(), r)
	if same(t, "purge", errA, errB) && a != b {
		t.Fatalf("purge: %d vs %d", a, b)
	}
}

func (m *model) advance(t *rapid.T) {
	m.clk.Advance(time.Duration(rapid.IntRange(1, 8).Draw(t, "seconds")) * time.Second)
}

// check compares everything a caller can observe: every message, in order,
// field by field.
func (m *model) check(t *rapid.T) {
	a, errA := m.pg.List(t.Context(), outbox.ListFilter{Limit: outbox.MaxListLimit})
	b, errB := m.mem.List(t.Context(), outbox.ListFilter{Limit: outbox.MaxListLimit})
	if errA != nil || errB != nil {
		t.Fatalf("list: %v / %v", errA, errB)
	}
	if len(a) != len(b) {
		t.Fatalf("postgres holds %d messages, memstore %d", len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		if m.idMap[x.ID] != y.ID {
			t.Fatalf("message %d: postgres %s maps to %s, memstore has %s", i, x.ID, m.idMap[x.ID], y.ID)
		}
		if x.Status != y.Status || x.AttemptCount != y.AttemptCount || x.MaxAttempts != y.MaxAttempts ||
			x.Lane != y.Lane || x.Target != y.Target || x.DedupeKey != y.DedupeKey || x.LastError != y.LastError ||
			x.OrderingKey != y.OrderingKey || fmt.Sprint(x.Headers) != fmt.Sprint(y.Headers) ||
			!x.AvailableAt.Equal(y.AvailableAt) || !x.LeaseExpiresAt.Equal(y.LeaseExpiresAt) ||
			!x.CreatedAt.Equal(y.CreatedAt) || !x.UpdatedAt.Equal(y.UpdatedAt) ||
			(x.ClaimToken == "") != (y.ClaimToken == "") || !jsonSame(x.Payload, y.Payload) {
			t.Fatalf("message %d differs:\npostgres %+v\nmemstore %+v", i, x, y)
		}
	}
}

func jsonSame(a, b json.RawMessage) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && jsonEqual(x, y)
}
