package outbox_test

import (
	"flag"
	"os"
	"testing"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
)

// TestMain gives the runnable examples a migrated database in $DATABASE_URL.
// Fuzzing workers re-run this binary many times and only ever call the fuzz
// function, so they get no server.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run())
	}
	pgtest.MainWithURL(m, "DATABASE_URL")
}
