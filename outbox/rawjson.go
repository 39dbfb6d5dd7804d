package outbox

import (
	"context"
	"encoding/json"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgoutbox/pgoutbox/db"
)

// rawJSON runs statements on conn, and its rows scan json and jsonb columns
// bound for a json.RawMessage (the generated code's type for payload and
// headers) as plain bytes. pgx hands a json.RawMessage destination to
// encoding/json, which validates the text the server wrote and copies it
// through reflection: four allocations a message, and a parse of every
// payload, on the claim's path. As bytes, pgx copies the text once, and the
// message gets the same bytes; the server only ever returns valid JSON from
// these columns, and SQL NULL still gives a nil slice.
type rawJSON struct{ conn db.DBTX }

func (r rawJSON) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return r.conn.Exec(ctx, sql, args...)
}

func (r rawJSON) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := r.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return rawJSONRows{rows}, nil
}

func (r rawJSON) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return rawJSONRow{r.conn.QueryRow(ctx, sql, args...)}
}

type rawJSONRows struct{ pgx.Rows }

func (r rawJSONRows) Scan(dest ...any) error { return r.Rows.Scan(asBytes(dest)...) }

type rawJSONRow struct{ row pgx.Row }

func (r rawJSONRow) Scan(dest ...any) error { return r.row.Scan(asBytes(dest)...) }

// asBytes points the json.RawMessage destinations of dest at their
// underlying []byte, in place (the generated code builds dest for one call).
func asBytes(dest []any) []any {
	for i, d := range dest {
		if p, ok := d.(*json.RawMessage); ok {
			dest[i] = (*[]byte)(p)
		}
	}
	return dest
}
