package benchkit

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
}

func openHarness(t *testing.T) *Harness {
	t.Helper()
	d := pgtest.NewDB(t)
	h, err := Open(context.Background(), Config{URL: d.URL, MaxConns: 16, Evidence: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func drafts(n int) []outbox.Draft {
	out := make([]outbox.Draft, n)
	for i := range out {
		out[i] = outbox.Draft{Lane: lane, Target: target, Payload: json.RawMessage(`{"n":` + strconv.Itoa(i) + `}`)}
	}
	return out
}

// A window measures what the server wrote in it: at least a record per row
// inserted (WAL is the whole server's: other test binaries may share it, so
// an idle window is only checked to be measured), and the table counters of its work
// (which a backend only reports when it flushes its statistics: the window
// closes the sessions first, so the counts are exact).
func TestWindowMeasuresWALAndEvidence(t *testing.T) {
	ctx := context.Background()
	h := openHarness(t)
	if h.Settings.ServerVersion == "" || h.Settings.Durability() == "" {
		t.Fatalf("settings not read: %+v", h.Settings)
	}

	idle, err := h.Begin(ctx, "pgoutbox_message")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(350 * time.Millisecond) // long enough for the sampler to sample
	ev, err := idle.End(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !ev.WAL.Measured || !ev.WAL.RecordsKnown || ev.WAL.Bytes < 0 {
		t.Errorf("idle window: %+v, want measured", ev.WAL)
	}
	if ev.Samples == 0 {
		t.Errorf("idle window of 350ms took no wait-event sample")
	}

	const n = 1000
	store := outbox.NewPostgresStore(h.Pool, outbox.WithNotify(false))
	w, err := h.Begin(ctx, "pgoutbox_message")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.EnqueueMany(ctx, drafts(n)); err != nil {
		t.Fatal(err)
	}
	ev, err = w.End(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.WAL.Bytes < n*100 || ev.WAL.Records < n {
		t.Errorf("window that inserted %d rows: %+v, want at least %d bytes and %d records", n, ev.WAL, n*100, n)
	}
	tab := ev.Tables["pgoutbox_message"]
	if tab.After.LiveTuples != n || tab.After.TableBytes == 0 || tab.After.IndexBytes == 0 {
		t.Errorf("table after the window: %+v, want %d live tuples and a size", tab.After, n)
	}
	if s := ev.String(); !strings.Contains(s, "pgoutbox_message:") || !strings.Contains(s, "WAL") {
		t.Errorf("evidence summary lacks the table or the WAL:\n%s", s)
	}
	b, r, ok := ev.WAL.PerMessage(n)
	if !ok || b < 100 || r < 1 {
		t.Errorf("per message: %.0f bytes, %.1f records, ok %v", b, r, ok)
	}
}

// The burn-down scenario delivers every message, and its accounting holds
// both windows: the fill's WAL per enqueued message and the drain's per
// delivered one, with each message updated at least twice (claim, ack).
func TestBurnDownAccounts(t *testing.T) {
	ctx := context.Background()
	h := openHarness(t)
	const n = 600
	res, err := h.BurnDown(ctx, n, 2, 32, relay.ModeClaim)
	if err != nil {
		t.Fatal(err)
	}
	if res.Enqueued != n || res.Delivered != n || res.Messages != n || res.PerSec <= 0 || res.Scope == "" {
		t.Fatalf("result: %+v", res)
	}
	if eb, _, ok := res.EnqueueWAL.PerMessage(n); !ok || eb < 100 {
		t.Errorf("fill WAL per message %.0f (ok %v)", eb, ok)
	}
	if db, _, ok := res.DeliveryWAL.PerMessage(n); !ok || db < 100 {
		t.Errorf("drain WAL per message %.0f (ok %v)", db, ok)
	}
	if u := res.Evidence.Tables["pgoutbox_message"].Updates; u < 2*n {
		t.Errorf("drain updated %d rows, want at least %d (a claim and an ack each)", u, 2*n)
	}
}

// DeleteScope removes one scope's rows and nothing else: outboxctl bench
// cleans up after itself in an operator's table.
func TestDeleteScopeTouchesOnlyItsScope(t *testing.T) {
	ctx := context.Background()
	h := openHarness(t)
	unscoped := outbox.NewPostgresStore(h.Pool)
	mine, err := unscoped.Scoped("bench-x")
	if err != nil {
		t.Fatal(err)
	}
	other, err := unscoped.Scoped("tenant")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*outbox.PostgresStore{unscoped, mine, other} {
		if _, err := s.EnqueueMany(ctx, drafts(3)); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.DeleteScope(ctx, "bench-x"); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*outbox.PostgresStore{"unscoped": unscoped, "bench-x": mine, "tenant": other} {
		msgs, err := s.List(ctx, outbox.ListFilter{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		want := 3
		if name == "bench-x" {
			want = 0
		}
		if len(msgs) != want {
			t.Errorf("scope %s: %d messages, want %d", name, len(msgs), want)
		}
	}
}

func TestSQLStatements(t *testing.T) {
	s := NewSQL(fstest.MapFS{
		"script.sql":  {Data: []byte("-- a comment\nTRUNCATE a;\n\nVACUUM ANALYZE a;\nSELECT 1\n  AS one;\n")},
		"open.sql":    {Data: []byte("SELECT 1;\nSELECT 2\n")},
		"empty.sql":   {Data: []byte("-- nothing here\n")},
		"one.sql":     {Data: []byte("SELECT @x::int AS x;\n")},
		"several.sql": {Data: []byte("SELECT 1;\nSELECT 2;\n")},
	})
	got, err := s.Statements("script")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"TRUNCATE a;", "VACUUM ANALYZE a;", "SELECT 1\n  AS one;"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("statements %q, want %q", got, want)
	}
	for _, name := range []string{"open", "empty", "missing"} {
		if _, err := s.Statements(name); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v, want one naming the file", name, err)
		}
	}
	if _, err := s.Text("several"); err == nil {
		t.Error("Text of a two-statement file: no error")
	}
	if txt, err := s.Text("one"); err != nil || txt != "SELECT @x::int AS x;" {
		t.Errorf("Text: %q, %v", txt, err)
	}
}

// Every file of the harness's own SQL directory parses into statements.
func TestHarnessSQLFilesParse(t *testing.T) {
	entries, err := harnessFS.ReadDir("sql")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Fatal("no harness SQL files")
	}
	for _, e := range entries {
		if _, err := harnessSQL().Statements(strings.TrimSuffix(e.Name(), ".sql")); err != nil {
			t.Error(err)
		}
	}
}
