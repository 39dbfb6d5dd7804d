package outbox

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgoutbox/pgoutbox/db"
)

type scannedRow struct {
	A string
	B *string
	J json.RawMessage
	T *time.Time
}

func scanAll(t *testing.T, conn db.DBTX, sql string, args ...any) []scannedRow {
	t.Helper()
	rows, err := conn.Query(t.Context(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []scannedRow
	for rows.Next() {
		var r scannedRow
		if err := rows.Scan(&r.A, &r.B, &r.J, &r.T); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Rows through claimConn (claims and locks) scan to the same values as pgx
// scans them, with text values repeated, changed, NULL and back, and JSON
// of every kind; NULL into a *string still fails.
func TestClaimConnScansAsPgxDoes(t *testing.T) {
	pool, err := pgxpool.New(t.Context(), os.Getenv("DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const sql = `SELECT a, b, j, t FROM (VALUES
		(1, 'lane'::text, NULL::text, '{"a": [1, "x"]}'::jsonb, '2026-01-02 03:04:05.123456+00'::timestamptz),
		(2, 'lane', 'k1', NULL, '2026-01-02 03:04:05.123456+00'),
		(3, 'lane', 'k1', 'null', NULL),
		(4, 'other', 'k2', '"s"', '2026-01-02 03:04:05.123457+00'),
		(5, 'lane', NULL, '[]', '2026-01-02 03:04:05.123457+00'),
		(6, 'lane', 'k2', '{}', NULL),
		(7, '', '', '1.5', '1999-12-31 23:59:59+05')) v(n, a, b, j, t) ORDER BY n`
	// Binary results, and text ones (QueryExecModeExec, as through PgBouncer).
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeExec} {
		want, got := scanAll(t, pool, sql, mode), scanAll(t, claimConn{conn: pool}, sql, mode)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%v through claimConn:\n%+v\nwith pgx:\n%+v", mode, got, want)
		}
	}
	inf, err := (claimConn{conn: pool}).Query(t.Context(), "SELECT 'infinity'::timestamptz")
	if err != nil {
		t.Fatal(err)
	}
	defer inf.Close()
	var at *time.Time
	if !inf.Next() {
		t.Fatal(inf.Err())
	}
	if err := inf.Scan(&at); err == nil {
		t.Error("infinity scanned into a *time.Time")
	}
	inf.Close()
	var s string
	if err := (claimConn{conn: pool}).QueryRow(t.Context(), "SELECT NULL::text").Scan(&s); err == nil {
		t.Error("NULL scanned into a *string")
	}
	rows, err := (claimConn{conn: pool}).Query(t.Context(), "SELECT NULL::text")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatal(rows.Err())
	}
	if err := rows.Scan(&s); err == nil {
		t.Error("NULL scanned into a *string")
	}
}

// The claim's arrays of ack ids and tokens reach the server as pgx sends
// the slices: the same elements, empty as empty, nil as NULL.
func TestClaimConnSendsArraysAsPgxDoes(t *testing.T) {
	pool, err := pgxpool.New(t.Context(), os.Getenv("DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	tok, _ := parseToken("0123abcd-ef45-6789-abcd-0123456789ef")
	for _, c := range []struct {
		ids    []int64
		tokens []pgtype.UUID
	}{
		{[]int64{1, 300, 1 << 40}, []pgtype.UUID{tok, {}, tok}},
		{[]int64{}, []pgtype.UUID{}},
		{nil, nil},
	} {
		const sql = "SELECT $1::int8[]::text, $2::uuid[]::text"
		read := func(conn db.DBTX) (ids, tokens *string) {
			rows, err := conn.Query(t.Context(), sql, c.ids, c.tokens)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			if !rows.Next() {
				t.Fatal(rows.Err())
			}
			if err := rows.Scan(&ids, &tokens); err != nil {
				t.Fatal(err)
			}
			return ids, tokens
		}
		wantIDs, wantTokens := read(pool)
		gotIDs, gotTokens := read(claimConn{conn: freshPlans{pool}, refArgs: true})
		if !reflect.DeepEqual(gotIDs, wantIDs) || !reflect.DeepEqual(gotTokens, wantTokens) {
			t.Errorf("%v %v: got %v %v, want %v %v", c.ids, c.tokens, deref(gotIDs), deref(gotTokens), deref(wantIDs), deref(wantTokens))
		}
	}
}
