package integration

import (
	"context"
	"database/sql"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/schema"
)

// release1 reads a statement of the first release (integration/testdata).
func release1(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/release1/" + name + ".sql")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// onlineTraffic is a migration test's load: producers and consumers running
// while the schema changes under them, with a ledger of what each did.
type onlineTraffic struct {
	t        *testing.T
	produced atomic.Int64
	slowest  atomic.Int64 // the longest statement, in nanoseconds
	mu       sync.Mutex
	handled  map[string]int
	errs     []error
}

func (o *onlineTraffic) timed(f func() error) error {
	start := time.Now()
	err := f()
	d := int64(time.Since(start))
	for {
		old := o.slowest.Load()
		if d <= old || o.slowest.CompareAndSwap(old, d) {
			break
		}
	}
	return err
}

func (o *onlineTraffic) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs = append(o.errs, err)
}

func (o *onlineTraffic) handle(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.handled[id]++
}

// release1Producer inserts messages with the first release's statement
// until ctx ends.
func (o *onlineTraffic) release1Producer(ctx context.Context, pool *pgxpool.Pool, insert string) {
	for ctx.Err() == nil {
		// Not under ctx: a statement cancelled after it committed would
		// leave a message the count misses.
		err := o.timed(func() error {
			_, err := pool.Exec(context.Background(), insert, false, "", "online", "t", []byte(`{}`), nil, nil, int32(5))
			return err
		})
		if err != nil {
			o.fail(err)
			return
		}
		o.produced.Add(1)
	}
}

