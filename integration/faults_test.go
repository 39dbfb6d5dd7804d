package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/internal/faultproxy"
	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// The fault tests run producers (enqueues in transactions, some rolled back
// on purpose) and relays at once, inject a fault, let the system recover,
// and check every message's fate against a ledger kept by the test: every
// committed message delivered at least once, no rolled-back message ever
// delivered, duplicates only where a lease expired or an ack was lost
// (counted), nothing left claimed. Clients reach Postgres through a
// faultproxy, so that the network can be cut and the server moved.

// faultLedger is what the producers and handlers did.
type faultLedger struct {
	mu         sync.Mutex
	committed  map[int]bool // the commit returned success
	rolledBack map[int]bool // rolled back on purpose, or failed before commit
	inDoubt    map[int]bool // the commit's outcome is unknown (connection lost)
	delivered  map[int]int  // handler calls per seq
	commitAt   map[int]time.Time
	latency    []time.Duration // commit to first delivery
}

func newFaultLedger() *faultLedger {
	return &faultLedger{committed: map[int]bool{}, rolledBack: map[int]bool{}, inDoubt: map[int]bool{}, delivered: map[int]int{},
		commitAt: map[int]time.Time{}}
}

// p99 is the 99th percentile of commit-to-first-delivery latency.
func (l *faultLedger) p99() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.latency) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), l.latency...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*99/100)]
}

func (l *faultLedger) mark(m map[int]bool, seq int) {
	l.mu.Lock()
	m[seq] = true
	l.mu.Unlock()
}

func (l *faultLedger) deliver(seq int) {
	l.mu.Lock()
	l.delivered[seq]++
	if at, ok := l.commitAt[seq]; ok && l.delivered[seq] == 1 {
		l.latency = append(l.latency, time.Since(at))
	}
	l.mu.Unlock()
}

type faultEnv struct {
	t       *testing.T
	ctx     context.Context
	direct  *pgxpool.Pool // straight to the server, for checks and faults
	proxy   *faultproxy.Proxy
	proxied *pgxpool.Pool // what producers and relays use
	store   *outbox.PostgresStore
	ledger  *faultLedger
	seq     atomic.Int64
	lease   time.Duration
	every   time.Duration // producer pacing; 0: as fast as possible
}

type faultConfig struct {
	producers, relays int
	lease             time.Duration
	relayMode         relay.Mode
}

// newFaultEnv puts a proxy in front of a fresh database. dbURL and direct
// default to a pgtest database.
func newFaultEnv(t *testing.T, dbURL string, direct *pgxpool.Pool, lease time.Duration) *faultEnv {
	t.Helper()
	if dbURL == "" {
		d := pgtest.NewDB(t)
		dbURL, direct = d.URL, d.Pool
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	u.Host = proxy.Addr()
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 20
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	proxied, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxied.Close)
	store, err := outbox.NewPostgresStore(proxied).Scoped("faults")
	if err != nil {
		t.Fatal(err)
	}
	return &faultEnv{t: t, ctx: t.Context(), direct: direct, proxy: proxy, proxied: proxied, store: store, ledger: newFaultLedger(), lease: lease}
}

// produce enqueues messages, each in its own transaction, until ctx ends;
// one in ten is rolled back on purpose. With e.every set it produces one
// message per interval (a steady rate), otherwise as fast as it can.
func (e *faultEnv) produce(ctx context.Context) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for ctx.Err() == nil {
		started := time.Now()
		seq := int(e.seq.Add(1))
		rollback := rng.IntN(10) == 0
		e.produceOne(seq, rollback)
		if e.every > 0 {
			time.Sleep(e.every - time.Since(started))
		} else {
			time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
		}
	}
}

func (e *faultEnv) produceOne(seq int, rollback bool) {
	ctx, cancel := context.WithTimeout(e.ctx, 3*time.Second)
	defer cancel()
	tx, err := e.proxied.Begin(ctx)
	if err != nil {
		e.ledger.mark(e.ledger.rolledBack, seq)
		return
	}
	payload, _ := json.Marshal(map[string]int{"seq": seq})
	_, err = e.store.WithTx(tx).Enqueue(ctx, outbox.Draft{Lane: "faults", Target: "t", Payload: payload})
	if err != nil || rollback {
		_ = tx.Rollback(ctx)
		e.ledger.mark(e.ledger.rolledBack, seq)
		return
	}
	if err := tx.Commit(ctx); err != nil {
		// The commit may or may not have reached the server before the
		// connection broke: the database decides.
		e.ledger.mark(e.ledger.inDoubt, seq)
		return
	}
	e.ledger.mu.Lock()
	e.ledger.committed[seq] = true
	if e.ledger.delivered[seq] == 0 {
		e.ledger.commitAt[seq] = time.Now()
	}
	e.ledger.mu.Unlock()
}

