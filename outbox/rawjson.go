package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

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
//
// Its rows also reuse the string of a text column whose value repeats the
// previous row's (see internedText).
type rawJSON struct{ conn db.DBTX }

func (r rawJSON) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return r.conn.Exec(ctx, sql, args...)
}

func (r rawJSON) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := r.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return &rawJSONRows{Rows: rows}, nil
}

func (r rawJSON) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return rawJSONRow{r.conn.QueryRow(ctx, sql, args...)}
}

type rawJSONRows struct {
	pgx.Rows
	text []internedText // by column; nil until the first Scan
	time []internedTime
}

func (r *rawJSONRows) Scan(dest ...any) error {
	dest = asBytes(dest)
	if r.text == nil {
		r.text, r.time = make([]internedText, len(dest)), make([]internedTime, len(dest))
	}
	fields := r.FieldDescriptions()
	if len(fields) == len(dest) {
		for i, d := range dest {
			if p, ok := d.(**time.Time); ok && fields[i].DataTypeOID == pgtype.TimestamptzOID {
				r.time[i].dst = p
				dest[i] = &r.time[i]
				continue
			}
			if fields[i].DataTypeOID != pgtype.TextOID {
				continue
			}
			switch p := d.(type) {
			case *string:
				r.text[i].dst, r.text[i].nullable = p, nil
				dest[i] = &r.text[i]
			case **string:
				r.text[i].dst, r.text[i].nullable = nil, p
				dest[i] = &r.text[i]
			}
		}
	}
	return r.Rows.Scan(dest...)
}

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

// internedText scans a text column into a *string or a *string that may be
// nil (SQL NULL), as pgx would, except that a value equal to the previous
// row's reuses its string, and for a **string its pointer, instead of
// allocating them again: the lane, target, status and consumer of a claim's
// rows repeat on every row. Strings are immutable and nothing writes through
// the pointers the generated rows hold, so rows sharing them cannot tell.
type internedText struct {
	dst      *string  // set for a *string destination
	nullable **string // set for a **string destination
	last     string   // the previous row's value, when seen
	seen     bool
	lastPtr  *string // &last's copy, made for the first **string that needs it
}

var errNullText = errors.New("cannot scan NULL into *string")

// ScanBytes implements pgtype.BytesScanner; b is valid only during the call.
func (t *internedText) ScanBytes(b []byte) error {
	if b == nil {
		if t.nullable == nil {
			return errNullText
		}
		*t.nullable = nil
		return nil
	}
	if !t.seen || t.last != string(b) {
		t.last, t.seen, t.lastPtr = string(b), true, nil
	}
	if t.nullable == nil {
		*t.dst = t.last
		return nil
	}
	if t.lastPtr == nil {
		s := t.last
		t.lastPtr = &s
	}
	*t.nullable = t.lastPtr
	return nil
}

// internedTime scans a timestamptz column into a *time.Time that may be nil
// (SQL NULL), as pgx would, except that a value identical to the previous
// row's reuses its pointer instead of allocating another: the lease expiry
// of a claim's messages is the same instant on every row. Nothing writes
// through the pointers the generated rows hold.
type internedTime struct {
	dst  **time.Time
	last *time.Time // the previous row's value; nil before the first
}

// ScanTimestamptz implements pgtype.TimestamptzScanner, with pgx's errors
// for what a *time.Time cannot hold.
func (t *internedTime) ScanTimestamptz(v pgtype.Timestamptz) error {
	if !v.Valid {
		*t.dst = nil
		return nil
	}
	switch v.InfinityModifier {
	case pgtype.Finite:
	case pgtype.Infinity:
		return errors.New("cannot scan Infinity into *time.Time")
	case pgtype.NegativeInfinity:
		return errors.New("cannot scan -Infinity into *time.Time")
	default:
		return fmt.Errorf("invalid InfinityModifier: %v", v.InfinityModifier)
	}
	if t.last == nil || *t.last != v.Time {
		at := v.Time
		t.last = &at
	}
	*t.dst = t.last
	return nil
}
