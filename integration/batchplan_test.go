package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// Every statement that takes a batch of items (acks, heartbeats, a locked
// batch's outcomes) finds each item's row with one primary-key probe. Under
// a generic plan the planner guesses ten items for any array, and the first
// shape of these statements (rows found by id = ANY, then matched against
// the unnested items) became a nested loop that compared every row with
// every item: at batches of 256 that was 65,280 comparisons per claim and
// halved claim mode's throughput. The plans are taken as the store runs
// them, generic and custom alike, and no join may discard more rows than
// the batch has items.
func TestBatchStatementsProbeOncePerItem(t *testing.T) {
	const batch = 256
	for _, stats := range []string{"never analyzed", "analyzed"} {
		for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
			t.Run(stats+"/"+mode, func(t *testing.T) {
				f := newFixture(t)
				// Setup only: autovacuum must not analyze the table behind
				// the test's back.
				if _, err := f.pool.Exec(f.ctx, "ALTER TABLE pgoutbox_message SET (autovacuum_enabled = false)"); err != nil {
					t.Fatal(err)
				}
				f.fill(f.store, 20*batch, draft(`{}`))
				if stats == "analyzed" {
					if _, err := f.pool.Exec(f.ctx, "ANALYZE pgoutbox_message"); err != nil {
						t.Fatal(err)
					}
				}
				// The statements run in a scope the statistics have not
				// seen (estimated at one row, whatever it holds), as a new
				// tenant's or the benchmark's do.
				scoped, err := f.store.Scoped("unseen")
				if err != nil {
					t.Fatal(err)
				}
				f.fill(scoped, 6*batch, draft(`{}`))
				batchPlans(t, f, mode, batch)
			})
		}
	}
}

// batchPlans runs each batch statement once through the store, at the
// given plan_cache_mode, and checks its plan.
func batchPlans(t *testing.T, f *fixture, mode string, batch int) {
	t.Helper()
	conn, plans := explainedConn(t, f, mode)
	store, err := outbox.NewPostgresStore(conn, outbox.WithNotify(false)).Scoped("unseen")
	if err != nil {
		t.Fatal(err)
	}

	claimed, err := store.Claim(f.ctx, claimReq(batch, time.Minute, "plans"))
	if err != nil || len(claimed) != batch {
		t.Fatalf("claim: %d messages, %v", len(claimed), err)
	}
	if _, err := store.ExtendLeases(f.ctx, receipts(claimed), time.Minute); err != nil {
		t.Fatal(err)
	}
	plans.take("MessageExtendLeases")
	next, acked, err := store.ClaimAndAck(f.ctx, claimReq(batch, time.Minute, "plans"), receipts(claimed))
	if err != nil || len(next) != batch || len(acked) != batch {
		t.Fatalf("claim and ack: %d claimed, %d acks, %v", len(next), len(acked), err)
	}
	plans.take("MessageClaim")
	if _, err := store.AckMany(f.ctx, receipts(next)); err != nil {
		t.Fatal(err)
	}
	plans.take("MessageAckMany")

	// Lock mode: a batch of outcomes, half of them failures.
	b, err := store.LockBatch(f.ctx, lockReq(batch))
	if err != nil || len(b.Messages()) != batch {
		t.Fatalf("lock batch: %v", err)
	}
	outcomes := make([]outbox.Outcome, batch)
	for i, m := range b.Messages() {
		outcomes[i] = outbox.Outcome{ID: m.ID}
		if i%2 == 1 {
			outcomes[i].Err, outcomes[i].RetryAfter = fmt.Errorf("failure %d", i), time.Minute
		}
	}
	if _, err := b.Finish(f.ctx, outcomes); err != nil {
		t.Fatal(err)
	}
	plans.take("MessageFinishLocked")

	for name, p := range plans.taken {
		if removed, text := joinFilterRemoved(t, p.Plan, 0); removed > float64(batch) {
			t.Errorf("%s (%s): its joins discarded %.0f rows for a batch of %d: rows are matched against every item instead of probed\n%s",
				name, mode, removed, batch, text)
		}
	}
}

