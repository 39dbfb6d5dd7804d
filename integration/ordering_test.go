package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// A later message of a key is never handed out while an earlier one may
// still commit: a second producer of the key waits for the first (the
// enqueue's advisory lock on the key), so its id is drawn after the first
// committed. Here the first transaction stays open; the second producer's
// enqueue waits; a claim meanwhile finds nothing of the key; once the first
// commits, the second goes on, and the key's messages come out in commit
// order.
func TestOrderingNoOvertakingByALateCommit(t *testing.T) {
	f := newFixture(t)
	first, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Rollback(f.ctx) }()
	a := f.enqueue(f.store.WithTx(first), keyedDraft("k", `"first"`))
	secondDone := make(chan outbox.Message, 1)
	go func() {
		res, err := outbox.NewPostgresStore(f.pool).Enqueue(context.Background(), keyedDraft("k", `"second"`))
		if err != nil {
			t.Error(err)
		}
		secondDone <- res.Message
	}()
	select {
	case m := <-secondDone:
		t.Fatalf("the second producer of the key committed %s while the first was open", m.ID)
	case <-time.After(300 * time.Millisecond):
	}
	if got := f.claim(f.store, claimReq(10, time.Minute, "c")); len(got) != 0 {
		t.Fatalf("claimed %v while the key's first message was uncommitted", got[0].Payload)
	}
	if err := first.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	b := <-secondDone
	if ai, bi := mustAtoi(t, a.ID), mustAtoi(t, b.ID); bi <= ai {
		t.Fatalf("second id %d not after first %d", bi, ai)
	}
	got := f.claim(f.store, claimReq(10, time.Minute, "c"))
	if len(got) != 1 || got[0].ID != a.ID {
		t.Fatalf("claimed %v, want only the first message %s", got, a.ID)
	}
	if ok, err := f.store.Ack(f.ctx, got[0].ID, got[0].ClaimToken); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if got := f.claim(f.store, claimReq(10, time.Minute, "c")); len(got) != 1 || got[0].ID != b.ID {
		t.Fatalf("then %v, want %s", got, b.ID)
	}
}