func (e *faultEnv) relayConfig(mode relay.Mode, i int) relay.Config {
	return relay.Config{
		Lane: "faults", Target: "t", Mode: mode, ConsumerID: fmt.Sprintf("fault-relay-%d", i),
		Concurrency: 8, Lease: e.lease, HeartbeatInterval: e.lease / 3, StatementTimeout: e.lease,
		PollInterval: 50 * time.Millisecond, AckInterval: 5 * time.Millisecond, DrainTimeout: time.Second,
		Backoff: func(int) time.Duration { return 10 * time.Millisecond },
		Handler: func(_ context.Context, m outbox.Message) error {
			var p struct{ Seq int }
			if err := json.Unmarshal(m.Payload, &p); err != nil {
				return relay.Permanent(err)
			}
			e.ledger.deliver(p.Seq)
			return nil
		},
	}
}

// faultReport is one row of RELIABILITY.md.
type faultReport struct {
	committed, delivered, duplicated, lost, rolledBackDelivered, stuck int
	recovery                                                           time.Duration
}

// run drives producers and relays for the given time, calls inject while
// they run, then waits for recovery and checks the ledger.
func (e *faultEnv) run(cfg faultConfig, produceFor time.Duration, inject func()) faultReport {
	t := e.t
	prodCtx, stopProducers := context.WithTimeout(e.ctx, produceFor)
	defer stopProducers()
	relayCtx, stopRelays := context.WithCancel(context.Background())
	var relays sync.WaitGroup
	for i := range cfg.relays {
		r, err := relay.New(e.store, e.relayConfig(cfg.relayMode, i))
		if err != nil {
			t.Fatal(err)
		}
		relays.Add(1)
		go func() { defer relays.Done(); _ = r.Run(relayCtx) }()
	}
	var producers sync.WaitGroup
	for range cfg.producers {
		producers.Add(1)
		go func() { defer producers.Done(); e.produce(prodCtx) }()
	}
	inject()
	faultsOver := time.Now()
	producers.Wait()

	// Recovery: every message the database holds gets delivered.
	deadline := time.Now().Add(90 * time.Second)
	for {
		present := e.presentSeqs()
		e.ledger.mu.Lock()
		missing := 0
		for seq := range present {
			if e.ledger.delivered[seq] == 0 {
				missing++
			}
		}
		e.ledger.mu.Unlock()
		if missing == 0 && e.claimedCount() == 0 {
			break
		}
		if time.Now().After(deadline) {
			stopRelays()
			relays.Wait()
			t.Fatalf("%d committed messages still undelivered 90s after the fault", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
	recovery := time.Since(faultsOver)
	stopRelays()
	relays.Wait()
	return e.check(recovery)
}

// presentSeqs are the seqs whose messages exist in the database: the
// committed ones, in-doubt commits that made it, and nothing rolled back.
func (e *faultEnv) presentSeqs() map[int]bool {
	e.t.Helper()
	direct := outbox.NewPostgresStore(e.direct)
	scoped, _ := direct.Scoped("faults")
	out := map[int]bool{}
	after := ""
	for {
		page, err := scoped.List(e.ctx, outbox.ListFilter{Limit: outbox.MaxListLimit, AfterID: after})
		if err != nil {
			e.t.Fatalf("listing: %v", err)
		}
		for _, m := range page {
			var p struct{ Seq int }
			_ = json.Unmarshal(m.Payload, &p)
			out[p.Seq] = true
		}
		if len(page) < outbox.MaxListLimit {
			return out
		}
		after = page[len(page)-1].ID
	}
}

func (e *faultEnv) claimedCount() int {
	var n int
	if err := e.direct.QueryRow(e.ctx, `SELECT count(*) FROM pgoutbox_message WHERE status = 'claimed'`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *faultEnv) check(recovery time.Duration) faultReport {
	t := e.t
	present := e.presentSeqs()
	l := e.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	var r faultReport
	r.recovery = recovery
	for seq := range l.committed {
		if !present[seq] {
			t.Errorf("seq %d committed but not in the database", seq)
		}
	}
	for seq := range present {
		if l.rolledBack[seq] {
			t.Errorf("seq %d rolled back but in the database", seq)
		}
		if !l.committed[seq] && !l.inDoubt[seq] {
			t.Errorf("seq %d in the database but never enqueued", seq)
		}
		r.committed++
		if n := l.delivered[seq]; n == 0 {
			r.lost++
			t.Errorf("seq %d committed but never delivered", seq)
		} else {
			r.delivered++
			r.duplicated += n - 1
		}
	}
	for seq, n := range l.delivered {
		if !present[seq] {
			r.rolledBackDelivered += n
			t.Errorf("seq %d delivered but never committed", seq)
		}
	}
	r.stuck = e.claimedCount()
	var undelivered int
	if err := e.direct.QueryRow(e.ctx, `SELECT count(*) FROM pgoutbox_message WHERE status <> 'delivered'`).Scan(&undelivered); err != nil {
		t.Fatal(err)
	}
	if undelivered != 0 || r.stuck != 0 {
		t.Errorf("%d messages not delivered in the database (%d claimed) after recovery", undelivered, r.stuck)
	}
	if r.committed == 0 {
		t.Error("no message was committed: the scenario tested nothing")
	}
	return r
}

func logReport(t *testing.T, fault, how string, r faultReport) {
	t.Helper()
	t.Logf("RELIABILITY | %s | %s | %d | %d | %d | %d | %s |", fault, how, r.committed, r.delivered, r.duplicated, r.lost, r.recovery.Round(10*time.Millisecond))
}

// Every backend of the database killed, five times during the run.
func TestFaultConnectionsKilled(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, "", nil, 2*time.Second)
	r := e.run(faultConfig{producers: 3, relays: 2, lease: 2 * time.Second}, 6*time.Second, func() {
		for range 5 {
			time.Sleep(time.Second)
			if _, err := e.direct.Exec(e.ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`); err != nil {
				t.Errorf("terminating backends: %v", err)
			}
		}
	})
	logReport(t, "connections killed", "pg_terminate_backend on every backend, 5 times, 1 s apart", r)
}

// The network slowed, cut for twice the lease, then black-holed (half-open)
// for twice the lease: relays must give up on dead sockets and come back.
func TestFaultNetworkLatencyCutAndHalfOpen(t *testing.T) {
	t.Parallel()
	lease := 2 * time.Second
	e := newFaultEnv(t, "", nil, lease)
	r := e.run(faultConfig{producers: 2, relays: 2, lease: lease}, 10*time.Second, func() {
		time.Sleep(500 * time.Millisecond)
		e.proxy.SetLatency(50 * time.Millisecond)
		time.Sleep(2 * time.Second)
		e.proxy.SetLatency(0)
		e.proxy.Cut()
		time.Sleep(2 * lease)
		e.proxy.Restore()
		time.Sleep(time.Second)
		e.proxy.Blackhole()
		time.Sleep(2 * lease)
		e.proxy.Restore()
	})
	logReport(t, "network slowed, cut, half-open", "proxy: +50 ms per chunk 2 s; cut 4 s (2x lease); black hole 4 s", r)
}

// Producers cancel their own contexts in the middle of Enqueue, and
// consumers in the middle of Claim: no partial rows, and no claim that
// nobody holds outlives its lease.
func TestFaultCallerContextsCancelled(t *testing.T) {
	t.Parallel()
	d := pgtest.NewDB(t)
	store := outbox.NewPostgresStore(d.Pool)
	var committed, claimedByCaller sync.Map
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range 150 {
				seq := w*1000 + i
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(20000))*time.Microsecond)
				tx, err := d.Pool.Begin(ctx)
				if err == nil {
					payload, _ := json.Marshal(map[string]int{"seq": seq})
					if _, err = store.WithTx(tx).Enqueue(ctx, outbox.Draft{Lane: "c", Target: "t", Payload: payload}); err == nil {
						if err = tx.Commit(ctx); err == nil {
							committed.Store(seq, true)
						}
					}
					if err != nil {
						_ = tx.Rollback(context.Background())
					}
				}
				cancel()
				cctx, ccancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(20000))*time.Microsecond)
				got, err := store.Claim(cctx, outbox.ClaimRequest{Lane: "c", Target: "t", Limit: 3, Lease: time.Second, ConsumerID: "c"})
				ccancel()
				if err == nil {
					for _, m := range got {
						claimedByCaller.Store(m.ID, true)
					}
				}
			}
		}()
	}
	wg.Wait()
	var rows []struct {
		id  int64
		seq int
	}
	r, err := d.Pool.Query(context.Background(), `SELECT id, (payload->>'seq')::int FROM pgoutbox_message`)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var x struct {
			id  int64
			seq int
		}
		if err := r.Scan(&x.id, &x.seq); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, x)
	}
	present := map[int]bool{}
	for _, x := range rows {
		present[x.seq] = true
	}
	missing := 0
	committed.Range(func(k, _ any) bool {
		if !present[k.(int)] {
			missing++
		}
		return true
	})
	if missing > 0 {
		t.Fatalf("%d committed enqueues have no row", missing)
	}
	// Rows whose commit raced a cancellation may exist without the caller
	// knowing; rows from transactions that did not commit may not.
	var partial int
	if err := d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pgoutbox_message WHERE payload IS NULL OR lane <> 'c'`).Scan(&partial); err != nil || partial != 0 {
		t.Fatalf("%d partial rows (%v)", partial, err)
	}
	// Claims whose caller gave up may have committed; once their lease
	// expires every undelivered message is claimable again.
	time.Sleep(1100 * time.Millisecond)
	reclaimed := 0
	for {
		got, err := store.Claim(context.Background(), outbox.ClaimRequest{Lane: "c", Target: "t", Limit: 1000, Lease: time.Minute, ConsumerID: "final"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		reclaimed += len(got)
	}
	if reclaimed != len(rows) {
		t.Fatalf("%d of %d messages claimable after the leases ran out: claims nobody holds outlived their lease", reclaimed, len(rows))
	}
	t.Logf("RELIABILITY | caller contexts cancelled | Enqueue and Claim under random 0-20 ms deadlines, 600 each | %d committed (%d known to callers) | %d claimable after the lease | 0 partial rows |",
		len(rows), countMap(&committed), reclaimed)
}

func countMap(m *sync.Map) int {
	n := 0
	m.Range(func(_, _ any) bool { n++; return true })
	return n
}

// A pool of two connections held by slow transactions, and a statement
// timeout behind a row lock: callers get a clear error within their
// deadline, and nothing deadlocks.
func TestFaultPoolExhaustionAndStatementTimeout(t *testing.T) {
	t.Parallel()
	d := pgtest.NewDB(t)
	cfg, err := pgxpool.ParseConfig(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 2
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = "200"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := outbox.NewPostgresStore(pool)
	m, err := store.Enqueue(context.Background(), draft(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.Claim(context.Background(), claimReq(1, time.Minute, "c"))
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}

	// A statement timeout: another session locks the row; the ack waits
	// for it and is cancelled by the server after 200 ms.
	locker, err := d.Pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := locker.Exec(context.Background(), `SELECT 1 FROM pgoutbox_message WHERE id = $1::bigint FOR UPDATE`, m.Message.ID); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = store.Ack(context.Background(), got[0].ID, got[0].ClaimToken)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("ack behind a lock: %v after %s; want a statement timeout within 200 ms", err, time.Since(start))
	}
	t.Logf("ack behind a held row lock: %v (after %s)", err, time.Since(start).Round(time.Millisecond))
	_ = locker.Rollback(context.Background())
	// The timed-out ack changed nothing: the owner still holds the claim.
	if ok, err := store.Ack(context.Background(), got[0].ID, got[0].ClaimToken); err != nil || !ok {
		t.Fatalf("ack once the lock is released: %v %v; want the claim still held", ok, err)
	}

	// Pool exhaustion: both connections held; callers with a 300 ms
	// deadline get context.DeadlineExceeded in time, not a hang.
	var holders []interface{ Release() }
	for range 2 {
		c, err := pool.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		holders = append(holders, c)
	}
	var wg sync.WaitGroup
	var late atomic.Int32
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := store.Enqueue(ctx, draft(`{}`))
			if time.Since(start) > time.Second {
				late.Add(1)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("enqueue on an exhausted pool: %v, want context.DeadlineExceeded", err)
		}
	}
	if late.Load() > 0 {
		t.Errorf("%d callers waited past their deadline", late.Load())
	}
	for _, h := range holders {
		h.Release()
	}
	// And the pool works again.
	if _, err := store.Enqueue(context.Background(), draft(`{}`)); err != nil {
		t.Fatalf("after the exhaustion: %v", err)
	}
}
