package benchkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/pgoutbox/pgoutbox/outbox"
)

// ApplicationName prefixes the application_name of the harness's sessions,
// which ends in the process id: the harness finds its own sessions by it, to
// wait for them to close (and so flush their statistics) before reading WAL
// counters, and to sample what they wait on, without waiting on another
// benchmark's sessions on the same server.
const ApplicationName = "pgoutbox-bench"

// Config configures Open.
type Config struct {
	// URL is the server's connection string. The harness never starts a
	// server itself (see package benchserver for a Testcontainers one), so
	// that the operator's binary need not carry a container stack.
	URL string
	// MaxConns sizes the pool; 0 means 64.
	MaxConns int32
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
	// Evidence collects, for every window, what explains a figure: checkpoints,
	// table scans and autovacuums, sampled wait events and, where the server
	// loads pg_stat_statements, the costliest statements, and, where Logs
	// can read the server's log and the server loads auto_explain, the plans
	// of statements slower than its log_min_duration. It installs
	// pg_stat_statements in the database and resets its counters at every
	// window, so it is for benchmark servers, not an operator's.
	Evidence bool
	// Logs, when set, returns the server's log so far (a container's
	// output); the evidence takes auto_explain's plans from it.
	Logs func(ctx context.Context) (io.ReadCloser, error)
}

// Harness is one benchmark session on one PostgreSQL server: the pool every
// scenario runs on, the server's settings, and the accounting (WAL, evidence)
// around each measured window.
type Harness struct {
	Pool     *pgxpool.Pool
	Settings Settings
	Progress io.Writer

	sql        SQL
	evidence   bool
	statements bool // pg_stat_statements is loaded and installed
	logs       logReader
	appName    string
}

// SessionName is the application_name of the harness's sessions. A session
// the caller opens apart (one a window must not wait for) takes another.
func (h *Harness) SessionName() string { return h.appName }

// Settings are the server settings a figure depends on.
type Settings struct {
	ServerVersion          string `db:"server_version"`
	ServerVersionNum       int    `db:"server_version_num"`
	Fsync                  string `db:"fsync"`
	SynchronousCommit      string `db:"synchronous_commit"`
	FullPageWrites         string `db:"full_page_writes"`
	SharedBuffers          string `db:"shared_buffers"`
	MaxWALSize             string `db:"max_wal_size"`
	CheckpointTimeout      string `db:"checkpoint_timeout"`
	SharedPreloadLibraries string `db:"shared_preload_libraries"`
}

// Durability names the commit mode of a server for reports.
func (s Settings) Durability() string {
	if s.Fsync == "on" && s.SynchronousCommit != "off" {
		return "durable (fsync on, synchronous_commit " + s.SynchronousCommit + ")"
	}
	return fmt.Sprintf("not durable (fsync %s, synchronous_commit %s)", s.Fsync, s.SynchronousCommit)
}

// Summary is one line for a report's setup section.
func (s Settings) Summary() string {
	return fmt.Sprintf("PostgreSQL %s, %s, full_page_writes %s, shared_buffers %s, max_wal_size %s, checkpoint_timeout %s",
		s.ServerVersion, s.Durability(), s.FullPageWrites, s.SharedBuffers, s.MaxWALSize, s.CheckpointTimeout)
}

