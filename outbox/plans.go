package outbox

import (
	"context"

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
// start of a burst), that plan reads it sequentially, and keeps doing so
// until the next ANALYZE, up to a minute of autovacuum naptime later.
// Measured in the continuous benchmark: claims of 256 messages took 1-10 s
// instead of 10 ms, each reading all 470k rows three times (due rows, acks
// by id, the update's join), and throughput fell from 12,000 to 136-4,000
// messages/s.
//
// Planning is not free: about 1 ms of server time for the claim statement
// (BenchmarkClaimAndAck100), a tenth of a claim of 100 but more than a
// claim of 16 costs, which halved a burn-down by relays of concurrency 16
// (9,962 to 5,099 msg/s). So claims and locks of freshPlanMinLimit messages
// or more are planned afresh, where a bad plan costs most and planning
// least; smaller ones and every other statement keep prepared plans.
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
func (s *PostgresStore) plannedFor(limit int) *db.Queries {
	if limit >= freshPlanMinLimit {
		return s.qf
	}
	return s.q
}
