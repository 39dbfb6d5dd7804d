// Command relay is the README's relay example, complete: it delivers the
// outbox messages of lane "canonical", target "order_webhook" to
// $WEBHOOK_URL until interrupted.
//
//	DATABASE_URL=postgres://... WEBHOOK_URL=https://... go run ./examples/relay
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

func main() {
	if err := run(); err != nil {
		slog.Error("relay failed", "error", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		return err
	}
	defer pool.Close()
	store := outbox.NewPostgresStore(pool)

	// One LISTEN connection per process wakes every relay in it.
	wakeups := relay.NewNotifier(pool, slog.Default())
	go func() { _ = wakeups.Run(ctx) }()

	webhook := &webhook{url: os.Getenv("WEBHOOK_URL"), client: &http.Client{Timeout: 10 * time.Second}}
	r, err := relay.New(store, relay.Config{
		Lane:        outbox.LaneCanonical,
		Target:      "order_webhook",
		Handler:     webhook.deliver,
		Concurrency: 16,
		Wakeups:     wakeups,
		Logger:      slog.Default(),
	})
	if err != nil {
		return err
	}
	return r.Run(ctx) // until Ctrl-C, then drains
}

type webhook struct {
	url    string
	client *http.Client
}

// deliver posts the payload. nil acks the message; an error retries it with
// backoff; a Permanent error dead-letters it at once.
func (w *webhook) deliver(ctx context.Context, m outbox.Message) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(m.Payload))
	if err != nil {
		return relay.Permanent(err) // a bad URL will not get better
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "outbox-"+m.ID) // deliveries are at least once
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
		return relay.Permanent(fmt.Errorf("webhook refused the message: %s", resp.Status))
	default:
		return errors.New("webhook unavailable: " + resp.Status)
	}
}
