package benchserver

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/benchkit"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// The benchmark's server loads pg_stat_statements and auto_explain, and the
// harness's evidence of a window carries the plan of a statement slower than
// auto_explain's threshold, with the buffers it read, taken from the
// container's log.
func TestEvidenceCarriesSlowStatementsAndTheirPlans(t *testing.T) {
	ctx := context.Background()
	srv, err := Start(ctx, "", "on", 50*time.Millisecond, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	h, err := benchkit.Open(ctx, benchkit.Config{URL: srv.URL, MaxConns: 4, Evidence: true, Logs: srv.Logs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if h.Settings.Durability() != "durable (fsync on, synchronous_commit on)" {
		t.Errorf("durability: %s", h.Settings.Durability())
	}
	w, err := h.Begin(ctx, "pgoutbox_message")
	if err != nil {
		t.Fatal(err)
	}
	// A statement of the test's own, slower than the threshold: it sleeps
	// while it scans the (empty) outbox table.
	if _, err := h.Pool.Exec(ctx, "SELECT count(*), pg_sleep(0.2) FROM pgoutbox_message"); err != nil {
		t.Fatal(err)
	}
	ev, err := w.End(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("evidence:\n%s", ev)
	if len(ev.Plans) == 0 {
		t.Fatalf("no auto_explain plan in the evidence:\n%s", ev)
	}
	p := ev.Plans[0]
	// The plan starts at its first node: auto_explain's query text (the
	// statement with pg_sleep) is left out, so that a long statement does
	// not fill the report's excerpt.
	if p.Millis < 200 || strings.Contains(p.Text, "Query Text") || !strings.Contains(p.Text, "pgoutbox_message") || !strings.Contains(p.Text, "actual rows=") {
		t.Errorf("plan of %.0f ms:\n%s", p.Millis, p.Text)
	}
	found := false
	for _, s := range ev.Statements {
		found = found || strings.Contains(s.Query, "pg_sleep")
	}
	if !found {
		t.Errorf("pg_stat_statements has no sleeping statement: %+v", ev.Statements)
	}
	if !strings.Contains(ev.String(), "plan of a") {
		t.Errorf("evidence summary lacks the plan:\n%s", ev)
	}
}

// A lock wait longer than deadlock_timeout (1 s) shows in the evidence, from
// the server's log: what a stall on row locks looks like in a report.
func TestEvidenceCarriesLockWaits(t *testing.T) {
	ctx := context.Background()
	srv, err := Start(ctx, "", "on", 0, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	h, err := benchkit.Open(ctx, benchkit.Config{URL: srv.URL, MaxConns: 4, Evidence: true, Logs: srv.Logs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if _, err := outbox.NewPostgresStore(h.Pool).Enqueue(ctx, outbox.Draft{Lane: "l", Target: "t", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	w, err := h.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	holder, err := h.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, "SELECT id FROM pgoutbox_message FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := h.Pool.Exec(ctx, "SELECT id FROM pgoutbox_message FOR UPDATE")
		waited <- err
	}()
	time.Sleep(1500 * time.Millisecond) // past deadlock_timeout
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	ev, err := w.End(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.LockLogLines < 2 || !strings.Contains(strings.Join(ev.LockLog, "\n"), "still waiting for ShareLock on transaction") ||
		ev.Commits < 2 || ev.Deadlocks != 0 {
		t.Errorf("evidence of a 1.5 s lock wait:\n%s", ev)
	}
	found := false
	for _, a := range ev.Activity {
		found = found || strings.Contains(a.What, "Lock transactionid")
	}
	if !found {
		t.Errorf("no sampled session waiting on a transaction lock: %+v", ev.Activity)
	}
}
