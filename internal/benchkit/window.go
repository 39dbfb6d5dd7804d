package benchkit

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// WAL is what the server wrote to its write-ahead log in a window.
type WAL struct {
	// Bytes is the difference of pg_current_wal_insert_lsn() at the window's
	// ends: everything the whole server wrote in between, whoever wrote it
	// (every session and database, autovacuum, checkpoints, page headers).
	Bytes int64 `json:"bytes"`
	// Records and FPI (full-page images) come from pg_stat_wal (PostgreSQL
	// 14+), read after the window's sessions closed and flushed their
	// counts; background processes flush theirs on their own schedule.
	Records int64 `json:"records"`
	FPI     int64 `json:"fpi"`
	// Measured says the window was measured; RecordsKnown that the server
	// has pg_stat_wal.
	Measured     bool `json:"measured"`
	RecordsKnown bool `json:"records_known"`
}

// Add sums two windows' WAL.
func (w WAL) Add(o WAL) WAL {
	return WAL{
		Bytes: w.Bytes + o.Bytes, Records: w.Records + o.Records, FPI: w.FPI + o.FPI,
		Measured: w.Measured || o.Measured, RecordsKnown: w.RecordsKnown && o.RecordsKnown,
	}
}

// PerMessage is bytes and records per message; ok is false when nothing was
// measured or n is zero.
func (w WAL) PerMessage(n int64) (bytes, records float64, ok bool) {
	if !w.Measured || n <= 0 {
		return 0, 0, false
	}
	return float64(w.Bytes) / float64(n), float64(w.Records) / float64(n), true
}

type walStats struct {
	Records int64 `db:"records"`
	FPI     int64 `db:"fpi"`
}

type databaseStats struct {
	Commits   int64 `db:"commits"`
	Rollbacks int64 `db:"rollbacks"`
	Deadlocks int64 `db:"deadlocks"`
}

type checkpoints struct {
	Timed                 int64 `db:"timed"`
	Requested             int64 `db:"requested"`
	BuffersWritten        int64 `db:"buffers_written"`
	BackendBuffersWritten int64 `db:"backend_buffers_written"`
}

// Statement is one statement's share of a window (pg_stat_statements).
type Statement struct {
	Query           string  `db:"query" json:"query"`
	Calls           int64   `db:"calls" json:"calls"`
	TotalMillis     float64 `db:"total_ms" json:"total_ms"`
	MeanMillis      float64 `db:"mean_ms" json:"mean_ms"`
	RowsPerCall     float64 `db:"rows_per_call" json:"rows_per_call"`
	BlocksPerCall   float64 `db:"blocks_per_call" json:"blocks_per_call"`
	WALBytesPerCall float64 `db:"wal_bytes_per_call" json:"wal_bytes_per_call"`
}

// Activity is how often sampled sessions were found in one state.
type Activity struct {
	What     string `db:"activity" json:"what"`
	Sessions int64  `db:"sessions" json:"sessions"`
}

