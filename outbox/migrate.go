package outbox

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/pgoutbox/pgoutbox/schema"
)

const (
	// MigrationTable is goose's version table for pgoutbox's migrations,
	// separate from any goose table the application keeps for its own.
	MigrationTable = "pgoutbox_goose_version"
	// MigrationLockID is the session advisory lock that serialises
	// concurrent migrators (crc32 of "pgoutbox migrations").
	MigrationLockID int64 = 0x559c_3b10
)

// Migrate brings the database's pgoutbox schema up to date with the embedded
// migrations. Several processes may call it at once: an advisory lock lets one
// migrate while the others wait, and a run with nothing to apply changes
// nothing. db is not closed.
func Migrate(ctx context.Context, db *sql.DB) error {
	p, err := NewMigrationProvider(db)
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("outbox: migrate: %w", err)
	}
	return nil
}

// NewMigrationProvider returns a goose provider over the embedded migrations
// with pgoutbox's version table and advisory lock, for callers that need
// more than Migrate (down, status, version). Do not call its Close: goose's
// Close closes db, which the caller owns.
func NewMigrationProvider(db *sql.DB) (*goose.Provider, error) {
	if db == nil {
		return nil, fmt.Errorf("outbox: migrate: %w", invalid("db", "is nil"))
	}
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(MigrationLockID),
		// goose's defaults retry every 5 s; a waiting migrator usually has
		// only a few hundred milliseconds to wait.
		lock.WithLockTimeout(1, 300),
	)
	if err != nil {
		return nil, fmt.Errorf("outbox: migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, schema.Migrations(),
		goose.WithTableName(MigrationTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("outbox: migrate: %w", err)
	}
	return p, nil
}
