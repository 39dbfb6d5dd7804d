// Package integration tests pgoutbox against a real PostgreSQL server: a
// Testcontainers container by default, or the server $OUTBOX_TEST_DATABASE_URL
// names. Each test gets a database of its own (see internal/pgtest).
package integration

import (
	"testing"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
}