// Evidence is what the server did during a window, to explain its figure.
type Evidence struct {
	WAL     WAL           `json:"wal"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Checkpoints that started in the window (timed, requested) and the
	// buffers checkpoints and backends wrote.
	CheckpointsTimed, CheckpointsRequested int64
	CheckpointBuffers, BackendBuffers      int64
	// Commits, Rollbacks and Deadlocks are this database's transaction
	// counters over the window (pg_stat_database).
	Commits, Rollbacks, Deadlocks int64
	// LockLog are the server's log lines about lock waits longer than
	// deadlock_timeout (log_lock_waits) and deadlocks, when the harness can
	// read the log; LockLogLines counts them all.
	LockLog      []string `json:"lock_log,omitempty"`
	LockLogLines int      `json:"lock_log_lines"`
	// Tables are the counters' differences over the window of each watched
	// table, and its size and dead tuples at the end.
	Tables map[string]TableDelta `json:"tables,omitempty"`
	// Activity counts the harness's busy sessions by wait event, sampled
	// every 100 ms; Samples is the number of samples.
	Activity []Activity `json:"activity,omitempty"`
	Samples  int        `json:"samples"`
	// Statements are the costliest statements (pg_stat_statements, when
	// the server loads it).
	Statements []Statement `json:"statements,omitempty"`
	// Plans are the slowest statements' plans auto_explain logged in the
	// window (when the server loads it and the harness can read its log).
	Plans []Plan `json:"plans,omitempty"`
}

// TableDelta is a table's counters over a window, and its state at the end.
type TableDelta struct {
	SeqScans, SeqTuplesRead, IndexScans int64
	Updates, HotUpdates                 int64
	Autovacuums, Autoanalyzes           int64
	Before, After                       TableStats
}

// Window is a measured stretch of a run.
type Window struct {
	h       *Harness
	start   time.Time
	lsn     int64
	wal     walStats
	ckpt    checkpoints
	dbStats databaseStats
	tables  map[string]TableStats
	watch   []string
	sampler *sampler
	logAt   int64
}

// Begin starts a window: it settles the harness's sessions (see settle),
// reads the WAL position and counters and, with evidence on, resets
// pg_stat_statements, reads the watched tables' counters and starts
// sampling wait events. Everything the window's work does must happen on
// the harness's pool and be finished before End.
func (h *Harness) Begin(ctx context.Context, watch ...string) (*Window, error) {
	if err := h.settle(ctx); err != nil {
		return nil, err
	}
	w := &Window{h: h, watch: watch, tables: map[string]TableStats{}}
	var err error
	if w.wal, err = h.walStats(ctx); err != nil {
		return nil, err
	}
	if h.evidence {
		if w.ckpt, err = h.checkpoints(ctx); err != nil {
			return nil, err
		}
		if w.dbStats, err = QueryOne[databaseStats](ctx, h.sql, h.Pool, "database_stats", nil); err != nil {
			return nil, err
		}
		for _, t := range watch {
			if w.tables[t], err = h.table(ctx, t); err != nil {
				return nil, err
			}
		}
		if h.statements {
			if err := h.sql.Exec(ctx, h.Pool, "statements_reset", nil); err != nil {
				return nil, err
			}
		}
		if w.logAt, err = h.logSize(ctx); err != nil {
			return nil, err
		}
	}
	if w.lsn, err = h.walPosition(ctx); err != nil {
		return nil, err
	}
	if h.evidence {
		w.sampler = h.sample(100 * time.Millisecond)
	}
	w.start = time.Now()
	return w, nil
}

// End closes the window and returns what happened in it.
func (w *Window) End(ctx context.Context) (Evidence, error) {
	elapsed := time.Since(w.start)
	h := w.h
	var ev Evidence
	ev.Elapsed = elapsed
	if w.sampler != nil {
		ev.Activity, ev.Samples = w.sampler.stop()
	}
	if err := h.settle(ctx); err != nil {
		return ev, err
	}
	end, err := h.walPosition(ctx)
	if err != nil {
		return ev, err
	}
	stats, err := h.walStats(ctx)
	if err != nil {
		return ev, err
	}
	ev.WAL = WAL{
		Bytes: end - w.lsn, Records: stats.Records - w.wal.Records, FPI: stats.FPI - w.wal.FPI,
		Measured: true, RecordsKnown: h.Settings.ServerVersionNum >= 140000,
	}
	if !h.evidence {
		return ev, nil
	}
	ck, err := h.checkpoints(ctx)
	if err != nil {
		return ev, err
	}
	ev.CheckpointsTimed, ev.CheckpointsRequested = ck.Timed-w.ckpt.Timed, ck.Requested-w.ckpt.Requested
	ev.CheckpointBuffers, ev.BackendBuffers = ck.BuffersWritten-w.ckpt.BuffersWritten, ck.BackendBuffersWritten-w.ckpt.BackendBuffersWritten
	dbs, err := QueryOne[databaseStats](ctx, h.sql, h.Pool, "database_stats", nil)
	if err != nil {
		return ev, err
	}
	ev.Commits, ev.Rollbacks, ev.Deadlocks = dbs.Commits-w.dbStats.Commits, dbs.Rollbacks-w.dbStats.Rollbacks, dbs.Deadlocks-w.dbStats.Deadlocks
	ev.Tables = map[string]TableDelta{}
	for _, t := range w.watch {
		after, err := h.table(ctx, t)
		if err != nil {
			return ev, err
		}
		b := w.tables[t]
		ev.Tables[t] = TableDelta{
			SeqScans: after.SeqScans - b.SeqScans, SeqTuplesRead: after.SeqTuplesRead - b.SeqTuplesRead,
			IndexScans: after.IndexScans - b.IndexScans, Updates: after.Updates - b.Updates,
			HotUpdates: after.HotUpdates - b.HotUpdates, Autovacuums: after.Autovacuums - b.Autovacuums,
			Autoanalyzes: after.Autoanalyzes - b.Autoanalyzes, Before: b, After: after,
		}
	}
	if h.statements {
		if ev.Statements, err = Query[Statement](ctx, h.sql, h.Pool, "statements_top", map[string]any{"max": 5}); err != nil {
			return ev, err
		}
	}
	if ev.Plans, ev.LockLog, ev.LockLogLines, err = h.logSince(ctx, w.logAt, 2, 5); err != nil {
		return ev, err
	}
	return ev, nil
}

func (h *Harness) walPosition(ctx context.Context) (int64, error) {
	p, err := QueryOne[struct {
		Position int64 `db:"position"`
	}](ctx, h.sql, h.Pool, "wal_position", nil)
	return p.Position, err
}

func (h *Harness) walStats(ctx context.Context) (walStats, error) {
	if h.Settings.ServerVersionNum < 140000 {
		return walStats{}, nil
	}
	return QueryOne[walStats](ctx, h.sql, h.Pool, "wal_stats", nil)
}

func (h *Harness) checkpoints(ctx context.Context) (checkpoints, error) {
	name := "checkpoints"
	if h.Settings.ServerVersionNum >= 170000 {
		name = "checkpoints_17"
	}
	return QueryOne[checkpoints](ctx, h.sql, h.Pool, name, nil)
}

// sampler counts the harness's busy sessions by wait event.
type sampler struct {
	mu      sync.Mutex
	counts  map[string]int64
	samples int
	done    chan struct{}
	stopped chan struct{}
}

func (h *Harness) sample(every time.Duration) *sampler {
	s := &sampler{counts: map[string]int64{}, done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(s.stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), every*5)
			rows, err := Query[Activity](ctx, h.sql, h.Pool, "waits", map[string]any{"application_name": h.appName})
			cancel()
			if err != nil {
				continue // a missed sample; the run goes on
			}
			s.mu.Lock()
			s.samples++
			for _, r := range rows {
				s.counts[r.What] += r.Sessions
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sampler) stop() ([]Activity, int) {
	close(s.done)
	<-s.stopped
	out := make([]Activity, 0, len(s.counts))
	for k, v := range s.counts {
		out = append(out, Activity{What: k, Sessions: v})
	}
	slices.SortFunc(out, func(a, b Activity) int {
		if a.Sessions != b.Sessions {
			return int(b.Sessions - a.Sessions)
		}
		return strings.Compare(a.What, b.What)
	})
	return out, s.samples
}

// String summarises the evidence in a few lines of Markdown list items.
func (ev Evidence) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "- %s; checkpoints in the window: %d timed, %d requested (%d buffers by the checkpointer, %d by backends)\n",
		ev.WAL.describe(), ev.CheckpointsTimed, ev.CheckpointsRequested, ev.CheckpointBuffers, ev.BackendBuffers)
	fmt.Fprintf(&b, "- transactions: %d committed, %d rolled back, %d deadlocks\n", ev.Commits, ev.Rollbacks, ev.Deadlocks)
	if ev.LockLogLines > 0 {
		fmt.Fprintf(&b, "- %d log lines on lock waits over deadlock_timeout and deadlocks, the first: `%s`\n",
			ev.LockLogLines, strings.Join(ev.LockLog, "`, `"))
	}
	names := make([]string, 0, len(ev.Tables))
	for n := range ev.Tables {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t := ev.Tables[n]
		fmt.Fprintf(&b, "- %s: %d sequential scans (%d rows read), %d index scans, %d updates (%d HOT), %d autovacuums, %d autoanalyzes; at the end %d dead tuples, table %s, indexes %s\n",
			n, t.SeqScans, t.SeqTuplesRead, t.IndexScans, t.Updates, t.HotUpdates, t.Autovacuums, t.Autoanalyzes,
			t.After.DeadTuples, MiB(t.After.TableBytes), MiB(t.After.IndexBytes))
	}
	if ev.Samples > 0 {
		parts := make([]string, 0, len(ev.Activity))
		for i, a := range ev.Activity {
			if i == 6 {
				break
			}
			parts = append(parts, fmt.Sprintf("%s %.1f", a.What, float64(a.Sessions)/float64(ev.Samples)))
		}
		fmt.Fprintf(&b, "- busy sessions, mean over %d samples: %s\n", ev.Samples, strings.Join(parts, ", "))
	}
	for _, s := range ev.Statements {
		fmt.Fprintf(&b, "- `%s`: %d calls, %.2f ms mean, %.0f rows, %.0f buffers and %.0f WAL bytes per call\n",
			strings.ReplaceAll(s.Query, "`", "'"), s.Calls, s.MeanMillis, s.RowsPerCall, s.BlocksPerCall, s.WALBytesPerCall)
	}
	for _, p := range ev.Plans {
		lines := strings.Split(p.Text, "\n")
		if len(lines) > 40 {
			lines = append(lines[:40], "...")
		}
		fmt.Fprintf(&b, "- plan of a %.0f ms statement (auto_explain: ANALYZE, BUFFERS, WAL, no timing):\n\n  ```\n  %s\n  ```\n",
			p.Millis, strings.Join(lines, "\n  "))
	}
	return b.String()
}

func (w WAL) describe() string {
	if !w.Measured {
		return "WAL not measured"
	}
	if !w.RecordsKnown {
		return fmt.Sprintf("WAL %s", MiB(w.Bytes))
	}
	return fmt.Sprintf("WAL %s in %d records, %d full-page images", MiB(w.Bytes), w.Records, w.FPI)
}

// MiB formats a byte count in MiB.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
