package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/pgoutbox/pgoutbox/schema"
)

// MigrationTable is goose's version table for pgoutbox's migrations,
// separate from any goose table the application keeps for its own.
const MigrationTable = "pgoutbox_goose_version"

// migrationLockTable holds the migration lock: a row with a lease that the
// migrator renews while it works (goose's table locker). A session advisory
// lock would not do: behind PgBouncer in transaction pooling its lock and
// unlock land on different server connections, and a migrator can wait for
// a lock no client holds any more.
const (
	migrationLockTable = "pgoutbox_goose_lock"
	migrationLockID    = 0x559c_3b10 // crc32 of "pgoutbox migrations"
)

// Migrate brings the database's pgoutbox schema up to date with the embedded
// migrations. Several processes may call it at once, directly or through
// PgBouncer in any pooling mode: a lock row (table pgoutbox_goose_lock) lets
// one migrate while the others wait, and a run with nothing to apply
// changes nothing. A migrator that dies holding the lock delays the others
// by at most the lock's 30-second lease. db is not closed.
//
// The database must use the UTF8 encoding: jsonb holds Unicode, and under
// another server encoding a payload such as {"a":"\u00e9"} would fail at
// insert time and abort the caller's transaction. The first migration
// refuses other encodings and creates nothing.
func Migrate(ctx context.Context, db *sql.DB) error {
	p, err := NewMigrationProvider(db)
	if err != nil {
		return err
	}
	if _, err := Up(ctx, p, 0); err != nil {
		return fmt.Errorf("outbox: migrate: %w", err)
	}
	return nil
}

// MigrateTo is Migrate up to version (included) and no further, for rolling
// deploys that must leave a migration for later: migration 3 drops an index
// that relays of the first release still read, so such a deploy migrates to
// 2, rolls out, then migrates to the end (see the README, "Ordering").
func MigrateTo(ctx context.Context, db *sql.DB, version int64) error {
	if version < 1 {
		return fmt.Errorf("outbox: migrate: %w", invalid("version", "must be at least 1, got %d", version))
	}
	p, err := NewMigrationProvider(db)
	if err != nil {
		return err
	}
	if _, err := Up(ctx, p, version); err != nil {
		return fmt.Errorf("outbox: migrate to %d: %w", version, err)
	}
	return nil
}

// Up applies p's pending migrations, up to version when it is positive,
// running them again when one gave up waiting for a lock (SQLSTATE 55P03:
// the migrations take short lock timeouts rather than queue every reader
// and writer of a busy table behind a long transaction, and each of their
// steps can be run again). It gives up after a minute of such retries.
func Up(ctx context.Context, p *goose.Provider, version int64) ([]*goose.MigrationResult, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		var (
			results []*goose.MigrationResult
			err     error
		)
		if version > 0 {
			results, err = p.UpTo(ctx, version)
		} else {
			results, err = p.Up(ctx)
		}
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != pgerrcode.LockNotAvailable || time.Now().After(deadline) {
			return results, err
		}
		select {
		case <-ctx.Done():
			return results, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// NewMigrationProvider returns a goose provider over the embedded migrations
// with pgoutbox's version table and lock, for callers that need more than
// Migrate (down, status, version). Do not call its Close: goose's Close
// closes db, which the caller owns.
func NewMigrationProvider(db *sql.DB) (*goose.Provider, error) {
	if db == nil {
		return nil, fmt.Errorf("outbox: migrate: %w", invalid("db", "is nil"))
	}
	locker, err := lock.NewPostgresTableLocker(
		lock.WithTableName(migrationLockTable),
		lock.WithTableLockID(migrationLockID),
		// goose's defaults probe every 5 s; a waiting migrator usually has
		// only a few hundred milliseconds to wait.
		lock.WithTableLockTimeout(250*time.Millisecond, 1200),
		lock.WithTableLeaseDuration(30*time.Second),
		lock.WithTableHeartbeatInterval(5*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("outbox: migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, schema.Migrations(),
		goose.WithTableName(MigrationTable),
		goose.WithLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("outbox: migrate: %w", err)
	}
	return p, nil
}