// Open connects to cfg.URL, migrates the pgoutbox schema and reads the
// server's settings. Errors name the host, never the password.
func Open(ctx context.Context, cfg Config) (*Harness, error) {
	if cfg.URL == "" {
		return nil, errors.New("benchkit: no database URL")
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("benchkit: parsing the database URL: %w", err)
	}
	pcfg.MaxConns = cfg.MaxConns
	if pcfg.MaxConns == 0 {
		pcfg.MaxConns = 64
	}
	appName := fmt.Sprintf("%s-%d", ApplicationName, os.Getpid())
	pcfg.ConnConfig.RuntimeParams["application_name"] = appName
	where := fmt.Sprintf("%s:%d/%s", pcfg.ConnConfig.Host, pcfg.ConnConfig.Port, pcfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("benchkit: connecting to %s: %w", where, err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("benchkit: connecting to %s: %w", where, err)
	}
	h := &Harness{Pool: pool, Progress: cfg.Progress, sql: harnessSQL(), evidence: cfg.Evidence, logs: cfg.Logs, appName: appName}
	if h.Progress == nil {
		h.Progress = io.Discard
	}
	if err := h.open(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return h, nil
}

func (h *Harness) open(ctx context.Context) error {
	db := stdlib.OpenDBFromPool(h.Pool)
	err := outbox.Migrate(ctx, db)
	_ = db.Close()
	if err != nil {
		return err
	}
	if h.Settings, err = QueryOne[Settings](ctx, h.sql, h.Pool, "server_settings", nil); err != nil {
		return err
	}
	if h.evidence && strings.Contains(h.Settings.SharedPreloadLibraries, "pg_stat_statements") {
		if err := h.sql.Exec(ctx, h.Pool, "statements_install", nil); err != nil {
			return err
		}
	}
	avail, err := QueryOne[struct {
		Available bool `db:"available"`
	}](ctx, h.sql, h.Pool, "statements_available", nil)
	if err != nil {
		return err
	}
	h.statements = avail.Available
	return nil
}

// Close closes the pool.
func (h *Harness) Close() { h.Pool.Close() }

// Exec runs a script of the caller's SQL on the pool (see SQL).
func (h *Harness) Exec(ctx context.Context, s SQL, name string) error {
	return s.Exec(ctx, h.Pool, name, nil)
}

// Reset prepares the server for the next run: it runs the caller's reset
// scripts (truncating and vacuuming each system's tables, as River's own
// bench does), then checkpoints, so that every run starts alike and none
// pays for the WAL an earlier one wrote (a continuous run writes hundreds of
// megabytes; the third of three continuous runs was repeatedly the slowest
// without the checkpoint).
func (h *Harness) Reset(ctx context.Context, s SQL, scripts ...string) error {
	for _, name := range scripts {
		if err := s.Exec(ctx, h.Pool, name, nil); err != nil {
			return err
		}
	}
	return h.sql.Exec(ctx, h.Pool, "checkpoint", nil)
}

// settle closes the harness's sessions and waits until the server has seen
// them go. A backend adds its WAL records and table counters to the
// statistics views only when it flushes them, at exit or about a second
// after going idle; closing the sessions makes the readings that follow
// exact instead of up to a second behind.
func (h *Harness) settle(ctx context.Context) error {
	h.Pool.Reset()
	deadline := time.Now().Add(30 * time.Second)
	for {
		open, err := QueryOne[struct {
			Sessions int64 `db:"sessions"`
		}](ctx, h.sql, h.Pool, "sessions_open", map[string]any{"application_name": h.appName})
		if err != nil {
			return err
		}
		if open.Sessions == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("benchkit: %d sessions of the last run still open after 30s", open.Sessions)
		}
		// The pool closes connections that were in use when Reset ran as
		// they are released; close the idle ones opened since.
		h.Pool.Reset()
		time.Sleep(20 * time.Millisecond)
	}
}

// TableStats are a table's statistics counters and sizes.
type TableStats struct {
	LiveTuples    int64 `db:"live_tuples"`
	DeadTuples    int64 `db:"dead_tuples"`
	SeqScans      int64 `db:"seq_scans"`
	SeqTuplesRead int64 `db:"seq_tuples_read"`
	IndexScans    int64 `db:"index_scans"`
	Updates       int64 `db:"updates"`
	HotUpdates    int64 `db:"hot_updates"`
	Autovacuums   int64 `db:"autovacuums"`
	Autoanalyzes  int64 `db:"autoanalyzes"`
	TableBytes    int64 `db:"table_bytes"`
	IndexBytes    int64 `db:"index_bytes"`
}

// Table reads a table's statistics (name as to_regclass takes it, such as
// "pgoutbox_message" or "pgq.event_1"), after settling the harness's
// sessions so that their counts are in.
func (h *Harness) Table(ctx context.Context, name string) (TableStats, error) {
	if err := h.settle(ctx); err != nil {
		return TableStats{}, err
	}
	return h.table(ctx, name)
}

// TableNoSettle reads a table's statistics without closing the harness's
// sessions first: counts of sessions still open may not be in yet.
func (h *Harness) TableNoSettle(ctx context.Context, name string) (TableStats, error) {
	return h.table(ctx, name)
}

func (h *Harness) table(ctx context.Context, name string) (TableStats, error) {
	rows, err := Query[TableStats](ctx, h.sql, h.Pool, "table_stats", map[string]any{"table_name": name})
	if err != nil {
		return TableStats{}, err
	}
	if len(rows) == 0 {
		return TableStats{}, fmt.Errorf("benchkit: no table %q", name)
	}
	return rows[0], nil
}

// DeleteScope removes a scope's messages (what outboxctl bench leaves).
func (h *Harness) DeleteScope(ctx context.Context, scope string) error {
	return h.sql.Exec(ctx, h.Pool, "scope_delete", map[string]any{"scope": scope})
}