// loggedPlan is one statement's plan as auto_explain sent it to the session.
type loggedPlan struct {
	Plan json.RawMessage `json:"Plan"`
}

// planLog collects the plans auto_explain reports on one connection.
type planLog struct {
	t       *testing.T
	mu      sync.Mutex
	notices []string
	taken   map[string]loggedPlan
}

// take records the plan of the last statement named name since the
// previous take, and fails the test when there is none.
func (l *planLog) take(name string) {
	l.t.Helper()
	l.mu.Lock()
	notices := l.notices
	l.notices = nil
	l.mu.Unlock()
	for i := len(notices) - 1; i >= 0; i-- {
		n := notices[i]
		if !strings.Contains(n, "-- name: "+name+" ") {
			continue
		}
		start := strings.Index(n, "{")
		var p loggedPlan
		if start < 0 || json.Unmarshal([]byte(n[start:]), &p) != nil {
			l.t.Fatalf("%s: auto_explain's entry is not JSON: %.300s", name, n)
		}
		l.taken[name] = p
		return
	}
	l.t.Fatalf("no plan of %s among %d statements", name, len(notices))
}

// explainedConn opens a connection whose statements auto_explain reports
// (ANALYZE, JSON, no timing) to the session, with plan_cache_mode set.
func explainedConn(t *testing.T, f *fixture, planCacheMode string) (*pgx.Conn, *planLog) {
	t.Helper()
	cfg, err := pgx.ParseConfig(f.db.URL)
	if err != nil {
		t.Fatal(err)
	}
	l := &planLog{t: t, taken: map[string]loggedPlan{}}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		l.mu.Lock()
		l.notices = append(l.notices, n.Message)
		l.mu.Unlock()
	}
	conn, err := pgx.ConnectConfig(f.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(f.ctx) })
	for _, st := range []string{
		"LOAD 'auto_explain'",
		"SET auto_explain.log_analyze = on", "SET auto_explain.log_timing = off",
		"SET auto_explain.log_format = 'json'", "SET auto_explain.log_level = 'notice'",
		"SET client_min_messages = 'notice'", "SET auto_explain.log_min_duration = 0",
		"SET plan_cache_mode = " + planCacheMode,
	} {
		if _, err := conn.Exec(f.ctx, st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	return conn, l
}

// joinFilterRemoved sums, over every node of a plan, the rows its join
// filter discarded (EXPLAIN reports them per loop), and returns with it the
// plan's nodes, one line each, for the failure message.
func joinFilterRemoved(t *testing.T, raw json.RawMessage, depth int) (float64, string) {
	t.Helper()
	var n struct {
		Type     string            `json:"Node Type"`
		Relation string            `json:"Relation Name"`
		Index    string            `json:"Index Name"`
		CTE      string            `json:"CTE Name"`
		Join     string            `json:"Join Filter"`
		Removed  float64           `json:"Rows Removed by Join Filter"`
		Rows     float64           `json:"Actual Rows"`
		Loops    float64           `json:"Actual Loops"`
		Plans    []json.RawMessage `json:"Plans"`
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		t.Fatalf("plan node: %v", err)
	}
	total := n.Removed * max(n.Loops, 1)
	text := fmt.Sprintf("%s%s %s%s%s rows=%.0f loops=%.0f", strings.Repeat("  ", depth), n.Type, n.Relation, n.Index, n.CTE, n.Rows, n.Loops)
	if n.Join != "" {
		text += fmt.Sprintf(" join filter %s removed %.0f per loop", n.Join, n.Removed)
	}
	text += "\n"
	for _, c := range n.Plans {
		r, s := joinFilterRemoved(t, c, depth+1)
		total += r
		text += s
	}
	return total, text
}