// The deadlock a caller can make: two transactions that enqueue to the same
// two keys in opposite orders wait for each other's key lock; PostgreSQL
// ends one with SQLSTATE 40P01 (deadlock_detected), which the caller retries
// like any deadlock, and the other commits. Enqueue keys in one order (say
// sorted) inside a transaction to avoid it.
func TestOrderingKeysLockedInOppositeOrdersDeadlock(t *testing.T) {
	f := newFixture(t)
	ta, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ta.Rollback(f.ctx) }()
	tb, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tb.Rollback(f.ctx) }()
	f.enqueue(f.store.WithTx(ta), keyedDraft("x", `1`))
	f.enqueue(f.store.WithTx(tb), keyedDraft("y", `1`))
	type result struct {
		tx  pgx.Tx
		err error
	}
	results := make(chan result, 2)
	go func() {
		_, err := f.store.WithTx(ta).Enqueue(f.ctx, keyedDraft("y", `2`))
		results <- result{ta, err}
	}()
	go func() {
		_, err := f.store.WithTx(tb).Enqueue(f.ctx, keyedDraft("x", `2`))
		results <- result{tb, err}
	}()
	var deadlocks int
	for range 2 {
		select {
		case r := <-results:
			var pgErr *pgconn.PgError
			switch {
			case errors.As(r.err, &pgErr) && pgErr.Code == pgerrcode.DeadlockDetected:
				deadlocks++
				// The victim rolls back, which lets the other go on.
				_ = r.tx.Rollback(f.ctx)
			case r.err != nil:
				t.Fatalf("unexpected error: %v", r.err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("neither transaction was ended as a deadlock victim")
		}
	}
	if deadlocks != 1 {
		t.Errorf("%d deadlock victims, want 1", deadlocks)
	}
}

// Lock mode takes keys too, with the same semantics: a batch holds only the
// head of each key, and a second batch, while the first holds a head, takes
// neither that head nor the messages behind it. Unkeyed messages come first,
// heads fill the rest of a batch.
func TestOrderingInLockMode(t *testing.T) {
	f := newFixture(t)
	k1 := f.enqueue(f.store, keyedDraft("k", `1`))
	k2 := f.enqueue(f.store, keyedDraft("k", `2`))
	o1 := f.enqueue(f.store, keyedDraft("o", `1`))
	plain := f.enqueue(f.store, draft(`"plain"`))
	a, err := f.store.LockBatch(f.ctx, lockReq(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Release(context.Background()) })
	if got := lockedIDs(a); fmt.Sprint(got) != fmt.Sprint([]string{k1.ID, plain.ID}) {
		t.Fatalf("first batch %v, want the unkeyed %s and the first head %s", got, plain.ID, k1.ID)
	}
	b, err := f.store.LockBatch(f.ctx, lockReq(10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Release(context.Background()) })
	if got := lockedIDs(b); fmt.Sprint(got) != fmt.Sprint([]string{o1.ID}) {
		t.Fatalf("second batch %v, want only the other key's head %s (k's head is locked, and holds its key)", got, o1.ID)
	}
	if _, err := a.Finish(f.ctx, []outbox.Outcome{{ID: k1.ID}, {ID: plain.ID}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(f.ctx); err != nil {
		t.Fatal(err)
	}
	c, err := f.store.LockBatch(f.ctx, lockReq(10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Release(context.Background()) })
	if got := lockedIDs(c); fmt.Sprint(got) != fmt.Sprint([]string{k2.ID, o1.ID}) {
		t.Fatalf("after the first head finished: %v, want %s and %s", got, k2.ID, o1.ID)
	}
}

func keyedDraft(key, payload string) outbox.Draft {
	d := draft(payload)
	d.OrderingKey = key
	return d
}

func lockedIDs(b *outbox.LockedBatch) []string {
	var out []string
	for _, m := range b.Messages() {
		out = append(out, m.ID)
	}
	return out
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// childOrderedRelayEnv, when set, makes the test binary run one relay of
// TestOrderingUnderFailuresAndAKilledRelay on that database until killed.
const childOrderedRelayEnv = "PGOUTBOX_CHILD_ORDERED_RELAY_URL"

const (
	orderedKeys     = 200
	orderedPerKey   = 50
	orderedRelays   = 4
	orderedLane     = "ordered"
	orderedTarget   = "projector"
	orderedFailRate = 0.1
)

// orderedPayload is what the test enqueues: which key, and the message's
// place in it.
type orderedPayload struct {
	Key string `json:"key"`
	N   int    `json:"n"`
}

// runChildOrderedRelay delivers messages and writes every handler start and
// end into ordering_ledger, in the same database: the ledger's sequence
// orders events across processes the way the database saw them, so the
// test can check, after the fact, that no two messages of a key were ever
// in flight together and that each key's messages succeeded in order. A
// handler fails at random, and then the message is retried.
func runChildOrderedRelay(url string) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	consumer := os.Getenv("PGOUTBOX_CHILD_CONSUMER")
	store := outbox.NewPostgresStore(pool)
	notifier := relay.NewNotifier(pool, nil)
	go func() { _ = notifier.Run(ctx) }()
	// A lease that lapses hands its message out again while the stalled
	// handler may still run (at least once, as the README says): the lease
	// is long enough that only a stall of over 4.5 s, which a loaded test
	// machine produced with 2 s leases, would do that.
	r, err := relay.New(store, relay.Config{
		Lane: orderedLane, Target: orderedTarget, ConsumerID: consumer, Concurrency: 16,
		Lease: 5 * time.Second, HeartbeatInterval: 500 * time.Millisecond, PollInterval: 100 * time.Millisecond,
		Wakeups: notifier, Backoff: func(int) time.Duration { return time.Duration(rand.IntN(20)) * time.Millisecond },
		Handler: func(ctx context.Context, m outbox.Message) error {
			var p orderedPayload
			if err := json.Unmarshal(m.Payload, &p); err != nil || p.Key != m.OrderingKey {
				return relay.Permanent(fmt.Errorf("payload %s under key %q", m.Payload, m.OrderingKey))
			}
			if err := writeLedger(ctx, pool, consumer, p, "start"); err != nil {
				return err
			}
			time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
			outcome, failure := "ok", error(nil)
			if rand.Float64() < orderedFailRate {
				outcome, failure = "fail", errors.New("random failure")
			}
			if err := writeLedger(ctx, pool, consumer, p, outcome); err != nil {
				return err
			}
			return failure
		},
	})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("running")
	_ = r.Run(ctx) // until SIGKILL
}

func writeLedger(ctx context.Context, pool *pgxpool.Pool, consumer string, p orderedPayload, event string) error {
	_, err := pool.Exec(ctx, `INSERT INTO ordering_ledger (consumer, key, n, event) VALUES ($1, $2, $3, $4)`, consumer, p.Key, p.N, event)
	return err
}

// Four relay processes deliver 200 keys of 50 messages each while producers
// enqueue them; handlers fail at random (and are retried), and one relay is
// killed with SIGKILL mid-run (its messages come back when their leases
// expire). Every handler start and end goes into a ledger in the database;
// afterwards the test checks that no two messages of a key were ever in
// flight together, that each key's messages succeeded in enqueue order, and
// that every message was delivered.
func TestOrderingUnderFailuresAndAKilledRelay(t *testing.T) {
	t.Parallel()
	d := pgtest.NewDB(t)
	if _, err := d.Pool.Exec(t.Context(), `CREATE TABLE ordering_ledger (
		seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, consumer text NOT NULL,
		key text NOT NULL, n int NOT NULL, event text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	children := make([]*exec.Cmd, orderedRelays)
	for i := range children {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childOrderedRelayEnv+"="+d.URL, fmt.Sprintf("PGOUTBOX_CHILD_CONSUMER=relay-%d", i))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children[i] = cmd
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}

	// Producers: each owns some keys and enqueues their messages in order,
	// interleaved with the other producers.
	store := outbox.NewPostgresStore(d.Pool)
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range orderedPerKey {
				for k := p; k < orderedKeys; k += 8 {
					key := fmt.Sprintf("key-%03d", k)
					payload, _ := json.Marshal(orderedPayload{Key: key, N: n})
					d := outbox.Draft{Lane: orderedLane, Target: orderedTarget, OrderingKey: key, Payload: payload, MaxAttempts: 1000}
					if _, err := store.Enqueue(context.Background(), d); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	total := orderedKeys * orderedPerKey
	delivered := func() int {
		var n int
		if err := d.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pgoutbox_message WHERE status = 'delivered'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	eventually(t, 2*time.Minute, "a fifth delivered before the kill", func() bool { return delivered() >= total/5 })
	victim := children[0]
	if err := victim.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = victim.Wait()
	if _, err := d.Pool.Exec(t.Context(), `INSERT INTO ordering_ledger (consumer, key, n, event) VALUES ('relay-0', '', 0, 'killed')`); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	eventually(t, 3*time.Minute, "every message delivered", func() bool { return delivered() == total })

	type event struct {
		consumer, key, what string
		n                   int
	}
	rows, err := d.Pool.Query(t.Context(), `SELECT consumer, key, n, event FROM ordering_ledger ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var events []event
	for rows.Next() {
		var e event
		if err := rows.Scan(&e.consumer, &e.key, &e.n, &e.what); err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	inFlight := map[string]map[string]int{} // key -> consumer -> n
	lastOK := map[string]int{}
	succeeded := map[string]map[int]bool{}
	var starts, fails, violations int
	killed := map[string]bool{}
	for _, e := range events {
		if killed[e.consumer] {
			// A statement the killed process sent before it died can still
			// run on the server after the "killed" row: its handlers died
			// with the process, whatever the ledger says later.
			continue
		}
		switch e.what {
		case "killed":
			killed[e.consumer] = true
			for _, byConsumer := range inFlight {
				delete(byConsumer, e.consumer) // its handlers died with it
			}
			continue
		case "start":
			starts++
			if len(inFlight[e.key]) > 0 && violations < 10 {
				violations++
				t.Errorf("key %s: message %d started by %s while %v in flight", e.key, e.n, e.consumer, inFlight[e.key])
			}
			if inFlight[e.key] == nil {
				inFlight[e.key] = map[string]int{}
			}
			inFlight[e.key][e.consumer] = e.n
		case "ok", "fail":
			delete(inFlight[e.key], e.consumer)
			if e.what == "fail" {
				fails++
				continue
			}
			if last, ok := lastOK[e.key]; ok && e.n < last && violations < 10 {
				violations++
				t.Errorf("key %s: message %d succeeded after message %d", e.key, e.n, last)
			}
			lastOK[e.key] = max(lastOK[e.key], e.n)
			if succeeded[e.key] == nil {
				succeeded[e.key] = map[int]bool{}
			}
			succeeded[e.key][e.n] = true
		}
	}
	for k := range orderedKeys {
		key := fmt.Sprintf("key-%03d", k)
		if len(succeeded[key]) != orderedPerKey {
			t.Errorf("key %s: %d of %d messages succeeded", key, len(succeeded[key]), orderedPerKey)
		}
	}
	t.Logf("%d messages, %d handler starts, %d random failures, one relay killed; no key ever had two messages in flight", total, starts, fails)
}

// Claimers that start their key walk at the same key (relays in different
// processes all start at the first key, and walk at the same pace) must not
// come back short because the other holds the first heads: a head another
// claimer has locked is passed over and the walk goes on to the next keys.
// Before, the walk stopped at the first @max claimable heads and SKIP
// LOCKED then dropped the ones held, so the second of two claimers got
// nothing while forty keys waited.
func TestConcurrentClaimersWalkPastEachOthersHeads(t *testing.T) {
	f := newFixture(t)
	const keys, limit = 40, 10
	var drafts []outbox.Draft
	for i := range keys {
		for j := range 2 {
			drafts = append(drafts, keyedDraft(fmt.Sprintf("key-%02d", i), strconv.Itoa(j)))
		}
	}
	if _, err := f.store.EnqueueMany(f.ctx, drafts); err != nil {
		t.Fatal(err)
	}
	heldKeys := func(msgs []outbox.Message) map[string]bool {
		m := map[string]bool{}
		for _, msg := range msgs {
			if m[msg.OrderingKey] {
				t.Fatalf("two messages of key %s handed out together", msg.OrderingKey)
			}
			m[msg.OrderingKey] = true
		}
		return m
	}
	// Each claimer has a store of its own (its own key cursor, as another
	// process would) and holds its claim's transaction open while the other
	// claims.
	tx := func(t *testing.T) pgx.Tx {
		tx, err := f.pool.Begin(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
		return tx
	}

	t.Run("claim", func(t *testing.T) {
		a, err := outbox.NewPostgresStore(f.pool).WithTx(tx(t)).Claim(f.ctx, claimReq(limit, time.Minute, "a"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := outbox.NewPostgresStore(f.pool).WithTx(tx(t)).Claim(f.ctx, claimReq(limit, time.Minute, "b"))
		if err != nil {
			t.Fatal(err)
		}
		ka, kb := heldKeys(a), heldKeys(b)
		if len(a) != limit || len(b) != limit {
			t.Fatalf("claimed %d and %d heads, want %d each (%d keys wait)", len(a), len(b), limit, keys)
		}
		for k := range kb {
			if ka[k] {
				t.Fatalf("key %s handed to both claimers", k)
			}
		}
	})
	t.Run("lock", func(t *testing.T) {
		a, err := outbox.NewPostgresStore(f.pool).LockBatch(f.ctx, lockReq(limit))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Release(context.Background()) })
		b, err := outbox.NewPostgresStore(f.pool).LockBatch(f.ctx, lockReq(limit))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Release(context.Background()) })
		ka, kb := heldKeys(a.Messages()), heldKeys(b.Messages())
		if len(ka) != limit || len(kb) != limit {
			t.Fatalf("locked %d and %d heads, want %d each (%d keys wait)", len(ka), len(kb), limit, keys)
		}
		for k := range kb {
			if ka[k] {
				t.Fatalf("key %s locked by both batches", k)
			}
		}
	})
}
