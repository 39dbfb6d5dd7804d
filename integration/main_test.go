// Package integration tests pgoutbox against a real PostgreSQL server: a
// Testcontainers container by default, or the server $OUTBOX_TEST_DATABASE_URL
// names. Each test gets a database of its own (see internal/pgtest).
package integration

import (
	"os"
	"testing"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(childRelayEnv); url != "" {
		runChildRelay(url) // TestFaultRelayProcessKilled's subprocess
		return
	}
	if url := os.Getenv(childOrderedRelayEnv); url != "" {
		runChildOrderedRelay(url) // TestOrderingUnderFailuresAndAKilledRelay's subprocesses
		return
	}
	pgtest.Main(m)
}
