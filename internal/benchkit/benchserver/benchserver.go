// Package benchserver gives a benchmark its PostgreSQL server: the one a
// connection string names, or, when there is none, a Testcontainers
// container of pgserver.Image() with durable commits, pg_stat_statements and
// auto_explain loaded (the harness's evidence reads both). It is apart from
// package benchkit so that outboxctl, which links benchkit, does not link
// Testcontainers.
package benchserver

import (
	"context"
	"fmt"
	"io"
	"time"

	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/pgoutbox/pgoutbox/internal/pgserver"
)

// Settings are the container's server settings for a benchmark: durable
// (fsync and full_page_writes keep their defaults, on), synchronous_commit as
// given ("on" is durable), lock waits over deadlock_timeout logged,
// pg_stat_statements loaded and, when autoExplain
// is positive, auto_explain logging the plan of every statement slower than
// it with the rows, buffers and WAL of its execution. Timing is off: with it
// on, auto_explain times every node of every statement, slow or not.
func Settings(synchronousCommit string, autoExplain time.Duration) pgserver.Settings {
	// log_lock_waits: a lock wait longer than deadlock_timeout (1 s) is
	// logged, for the evidence; it costs nothing until one happens.
	s := pgserver.Settings{"synchronous_commit=" + synchronousCommit, "log_lock_waits=on"}
	if autoExplain <= 0 {
		return append(s, "shared_preload_libraries=pg_stat_statements")
	}
	return append(s,
		"shared_preload_libraries=pg_stat_statements,auto_explain",
		fmt.Sprintf("auto_explain.log_min_duration=%dms", autoExplain.Milliseconds()),
		"auto_explain.log_analyze=on",
		"auto_explain.log_buffers=on",
		"auto_explain.log_wal=on",
		"auto_explain.log_timing=off",
	)
}

// Server is the benchmark's server.
type Server struct {
	*pgserver.Server
	// Logs returns the container's log so far (nil for a server given by
	// URL), for benchkit.Config.Logs.
	Logs func(ctx context.Context) (io.ReadCloser, error)
}

// Start returns the server at url, or, when url is empty, starts a container
// (see Settings) and says so on log. Stop the server when done.
func Start(ctx context.Context, url, synchronousCommit string, autoExplain time.Duration, log io.Writer) (*Server, error) {
	if url != "" {
		return &Server{Server: pgserver.External(url)}, nil
	}
	tclog.SetDefault(tclog.NewNoopLogger())
	fmt.Fprintf(log, "starting PostgreSQL (%s) with Testcontainers, synchronous_commit=%s\n", pgserver.Image(), synchronousCommit)
	srv, err := pgserver.StartContainer(ctx, Settings(synchronousCommit, autoExplain))
	if err != nil {
		return nil, err
	}
	return &Server{Server: srv, Logs: srv.Container.Logs}, nil
}
