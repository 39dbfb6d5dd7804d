package outbox

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/internal/wakeup"
)

// waitEmpty waits up to within for w to have nothing pending.
func waitEmpty(t *testing.T, w *commitWatch, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for len(w.pending.Xacts()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d transaction(s) still pending after %s", len(w.pending.Xacts()), within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A store's pool that closes while a caller's transaction is still open
// ends the watcher at once, instead of leaving it to retry until
// wakeup.MaxPending.
func TestCommitWatchEndsWhenItsPoolCloses(t *testing.T) {
	url := os.Getenv("DATABASE_URL")
	callers, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer callers.Close()
	pool, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	s := NewPostgresStore(pool)
	tx, err := callers.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := s.WithTx(tx).Enqueue(t.Context(), Draft{Lane: "l", Target: "t", Payload: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	if len(s.watch.pending.Xacts()) != 1 {
		t.Fatal("the enqueue is not watched")
	}
	pool.Close()
	waitEmpty(t, s.watch, 2*time.Second)
}

// failing is a connection whose every statement fails.
type failing struct{}

var errDown = errors.New("server down")

func (failing) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, errDown
}
func (failing) Query(context.Context, string, ...any) (pgx.Rows, error) { return nil, errDown }
func (failing) QueryRow(context.Context, string, ...any) pgx.Row        { return nil }

// A watcher whose reads keep failing forgets its transactions after
// giveUp; relays find their messages at their poll.
func TestCommitWatchGivesUpOnAFailingServer(t *testing.T) {
	w := &commitWatch{
		q: db.New(failing{}), limiter: wakeup.NewLimiter(DefaultNotifyInterval, time.Now),
		logger: newConfig(nil).logger, pending: wakeup.NewPending(),
		interval: time.Millisecond, giveUp: 50 * time.Millisecond,
	}
	w.add("k", 1)
	waitEmpty(t, w, 2*time.Second)
}
