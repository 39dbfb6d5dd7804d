package integration

import (
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/storetest"
)

// Stats lists lanes and targets in byte order whatever the database's
// collation, as memstore does: the official image's default, en_US.utf8,
// sorts "a" before "B", which made the two stores disagree. The test
// server's databases use the C locale, which hides that, so this one is
// created with a linguistic collation.
func TestStatsInByteOrderUnderALinguisticCollation(t *testing.T) {
	t.Parallel()
	d := pgtest.NewICUDB(t, "en-US")
	if err := outbox.Migrate(t.Context(), openSQL(t, d.URL)); err != nil {
		t.Fatal(err)
	}
	pool := pgtest.Pool(t, d.URL)
	var first string
	if err := pool.QueryRow(t.Context(), `SELECT x FROM (VALUES ('B'), ('a')) v (x) ORDER BY x LIMIT 1`).Scan(&first); err != nil {
		t.Fatal(err)
	}
	if first != "a" {
		t.Fatalf("the database sorts %q first: its collation is not linguistic, so this test would prove nothing", first)
	}
	storetest.TestStatsInByteOrder(t, storetest.Harness{
		New: func(_ *testing.T, now func() time.Time) storetest.Store {
			return outbox.NewPostgresStore(pool, outbox.WithClock(now))
		},
	})
}
