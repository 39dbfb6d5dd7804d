// Package pgtest gives each test a fresh, migrated database on a shared
// PostgreSQL server.
//
// Main (called from TestMain) gets a server once per test binary: the one
// $OUTBOX_TEST_DATABASE_URL names, or a Testcontainers container (see
// pgserver). It migrates a template database once; each test then gets its
// own database cloned from the template, which takes tens of milliseconds and
// isolates tests completely, so they can run in parallel. When no server can
// be had the run fails with the reason: a suite that skips everything proves
// nothing.
package pgtest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for goose

	"github.com/pgoutbox/pgoutbox/internal/pgserver"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/schema"
)

// DatabaseURLEnv names the environment variable that points the suite at an
// existing server (a superuser connection string) instead of a container.
const DatabaseURLEnv = "OUTBOX_TEST_DATABASE_URL"

// env is the state Main sets up for the test binary.
type env struct {
	server   *pgserver.Server
	admin    *pgxpool.Pool
	prefix   string
	template string
	seq      atomic.Int64

	sharedOnce sync.Once
	shared     *DB
	sharedDrop func() error
	sharedErr  error
}

var current *env //nolint:gochecknoglobals // one server per test binary, set by Main before any test runs

// Main runs the tests of a package against a fresh server setup and exits.
func Main(m *testing.M) {
	os.Exit(runWith(m, nil))
}

func runWith(m *testing.M, before func(context.Context) (func() error, error)) int {
	ctx := context.Background()
	e, err := setup(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: no PostgreSQL for the integration tests: %v\n", err)
		return 1
	}
	current = e
	code := 1
	after := func() error { return nil }
	if before != nil {
		after, err = before(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
	}
	if err == nil {
		code = m.Run()
		if err := after(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
	}
	if e.shared != nil {
		e.shared.Pool.Close()
		if err := e.sharedDrop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
	}
	e.admin.Close()
	if err := e.server.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
	}
	return code
}

func setup(ctx context.Context) (*env, error) {
	var srv *pgserver.Server
	if u := os.Getenv(DatabaseURLEnv); u != "" {
		srv = pgserver.External(u)
	} else {
		s, err := pgserver.StartContainer(ctx, pgserver.FastSettings())
		if err != nil {
			return nil, err
		}
		srv = s
		// Processes this one starts (fuzzing workers, a killed relay's
		// subprocess) use the same server instead of starting their own.
		_ = os.Setenv(DatabaseURLEnv, s.URL)
	}
	admin, err := pgxpool.New(ctx, srv.URL)
	if err != nil {
		_ = srv.Stop()
		return nil, fmt.Errorf("connecting to %s: %w", redact(srv.URL), err)
	}
	if err := admin.Ping(ctx); err != nil {
		admin.Close()
		_ = srv.Stop()
		return nil, fmt.Errorf("connecting to %s: %w", redact(srv.URL), err)
	}
	// Databases from an earlier, killed run of this binary on an external
	// server would otherwise pile up; each run uses its own prefix.
	template, err := templateName()
	if err != nil {
		admin.Close()
		_ = srv.Stop()
		return nil, err
	}
	e := &env{
		server:   srv,
		admin:    admin,
		prefix:   fmt.Sprintf("pgoutbox_t%d_%d", os.Getpid(), time.Now().UnixNano()%1e6),
		template: template,
	}
	if err := e.createTemplate(ctx); err != nil {
		admin.Close()
		_ = srv.Stop()
		return nil, err
	}
	return e, nil
}

// templateName names the template after a hash of the migrations, so that a
// server kept between runs never hands out a template of an older schema.
func templateName() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(schema.Migrations(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(schema.Migrations(), path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hashing the migrations: %w", err)
	}
	return fmt.Sprintf("pgoutbox_template_%x", h.Sum(nil)[:6]), nil
}

// createTemplate migrates the template database once per test binary. Test
// binaries of different packages may run at once against one server, so the
// template is built under a name of its own and renamed into place; a
// template that is already there is reused.
func (e *env) createTemplate(ctx context.Context) error {
	var exists bool
	if err := e.admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", e.template).Scan(&exists); err != nil {
		return fmt.Errorf("looking for the template database: %w", err)
	}
	if exists {
		return nil
	}
	building := e.prefix + "_template"
	if _, err := e.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{building}.Sanitize()); err != nil {
		return fmt.Errorf("creating the template database: %w", err)
	}
	sqlDB, err := sql.Open("pgx", withDatabase(e.server.URL, building))
	if err != nil {
		return err
	}
	err = outbox.Migrate(ctx, sqlDB)
	_ = sqlDB.Close()
	if err != nil {
		return fmt.Errorf("migrating the template database: %w", err)
	}
	_, err = e.admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{building}.Sanitize()+" RENAME TO "+pgx.Identifier{e.template}.Sanitize())
	if err != nil {
		// Another binary won the race; use its template and drop ours.
		_, _ = e.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{building}.Sanitize())
	}
	return nil
}