// release1Consumer claims with the first release's statement, acking each
// batch with the next claim as its relays did, until ctx ends and nothing is
// left.
func (o *onlineTraffic) release1Consumer(ctx context.Context, pool *pgxpool.Pool, claim string) {
	start := time.Date(-4000, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []int64
	var tokens []pgtype.UUID
	for {
		ackIDs, ackTokens := ids, tokens
		ids, tokens = []int64{}, []pgtype.UUID{}
		err := o.timed(func() error {
			rows, err := pool.Query(context.Background(), claim, nil, int64(30*time.Second/time.Microsecond), "", "online", "t",
				int32(16), start, int64(0), nonNil64(ackIDs), nonNilUUID(ackTokens), "release-1")
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				vals, err := rows.Values()
				if err != nil {
					return err
				}
				if vals[6] == "claimed" {
					id, token := vals[0].(int64), vals[11].([16]byte)
					ids = append(ids, id)
					tokens = append(tokens, pgtype.UUID{Bytes: token, Valid: true})
					o.handle(itoa(int(id)))
				}
			}
			return rows.Err()
		})
		if err != nil {
			o.fail(err)
			return
		}
		if len(ids) == 0 {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func nonNil64(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return s
}

func nonNilUUID(s []pgtype.UUID) []pgtype.UUID {
	if s == nil {
		return []pgtype.UUID{}
	}
	return s
}

// Migrations 2, 3 and 4 run on a busy table without losing a message or
// holding up its traffic: while producers and relays of the first release
// work on the table (their statements read from testdata), the schema
// migrates to version 2; then, as in a rolling deploy, the new release's
// producers and relays take over and the schema migrates to versions 3 and
// 4 under their traffic. Every message produced is delivered exactly once,
// and no statement of either release waited longer than the migrations'
// lock timeout allows.
func TestMigrationsRunOnlineUnderTraffic(t *testing.T) {
	t.Parallel()
	db, pool := atVersion1(t)
	o := &onlineTraffic{t: t, handled: map[string]int{}}
	insert, claim := release1(t, "insert"), release1(t, "claim")

	// Phase 1: the first release's producers and relays; migration 2.
	ctx1, stop1 := context.WithCancel(context.Background())
	var producers, consumers sync.WaitGroup
	for range 4 {
		producers.Add(1)
		go func() { defer producers.Done(); o.release1Producer(ctx1, pool, insert) }()
	}
	for range 2 {
		consumers.Add(1)
		go func() { defer consumers.Done(); o.release1Consumer(ctx1, pool, claim) }()
	}
	time.Sleep(300 * time.Millisecond)
	if err := outbox.MigrateTo(t.Context(), db, 2); err != nil {
		t.Fatalf("migration 2 under traffic: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	stop1()
	producers.Wait()
	consumers.Wait()
	phase1 := o.produced.Load()

	// Phase 2: the new release; migration 3.
	store := outbox.NewPostgresStore(pool)
	ctx2, stop2 := context.WithCancel(context.Background())
	cfg := relayConfig(func(_ context.Context, m outbox.Message) error { o.handle(m.ID); return nil })
	cfg.Lane, cfg.Target = "online", "t"
	stopRelay := runRelay(t, newRelay(t, store, cfg))
	for i := range 4 {
		producers.Add(1)
		go func() {
			defer producers.Done()
			for ctx2.Err() == nil {
				d := outbox.Draft{Lane: "online", Target: "t", Payload: []byte(`{}`)}
				if i%2 == 1 {
					d.OrderingKey = "key-" + itoa(int(o.produced.Load()%7))
				}
				err := o.timed(func() error { _, err := store.Enqueue(context.Background(), d); return err })
				if err != nil {
					o.fail(err)
					return
				}
				o.produced.Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if err := outbox.MigrateTo(t.Context(), db, 3); err != nil {
		t.Fatalf("migration 3 under traffic: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := outbox.MigrateTo(t.Context(), db, 4); err != nil {
		t.Fatalf("migration 4 under traffic: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	stop2()
	producers.Wait()
	total := o.produced.Load()
	eventually(t, time.Minute, "every message delivered", func() bool {
		var n int64
		if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM pgoutbox_message WHERE status = 'delivered'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == total
	})
	stopRelay()

	o.mu.Lock()
	defer o.mu.Unlock()
	for _, err := range o.errs {
		t.Errorf("traffic failed: %v", err)
	}
	if len(o.handled) != int(total) {
		t.Errorf("%d messages handled, %d produced", len(o.handled), total)
	}
	for id, n := range o.handled {
		if n != 1 {
			t.Errorf("message %s handled %d times", id, n)
		}
	}
	if slowest := time.Duration(o.slowest.Load()); slowest > 5*time.Second {
		t.Errorf("a statement of the traffic waited %s while the table migrated", slowest)
	}
	var version int64
	if err := db.QueryRow(`SELECT max(version_id) FROM ` + outbox.MigrationTable).Scan(&version); err != nil || version != 4 {
		t.Errorf("schema version %d (%v), want 4", version, err)
	}
	var options []string
	if err := pool.QueryRow(t.Context(), `SELECT reloptions FROM pg_class WHERE relname = 'pgoutbox_message'`).Scan(&options); err != nil || !slices.Contains(options, "fillfactor=50") {
		t.Errorf("table options %v (%v), want fillfactor=50", options, err)
	}
	t.Logf("%d messages (%d by the first release), slowest statement %s, all delivered once",
		total, phase1, time.Duration(o.slowest.Load()).Round(time.Millisecond))
}

// A transaction that holds the table for longer than the migration's lock
// timeout (an analytics query, a stuck session) delays migration 2 instead
// of queueing the table's traffic behind it: the ALTER gives up its lock
// request after 2 s, Migrate runs it again, and it goes through once the
// transaction ends. Producers wait at most about one lock timeout.
func TestMigrationWaitsOutALongTransaction(t *testing.T) {
	t.Parallel()
	db, pool := atVersion1(t)
	long, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := long.Exec(t.Context(), `SELECT count(*) FROM pgoutbox_message`); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(5 * time.Second)
		_ = long.Rollback(context.Background())
	}()
	o := &onlineTraffic{t: t, handled: map[string]int{}}
	ctx, stop := context.WithCancel(context.Background())
	var producers sync.WaitGroup
	for range 2 {
		producers.Add(1)
		go func() { defer producers.Done(); o.release1Producer(ctx, pool, release1(t, "insert")) }()
	}
	started := time.Now()
	err = outbox.MigrateTo(t.Context(), db, 2)
	took := time.Since(started)
	stop()
	producers.Wait()
	if err != nil {
		t.Fatalf("migration 2 behind a long transaction: %v", err)
	}
	if took < 4*time.Second {
		t.Errorf("migration 2 finished after %s, before the long transaction ended", took)
	}
	if slowest := time.Duration(o.slowest.Load()); slowest > 4*time.Second {
		t.Errorf("producers waited up to %s behind the migration's lock request", slowest)
	}
	t.Logf("migration 2 took %s behind a 5 s transaction; %d messages produced meanwhile, the slowest insert %s",
		took.Round(time.Millisecond), o.produced.Load(), time.Duration(o.slowest.Load()).Round(time.Millisecond))
}

// atVersion1 creates a database migrated to the first release's schema
// (version 1) and returns it for migrations and as a pool for traffic.
func atVersion1(t *testing.T) (*sql.DB, *pgxpool.Pool) {
	t.Helper()
	d := pgtest.NewEmptyDB(t, "template1")
	db := openSQL(t, d.URL)
	if err := outbox.MigrateTo(t.Context(), db, 1); err != nil {
		t.Fatal(err)
	}
	return db, pgtest.Pool(t, d.URL)
}

// Migration 4 waits for what holds the table's SHARE UPDATE EXCLUSIVE lock
// (a VACUUM, an ANALYZE, an index built concurrently) without holding up
// traffic: it gives up its lock request after 2 s, Migrate runs it again,
// and it goes through once the lock is free.
func TestFillfactorMigrationWaitsOutAVacuum(t *testing.T) {
	t.Parallel()
	db, pool := atVersion1(t)
	if err := outbox.MigrateTo(t.Context(), db, 3); err != nil {
		t.Fatal(err)
	}
	vacuum, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The lock a running VACUUM holds.
	if _, err := vacuum.Exec(t.Context(), `LOCK TABLE pgoutbox_message IN SHARE UPDATE EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(3 * time.Second)
		_ = vacuum.Rollback(context.Background())
	}()
	store := outbox.NewPostgresStore(pool)
	o := &onlineTraffic{t: t, handled: map[string]int{}}
	ctx, stop := context.WithCancel(context.Background())
	var producers sync.WaitGroup
	producers.Add(1)
	go func() {
		defer producers.Done()
		for ctx.Err() == nil {
			err := o.timed(func() error {
				_, err := store.Enqueue(context.Background(), outbox.Draft{Lane: "online", Target: "t", Payload: []byte(`{}`)})
				return err
			})
			if err != nil {
				o.fail(err)
				return
			}
			o.produced.Add(1)
		}
	}()
	started := time.Now()
	err = outbox.MigrateTo(t.Context(), db, 4)
	took := time.Since(started)
	stop()
	producers.Wait()
	if err != nil {
		t.Fatalf("migration 4 behind a vacuum: %v", err)
	}
	if took < 2*time.Second {
		t.Errorf("migration 4 finished after %s, before the vacuum's lock was free", took)
	}
	for _, err := range o.errs {
		t.Errorf("traffic failed: %v", err)
	}
	if slowest := time.Duration(o.slowest.Load()); slowest > time.Second {
		t.Errorf("producers waited up to %s behind the migration", slowest)
	}
	t.Logf("migration 4 took %s behind a 3 s lock; %d messages produced meanwhile, the slowest insert %s",
		took.Round(time.Millisecond), o.produced.Load(), time.Duration(o.slowest.Load()).Round(time.Millisecond))
}

// latestVersion is the version of the last migration in schema/.
func latestVersion(t *testing.T) int64 {
	t.Helper()
	names, err := fs.Glob(schema.Migrations(), "*.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("migrations: %v %v", names, err)
	}
	v, err := strconv.ParseInt(strings.SplitN(names[len(names)-1], "_", 2)[0], 10, 64)
	if err != nil {
		t.Fatalf("migration %s: %v", names[len(names)-1], err)
	}
	return v
}
