package relay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/db"
)

// NotifyChannel is the channel enqueues notify when the store's WithNotify
// is on (the default).
const NotifyChannel = "pgoutbox"

// Notifier turns Postgres notifications into relay wake-ups. One Notifier
// per process serves any number of relays over one connection it takes out
// of the pool. It does not work through PgBouncer in transaction mode; use
// polling there (leave Config.Wakeups nil).
type Notifier struct {
	pool      *pgxpool.Pool
	logger    *slog.Logger
	keepalive time.Duration

	mu        sync.Mutex
	subs      map[string]map[chan struct{}]struct{}
	listening chan struct{} // closed once the first LISTEN succeeded
}

// NewNotifier returns a Notifier that listens on a connection from pool.
// Call Run to start it. logger may be nil.
func NewNotifier(pool *pgxpool.Pool, logger *slog.Logger) *Notifier {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Notifier{
		pool:      pool,
		logger:    logger,
		keepalive: 15 * time.Second,
		subs:      map[string]map[chan struct{}]struct{}{},
		listening: make(chan struct{}),
	}
}

func subKey(scope, lane, target string) string {
	return scope + "\x1f" + lane + "\x1f" + target
}

// Subscribe implements Wakeups.
func (n *Notifier) Subscribe(scope, lane, target string) (<-chan struct{}, func()) {
	key := subKey(scope, lane, target)
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	if n.subs[key] == nil {
		n.subs[key] = map[chan struct{}]struct{}{}
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
// is detected by a keepalive ping and replaced. After every (re)connect all
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
		// Quiet for a while: make sure the server is still there.
		pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = conn.Ping(pingCtx)
		cancel()
		if err != nil {
			return err
		}
	}
}

func (n *Notifier) wake(payload string) {
	parts := strings.Split(payload, "\x1f")
	if len(parts) != 3 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs[subKey(parts[0], parts[1], parts[2])] {
		signal(ch)
	}
}

func (n *Notifier) wakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, chans := range n.subs {
		for ch := range chans {
			signal(ch)
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
