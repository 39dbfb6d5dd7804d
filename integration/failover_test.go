package integration

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// After a failover the sessions a relay holds may stay connected to the
// demoted primary, which answers read-only (SQLSTATE 25006), while new
// sessions reach the new primary; pgxpool keeps old sessions for up to an
// hour. Simulated here with sessions that turn read-only as they connect
// until the "failover", and writable ones after: the relay and its notifier
// must drop the read-only sessions and handle a new message promptly (field
// reports against JobRunr and fastapi-sqla: never recovered).
func TestRelayRecoversFromReadOnlySessions(t *testing.T) {
	f := newFixture(t)
	var demoted atomic.Bool
	demoted.Store(true)
	cfg, err := pgxpool.ParseConfig(f.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if demoted.Load() {
			_, err := c.Exec(ctx, "SET default_transaction_read_only = on")
			return err
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(f.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	n := relay.NewNotifier(pool, nil)
	nctx, stopNotifier := context.WithCancel(context.Background())
	notifierDone := make(chan struct{})
	go func() { _ = n.Run(nctx); close(notifierDone) }()
	t.Cleanup(func() { stopNotifier(); <-notifierDone })

	var handled atomic.Int32
	rc := relayConfig(func(context.Context, outbox.Message) error { handled.Add(1); return nil })
	rc.PollInterval = 200 * time.Millisecond
	rc.Wakeups = n
	runRelay(t, newRelay(t, outbox.NewPostgresStore(pool), rc))
	time.Sleep(500 * time.Millisecond) // the relay's claims fail on read-only sessions
	if handled.Load() != 0 {
		t.Fatal("handled something before anything was enqueued")
	}

	demoted.Store(false) // from now on, new sessions reach a writable server
	f.enqueue(f.store, draft(`{}`))
	eventually(t, 10*time.Second, "the message handled after the failover", func() bool { return handled.Load() == 1 })
}
