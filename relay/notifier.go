package relay

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/internal/wakeup"
)

// NotifyChannel is the channel enqueues notify when the store's WithNotify
// is on (the default).
const NotifyChannel = wakeup.Channel

// Wakeups tells a relay that messages may be waiting, so that it claims
// before its next poll. Notifier (LISTEN/NOTIFY) implements it, and so does
// memstore.Store.
type Wakeups interface {
	// Subscribe returns a channel that receives wake-ups for one scope,
	// lane and target (coalesced: a subscriber that has not taken the last
	// one gets one wake-up, with the longest FollowUp), and a function that
	// ends the subscription.
	Subscribe(scope, lane, target string) (<-chan Wakeup, func())
}

// Wakeup says that messages of a subscription were committed.
type Wakeup struct {
	// FollowUp, when positive, asks the relay to claim once more this long
	// after the wake-up: the producer left enqueues that commit within its
	// notify interval without a notification of their own (see
	// outbox.WithNotifyInterval), and this finds them.
	FollowUp time.Duration
}

// Notifier turns Postgres notifications into relay wake-ups. One Notifier
// per process serves any number of relays over one connection it takes out
// of the pool. It does not work through PgBouncer in transaction mode; use
// polling there (leave Config.Wakeups nil).
type Notifier struct {
	pool      *pgxpool.Pool
	logger    *slog.Logger
	keepalive time.Duration

	mu        sync.Mutex
	subs      map[string]map[chan Wakeup]struct{}
	listening chan struct{} // closed once the first LISTEN succeeded
}

// NewNotifier returns a Notifier that listens on a connection from pool.
// Call Run to start it. logger may be nil.
func NewNotifier(pool *pgxpool.Pool, logger *slog.Logger) *Notifier {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Notifier{
		pool:      pool,
		logger:    logger,
		keepalive: 15 * time.Second,
		subs:      map[string]map[chan Wakeup]struct{}{},
		listening: make(chan struct{}),
	}
}

// Subscribe implements Wakeups.
func (n *Notifier) Subscribe(scope, lane, target string) (<-chan Wakeup, func()) {
	key := wakeup.Key(scope, lane, target)
	ch := make(chan Wakeup, 1)
	n.mu.Lock()
	if n.subs[key] == nil {
		n.subs[key] = map[chan Wakeup]struct{}{}
	}
	n.subs[key][ch] = struct{}{}
	n.mu.Unlock()
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(n.subs[key], ch)
		if len(n.subs[key]) == 0 {
			delete(n.subs, key)
		}
	}
}

// Listening returns a channel closed once the Notifier first listens; a
// message enqueued after that wakes its relays.
func (n *Notifier) Listening() <-chan struct{} { return n.listening }

// Run listens until ctx ends, reconnecting after errors, and returns nil. A
// connection that stops answering (a half-open socket after a network cut)
// is detected by a keepalive query and replaced; so is one that answers
// read-only (the server was demoted by a failover), after resetting the
// pool. After every (re)connect all
// subscribers are woken, since notifications sent while nobody listened are
// gone.
func (n *Notifier) Run(ctx context.Context) error {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := n.listen(ctx)
		if ctx.Err() != nil {
			break
		}
		n.logger.Warn("relay: notifier lost its connection; reconnecting", "error", err, "retry_in", delay)
		sleep(ctx, delay)
		delay = min(delay*2, 10*time.Second)
	}
	return nil
}

func (n *Notifier) listen(ctx context.Context) error {
	pooled, err := n.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The session stays subscribed, so it must never go back to the pool.
	conn := pooled.Hijack()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if err := n.writable(ctx, db.New(conn)); err != nil {
		return err
	}
	if err := db.New(conn).NotifyListen(ctx); err != nil {
		return err
	}
	n.mu.Lock()
	select {
	case <-n.listening:
	default:
		close(n.listening)
	}
	n.mu.Unlock()
	n.wakeAll()
	for {
		waitCtx, cancel := context.WithTimeout(ctx, n.keepalive)
		note, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			if note.Channel == NotifyChannel {
				n.wake(note.Payload)
			}
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			return err
		}
		// Quiet for a while: make sure the server is still there, and
		// still the primary.
		pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = n.writable(pingCtx, db.New(conn))
		cancel()
		if err != nil {
			return err
		}
	}
}

// errReadOnly: the session answers read-only.
var errReadOnly = errors.New("relay: notifier: the server answers read-only (a failover demoted it?); reconnecting")

// writable checks that the session can write. A read-only session after a
// failover belongs to the old primary, where no producer commits any more:
// the notifier resets the pool, so that it and the relays reconnect to the
// new primary, and listens again there.
func (n *Notifier) writable(ctx context.Context, q *db.Queries) error {
	readOnly, err := q.SessionReadOnly(ctx)
	if err != nil {
		return err
	}
	if readOnly {
		n.pool.Reset()
		return errReadOnly
	}
	return nil
}

func (n *Notifier) wake(payload string) {
	key, followUp, ok := wakeup.Parse(payload)
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs[key] {
		Signal(ch, Wakeup{FollowUp: followUp})
	}
}

func (n *Notifier) wakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, chans := range n.subs {
		for ch := range chans {
			Signal(ch, Wakeup{})
		}
	}
}

// Signal delivers w on a subscription channel of capacity one without
// blocking, merging it with a wake-up the subscriber has not taken yet (the
// longer FollowUp wins). Implementations of Wakeups use it; a channel must
// have one sender at a time (hold the lock that guards the subscription).
func Signal(ch chan Wakeup, w Wakeup) {
	select {
	case old := <-ch:
		w.FollowUp = max(w.FollowUp, old.FollowUp)
	default:
	}
	select {
	case ch <- w:
	default:
	}
}
