// Package benchserver gives a benchmark its PostgreSQL server: the one a
// connection string names, or, when there is none, a Testcontainers
// container of pgserver.Image() with durable commits and pg_stat_statements
// loaded (the harness's evidence reads it). It is apart from package
// benchkit so that outboxctl, which links benchkit, does not link
// Testcontainers.
package benchserver

import (
	"context"
	"fmt"
	"io"

	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/pgoutbox/pgoutbox/internal/pgserver"
)

// Settings are the container's server settings for a benchmark: durable
// (fsync and full_page_writes keep their defaults, on), synchronous_commit as
// given ("on" is durable), and pg_stat_statements loaded.
func Settings(synchronousCommit string) pgserver.Settings {
	return pgserver.Settings{
		"synchronous_commit=" + synchronousCommit,
		"shared_preload_libraries=pg_stat_statements",
	}
}

// Start returns the server at url, or, when url is empty, starts a container
// (see Settings) and says so on log. Stop the server when done.
func Start(ctx context.Context, url, synchronousCommit string, log io.Writer) (*pgserver.Server, error) {
	if url != "" {
		return pgserver.External(url), nil
	}
	tclog.SetDefault(tclog.NewNoopLogger())
	fmt.Fprintf(log, "starting PostgreSQL (%s) with Testcontainers, synchronous_commit=%s\n", pgserver.Image(), synchronousCommit)
	return pgserver.StartContainer(ctx, Settings(synchronousCommit))
}
