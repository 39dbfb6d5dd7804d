package integration

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// pgbouncerEnv names a PgBouncer binary to run; without it the tests look
// for pgbouncer on the PATH (make test-deps installs Debian's package).
const pgbouncerEnv = "OUTBOX_PGBOUNCER"

// startPgBouncer runs PgBouncer in transaction pooling mode in front of d and
// returns a connection string to it, with pgx using unnamed statements
// (default_query_exec_mode=exec) as PgBouncer 1.18 requires.
func startPgBouncer(t *testing.T, d *pgtest.DB) string {
	t.Helper()
	bin := os.Getenv(pgbouncerEnv)
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("pgbouncer"); err != nil {
			t.Fatalf("no pgbouncer binary: install Debian's pgbouncer (make test-deps does) or set %s", pgbouncerEnv)
		}
	}
	u, err := url.Parse(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	password, _ := u.User.Password()
	host, port, _ := net.SplitHostPort(u.Host)
	// Not t.TempDir(): its parent is private to this user, and PgBouncer
	// runs as postgres when we are root.
	dir, err := os.MkdirTemp("", "pgoutbox-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // PgBouncer's user must read its config
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	ini := fmt.Sprintf(`[databases]
outbox = host=%s port=%s dbname=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = plain
auth_file = %s
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
`, host, port, d.Name, listen, filepath.Join(dir, "users.txt"))
	if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	users := fmt.Sprintf("%q %q\n", u.User.Username(), password)
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(users), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{filepath.Join(dir, "pgbouncer.ini")}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "postgres"}, args...) // PgBouncer refuses to run as root
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/outbox?sslmode=disable&default_query_exec_mode=exec", u.User.Username(), password, listen)
}

// bouncerPool connects to PgBouncer, waiting for it to listen.
func bouncerPool(t *testing.T, bouncerURL string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(bouncerURL)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConnConfig.DefaultQueryExecMode != pgx.QueryExecModeExec {
		t.Fatal("default_query_exec_mode=exec not applied")
	}
	var pool *pgxpool.Pool
	for i := 0; ; i++ {
		pool, err = pgxpool.NewWithConfig(t.Context(), cfg)
		if err == nil {
			if err = pool.Ping(t.Context()); err == nil {
				break
			}
			pool.Close()
		}
		if i > 100 {
			t.Fatalf("no connection through PgBouncer (its log is on stderr): %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(pool.Close)
	return pool
}

// The store, a poll-only relay and a lock-mode relay work through PgBouncer
// in transaction pooling mode.
func TestPgBouncerTransactionPooling(t *testing.T) {
	t.Parallel()
	d := pgtest.NewDB(t)
	pool := bouncerPool(t, startPgBouncer(t, d))
	ctx := t.Context()

	store := outbox.NewPostgresStore(pool, outbox.WithNotify(false))
	for i := range 300 {
		if _, err := store.Enqueue(ctx, draft(itoa(i))); err != nil {
			t.Fatalf("enqueue through PgBouncer: %v", err)
		}
	}
	k := draft(`{}`)
	k.DedupeKey = "through-the-bouncer"
	if _, err := store.EnqueueMany(ctx, []outbox.Draft{k, k, draft(`"x"`)}); err != nil {
		t.Fatalf("enqueue many (a transaction) through PgBouncer: %v", err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.WithTx(tx).Enqueue(ctx, draft(`"in a caller's tx"`)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	l := newLedger()
	cfgR := relayConfig(func(_ context.Context, m outbox.Message) error { l.record(m.ID); return nil })
	cfgR.Wakeups = nil // LISTEN does not work through transaction pooling: poll
	cfgR.Concurrency = 16
	stop := runRelay(t, newRelay(t, store, cfgR))
	eventually(t, time.Minute, "the poll-only relay delivered everything", func() bool { return l.total() >= 200 })
	stop()
	lockCfg := relayConfig(func(_ context.Context, m outbox.Message) error { l.record(m.ID); return nil })
	lockCfg.Mode = relay.ModeLock
	runRelay(t, newRelay(t, store, lockCfg))
	eventually(t, time.Minute, "everything delivered", func() bool {
		var n int
		_ = d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pgoutbox_message WHERE status <> 'delivered'`).Scan(&n)
		return n == 0
	})
	if _, err := store.Stats(ctx, true); err != nil {
		t.Fatalf("stats through PgBouncer: %v", err)
	}
	time.Sleep(10 * time.Millisecond)
	if n, err := store.Purge(ctx, outbox.PurgeRequest{}); err != nil || n != 303 {
		t.Fatalf("purge through PgBouncer: %d %v", n, err)
	}
	for id, n := range l.calls {
		if n != 1 {
			t.Errorf("message %s handled %d times", id, n)
		}
	}
	t.Logf("PgBouncer transaction pooling: 303 messages enqueued, %d delivered by a poll-only and a lock-mode relay, purged", l.total())
}

// Migrate works through PgBouncer in transaction pooling while other
// clients share the pool: its lock is a row of a table, not a session
// advisory lock, whose lock and unlock would land on different server
// connections (a field report against authentik and hindsight: with
// goose's session lock, Migrate took 4 to 42 s in 8 of 13 rounds). Four
// migrators at once, three rounds, each on an empty database: each round
// takes about a second; with the session lock rounds took up to 14 s here.
func TestMigrateThroughPgBouncer(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		d := pgtest.NewEmptyDB(t, "template1")
		bouncer := startPgBouncer(t, d)
		pool := bouncerPool(t, bouncer)
		ctx, stop := context.WithCancel(t.Context())
		var noise sync.WaitGroup
		for range 6 { // other clients keep the pool's server connections moving
			noise.Add(1)
			go func() {
				defer noise.Done()
				for ctx.Err() == nil {
					_, _ = pool.Exec(ctx, "SELECT pg_sleep(0.005)")
				}
			}()
		}
		started := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = outbox.Migrate(t.Context(), openSQL(t, bouncer))
			}()
		}
		wg.Wait()
		took := time.Since(started)
		stop()
		noise.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, migrator %d through PgBouncer: %v", round, i, err)
			}
		}
		if took > 5*time.Second {
			t.Errorf("round %d: four migrators through PgBouncer took %s", round, took)
		}
		var version int64
		if err := pgtest.Pool(t, d.URL).QueryRow(t.Context(), "SELECT max(version_id) FROM "+outbox.MigrationTable).Scan(&version); err != nil || version != latestVersion(t) {
			t.Fatalf("round %d: version %d (%v), want %d", round, version, err, latestVersion(t))
		}
		t.Logf("round %d: four migrators through PgBouncer in %s", round, took.Round(time.Millisecond))
	}
}
