package outbox

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgoutbox/pgoutbox/db"
)

// freshPlans runs statements as pgx's unnamed statement
// (QueryExecModeCacheDescribe) so that PostgreSQL plans each execution for
// the table as it is then.
//
// An outbox table swings between nearly empty and hundreds of thousands of
// rows within seconds. A prepared statement caches a generic plan after five
// runs; made while the table was small (after a purge, a TRUNCATE, or at the
// start of a burst), that plan reads it sequentially, even for a lookup by
// primary key (on a table of one page a sequential scan is the cheaper
// plan), and keeps doing so until the next ANALYZE, up to a minute of
// autovacuum naptime later. The benchmark's plan-stability scenario
// measures it per statement (BENCHMARKS.md, "Figures behind design
// choices"): it took large claims, lock-mode batches and acks to a fraction
// of their rate.
//
// Planning is not free, though: a claim statement costs about a
// millisecond to plan, more than a claim of 16 messages costs to run. So
// every statement that reads the table is planned afresh, but for two
// kinds that keep prepared plans: inserts (they read no table, and planning
// each Enqueue would add a fifth to its cost), and claims and locks of fewer
// than freshPlanMinLimit messages, whose index scans under ORDER BY ...
// LIMIT stay index scans in a generic plan and whose planning would cost
// more than a bad plan risks.
//
// A caller who already chose a mode for a statement (a QueryExecMode as the
// first argument) keeps it. The mode works through PgBouncer in transaction
// mode, as it uses no named prepared statements.
type freshPlans struct{ conn db.DBTX }

func withMode(args []any) []any {
	if len(args) > 0 {
		if _, ok := args[0].(pgx.QueryExecMode); ok {
			return args
		}
	}
	return append([]any{pgx.QueryExecModeCacheDescribe}, args...)
}

func (f freshPlans) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return f.conn.Exec(ctx, sql, withMode(args)...)
}

func (f freshPlans) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return f.conn.Query(ctx, sql, withMode(args)...)
}

func (f freshPlans) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return f.conn.QueryRow(ctx, sql, withMode(args)...)
}

// queries returns the generated accessors on conn, planned per execution.
func queries(conn db.DBTX) *db.Queries { return db.New(freshPlans{conn}) }

// freshPlanMinLimit: claims and locks of at least this many messages are
// planned afresh.
const freshPlanMinLimit = 64

// plannedFor returns the accessors for a claim or lock of limit messages.
// They run through claimConn, which spares pgx allocations per message.
func (s *PostgresStore) plannedFor(limit int) *db.Queries {
	if limit >= freshPlanMinLimit {
		return db.New(claimConn{conn: freshPlans{s.conn}, refArgs: true})
	}
	return db.New(claimConn{conn: generational{conn: s.conn, gen: s.cfg.plans.gen.Load()}})
}

// Small claims and locks keep prepared plans, and so keep the risk above: a
// generic plan made while the table was nearly empty (a new deployment, a
// TRUNCATE, a purge that emptied it) reads it sequentially once a burst
// has grown it, until autovacuum's next ANALYZE, up to a minute later.
// planGeneration bounds that window: while a relay drains a backlog (its
// claims come back full, the very time a bad plan costs most), the
// statements' text changes every planRenewal, so each connection prepares
// them anew, plans its first executions for the table as it is then, and
// settles on a generic plan made for the grown table. Renewing costs a few
// plannings per connection every planRenewal of backlog.
type planGeneration struct {
	now     func() time.Time
	gen     atomic.Int64
	mu      sync.Mutex
	renewed time.Time
}

const planRenewal = 5 * time.Second

// backlog notes a claim or lock that came back full, and renews the plans
// when the last renewal is older than planRenewal.
func (g *planGeneration) backlog() {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.renewed) >= planRenewal {
		g.renewed = now
		g.gen.Add(1)
	}
}

// generational runs statements under a comment naming the plan generation,
// so that pgx, which caches prepared statements by their text, prepares
// them anew in each generation.
type generational struct {
	conn db.DBTX
	gen  int64
}

func (g generational) text(sql string) string {
	if g.gen == 0 {
		return sql
	}
	return sql + "\n-- pgoutbox plan generation " + strconv.FormatInt(g.gen, 10)
}

func (g generational) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return g.conn.Exec(ctx, g.text(sql), args...)
}

func (g generational) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return g.conn.Query(ctx, g.text(sql), args...)
}

func (g generational) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return g.conn.QueryRow(ctx, g.text(sql), args...)
}
