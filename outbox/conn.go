package outbox

import (
	"context"
	"errors"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/db"
)

// readOnlyGuard runs statements on a pool and resets the pool when a
// statement finds its session read-only (SQLSTATE 25006). That is what a
// failover looks like from a client whose sessions outlived it: the old
// primary, demoted, still answers on them, but refuses every write, and
// pgxpool would keep those sessions for up to an hour. pgxpool.Pool.Reset
// closes them (idle ones now, busy ones when released), so the next
// statement connects afresh, to whichever server is the primary now.
type readOnlyGuard struct {
	pool *pgxpool.Pool
}

// guard returns conn wrapped by a readOnlyGuard when it is a pool; other
// connections (a pgx.Conn, a caller's transaction) are the caller's to
// replace.
func guard(conn db.DBTX) db.DBTX {
	if pool, ok := conn.(*pgxpool.Pool); ok {
		return readOnlyGuard{pool}
	}
	return conn
}

func (g readOnlyGuard) check(err error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.ReadOnlySQLTransaction {
		g.pool.Reset()
	}
}

func (g readOnlyGuard) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tag, err := g.pool.Exec(ctx, sql, args...)
	g.check(err)
	return tag, err
}

func (g readOnlyGuard) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := g.pool.Query(ctx, sql, args...)
	if err != nil {
		g.check(err)
		return nil, err
	}
	return guardedRows{Rows: rows, g: g}, nil
}

func (g readOnlyGuard) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return guardedRow{row: g.pool.QueryRow(ctx, sql, args...), g: g}
}

// Begin lets EnqueueMany and LockBatch open transactions; errors of the
// statements in them reach the guard through PostgresStore.sawError.
func (g readOnlyGuard) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := g.pool.Begin(ctx)
	g.check(err)
	return tx, err
}

type guardedRows struct {
	pgx.Rows
	g readOnlyGuard
}

func (r guardedRows) Err() error {
	err := r.Rows.Err()
	r.g.check(err)
	return err
}

type guardedRow struct {
	row pgx.Row
	g   readOnlyGuard
}

func (r guardedRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	r.g.check(err)
	return err
}

// sawError passes an error from a statement of a transaction the store began
// on its pool (EnqueueMany, LockBatch) to the pool's guard.
func (s *PostgresStore) sawError(err error) {
	if g, ok := s.conn.(readOnlyGuard); ok {
		g.check(err)
	}
}