// DB is one test's database.
type DB struct {
	// Name is the database's name.
	Name string
	// URL connects to it as a superuser.
	URL string
	// Pool is a pool on it, closed when the test ends.
	Pool *pgxpool.Pool
}

// NewDB creates a database cloned from the migrated template, and drops it
// when the test ends.
func NewDB(t testing.TB) *DB {
	t.Helper()
	d := NewEmptyDB(t, "")
	d.Pool = Pool(t, d.URL)
	return d
}

// NewEmptyDB creates a database from the given template ("" for the migrated
// one, "template1" for an unmigrated one) without a pool, and drops it when
// the test ends.
func NewEmptyDB(t testing.TB, template string) *DB {
	t.Helper()
	return newEmptyDB(t, template, "")
}

// NewEncodedDB creates an empty, unmigrated database with the given server
// encoding (from template0, C locale), and drops it when the test ends.
func NewEncodedDB(t testing.TB, encoding string) *DB {
	t.Helper()
	return newEmptyDB(t, "template0", " ENCODING "+quoteLiteral(encoding)+" LC_COLLATE 'C' LC_CTYPE 'C'")
}

// NewICUDB creates an empty, unmigrated UTF8 database whose default
// collation is the ICU locale given (say "en-US", where "a" sorts before
// "B", as in the official image's en_US.utf8), and drops it when the test
// ends.
func NewICUDB(t testing.TB, icuLocale string) *DB {
	t.Helper()
	return newEmptyDB(t, "template0", " ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE "+quoteLiteral(icuLocale)+
		" LC_COLLATE 'C' LC_CTYPE 'C'")
}

func newEmptyDB(t testing.TB, template, options string) *DB {
	t.Helper()
	d, drop, err := createDB(context.Background(), template, options)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return d
}

// MainWithURL is Main for packages whose tests (runnable examples, say)
// cannot take a testing.T: it creates one migrated database for the whole
// binary and exports its connection string in the environment variable env
// before the tests run.
func MainWithURL(m *testing.M, env string) {
	os.Exit(runWith(m, func(ctx context.Context) (func() error, error) {
		d, drop, err := createDB(ctx, "", "")
		if err != nil {
			return nil, err
		}
		return drop, os.Setenv(env, d.URL)
	}))
}

// createDB creates a database from template with the CREATE DATABASE
// options given (appended as they are).
func createDB(ctx context.Context, template, options string) (*DB, func() error, error) {
	e := current
	if e == nil {
		return nil, nil, errors.New("Main did not run; call pgtest.Main(m) from TestMain")
	}
	if template == "" {
		template = e.template
	}
	name := fmt.Sprintf("%s_%d", e.prefix, e.seq.Add(1))
	// CREATE DATABASE fails while anyone else is connected to the template,
	// which another test binary may briefly be; retry for a while.
	var err error
	for range 50 {
		create := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE " + pgx.Identifier{template}.Sanitize() + options
		_, err = e.admin.Exec(ctx, create)
		if err == nil || !strings.Contains(err.Error(), "is being accessed by other users") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("creating database %s: %w", name, err)
	}
	drop := func() error {
		// WITH (FORCE) ends sessions a test left behind (a killed relay, say).
		if _, err := e.admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("dropping database %s: %w", name, err)
		}
		return nil
	}
	return &DB{Name: name, URL: withDatabase(e.server.URL, name)}, drop, nil
}

// quoteLiteral quotes s as an SQL string literal (CREATE DATABASE takes no
// parameters).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Server returns the server Main set up, for tests that need to act on it
// (restart the container, say).
func Server() *pgserver.Server { return current.server }

// withDatabase returns the connection string u pointed at database name.
func withDatabase(u, name string) string {
	parsed, err := url.Parse(u)
	if err != nil || parsed.Scheme == "" {
		// Keyword/value form: a later dbname overrides an earlier one.
		return u + " dbname=" + name
	}
	parsed.Path = "/" + name
	return parsed.String()
}

// redact hides the password of a URL-form connection string.
func redact(u string) string {
	parsed, err := url.Parse(u)
	if err != nil || parsed.Scheme == "" {
		return "(connection string)"
	}
	return parsed.Redacted()
}

// SharedDB returns one migrated database for the whole process, created on
// first use and dropped when Main returns: for fuzz functions, which run
// thousands of times and cannot each afford a database.
func SharedDB(tb testing.TB) *DB {
	tb.Helper()
	e := current
	if e == nil {
		tb.Fatal("pgtest: Main did not run; call pgtest.Main(m) from TestMain")
	}
	e.sharedOnce.Do(func() {
		d, drop, err := createDB(context.Background(), "", "")
		if err != nil {
			e.sharedErr = err
			return
		}
		pool, err := pgxpool.New(context.Background(), d.URL)
		if err != nil {
			_ = drop()
			e.sharedErr = err
			return
		}
		d.Pool = pool
		e.shared, e.sharedDrop = d, drop
	})
	if e.sharedErr != nil {
		tb.Fatalf("pgtest: shared database: %v", e.sharedErr)
	}
	return e.shared
}

// Pool opens a pool on url and closes it when the test ends.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}
