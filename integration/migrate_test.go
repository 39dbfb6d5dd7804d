package integration

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
)

func openSQL(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var ok bool
	if err := db.QueryRow("SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func appliedVersions(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + outbox.MigrationTable + " WHERE is_applied").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Four processes migrating one empty database at once all succeed: the
// advisory lock lets one apply the migrations and the others find nothing to do.
func TestConcurrentMigrateSucceeds(t *testing.T) {
	t.Parallel()
	d := pgtest.NewEmptyDB(t, "template1")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db := openSQL(t, d.URL) // a pool per "process"
			errs[i] = outbox.Migrate(t.Context(), db)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrator %d: %v", i, err)
		}
	}
	db := openSQL(t, d.URL)
	if !tableExists(t, db, "pgoutbox_message") {
		t.Fatal("pgoutbox_message missing")
	}
	applied := appliedVersions(t, db)
	// A second run is a no-op.
	if err := outbox.Migrate(t.Context(), db); err != nil {
		t.Fatal(err)
	}
	if again := appliedVersions(t, db); again != applied {
		t.Errorf("second Migrate recorded %d versions, first %d", again, applied)
	}
	// Migrate does not close the caller's database handle.
	if err := db.PingContext(t.Context()); err != nil {
		t.Errorf("db unusable after Migrate: %v", err)
	}
}

func TestMigrateDownThenUpRoundTrips(t *testing.T) {
	t.Parallel()
	d := pgtest.NewEmptyDB(t, "template1")
	db := openSQL(t, d.URL)
	ctx := t.Context()
	if err := outbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	p, err := outbox.NewMigrationProvider(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("down: %v", err)
	}
	if tableExists(t, db, "pgoutbox_message") {
		t.Fatal("pgoutbox_message still there after down")
	}
	var leftovers int
	if err := db.QueryRow(`SELECT count(*) FROM pg_class WHERE relname LIKE 'pgoutbox_message%'`).Scan(&leftovers); err != nil || leftovers != 0 {
		t.Fatalf("%d relations left after down (%v)", leftovers, err)
	}
	if err := outbox.Migrate(ctx, db); err != nil {
		t.Fatalf("up again: %v", err)
	}
	// The schema works after the round trip.
	pool := pgtest.Pool(t, d.URL)
	store := outbox.NewPostgresStore(pool)
	if _, err := store.Enqueue(ctx, draft(`{}`)); err != nil {
		t.Fatalf("enqueue after round trip: %v", err)
	}
}

// The migration files work with the goose CLI's code path (the package-level
// API that cmd/goose drives, reading files from disk), and the result is the
// same schema and version table that Migrate keeps.
func TestGooseCLIPathAgreesWithMigrate(t *testing.T) {
	d := pgtest.NewEmptyDB(t, "template1")
	db := openSQL(t, d.URL)
	goose.SetTableName(outbox.MigrationTable)
	if err := goose.SetDialect("postgres"); err != nil {
		t.Fatal(err)
	}
	goose.SetLogger(goose.NopLogger())
	// goose -dir ../schema -table pgoutbox_goose_version postgres "$DSN" up
	if err := goose.RunContext(context.Background(), "up", db, "../schema"); err != nil {
		t.Fatalf("goose up from disk: %v", err)
	}
	if !tableExists(t, db, "pgoutbox_message") {
		t.Fatal("goose CLI path created no table")
	}
	applied := appliedVersions(t, db)
	if err := outbox.Migrate(t.Context(), db); err != nil {
		t.Fatal(err)
	}
	if again := appliedVersions(t, db); again != applied {
		t.Errorf("Migrate after goose CLI applied more versions (%d, was %d)", again, applied)
	}
	if err := goose.RunContext(context.Background(), "reset", db, "../schema"); err != nil {
		t.Fatalf("goose reset from disk: %v", err)
	}
	if tableExists(t, db, "pgoutbox_message") {
		t.Fatal("goose down left the table")
	}
}

// A database that is not UTF8 is refused before anything is created: in
// SQL_ASCII, {"a":"\u00e9"} (and \u2028, which Go's json.Marshal emits)
// would pass validation and then fail at insert time with SQLSTATE 0A000,
// aborting the producer's transaction.
func TestMigrateRefusesANonUTF8Database(t *testing.T) {
	t.Parallel()
	d := pgtest.NewEncodedDB(t, "SQL_ASCII")
	db := openSQL(t, d.URL)
	err := outbox.Migrate(t.Context(), db)
	if err == nil || !strings.Contains(err.Error(), "UTF8") || !strings.Contains(err.Error(), "SQL_ASCII") {
		t.Fatalf("Migrate on SQL_ASCII: %v, want a refusal naming the encodings", err)
	}
	if tableExists(t, db, "pgoutbox_message") {
		t.Fatal("the refused migration created the table")
	}
}
