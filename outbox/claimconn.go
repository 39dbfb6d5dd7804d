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

// claimConn runs the claims and locks (see plannedFor) on conn, and spares
// pgx allocations per message that the generated code would cost, with the
// same values in and out:
//
//   - json and jsonb columns bound for a json.RawMessage (payload, headers)
//     scan as plain bytes. pgx hands a json.RawMessage to encoding/json,
//     which parses the text the server wrote and copies it by reflection;
//     as bytes, pgx copies it once. The server returns only valid JSON from
//     these columns, and SQL NULL still gives a nil slice.
//   - a text or nullable timestamptz column reuses the previous row's value
//     when it repeats (see internedText, internedTime).
//   - the arrays of ack ids and tokens are sent element by element through
//     pointers (see byRef).
type claimConn struct {
	conn db.DBTX
	// refArgs: send the ack arrays through pointers (byRef). Only for
	// statements pgx describes first (freshPlans' QueryExecModeCacheDescribe),
	// which take their parameter types from the server; in the modes that
	// take them from the Go types (QueryExecModeExec, as through PgBouncer,
	// or the simple protocol), pgx knows no type for these arrays.
	refArgs bool
}

func (r claimConn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return r.conn.Exec(ctx, sql, args...)
}

func (r claimConn) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if r.refArgs {
		args = byRef(args)
	}
	rows, err := r.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return &claimRows{Rows: rows}, nil
}

func (r claimConn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return claimRow{r.conn.QueryRow(ctx, sql, args...)}
}

type claimRows struct {
	pgx.Rows
	text []internedText // by column; nil until the first Scan
	time []internedTime
}

func (r *claimRows) Scan(dest ...any) error {
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

type claimRow struct{ row pgx.Row }

func (r claimRow) Scan(dest ...any) error { return r.row.Scan(asBytes(dest)...) }

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

// byRef replaces, in place, the []int64 and []pgtype.UUID arguments (a
// claim's acks) with arrays whose elements pgx reads through pointers. pgx
// encodes a slice of these types through an interface value per element,
// which boxes each (17 bytes for a token): an allocation for every ack. The
// arrays encode to the same bytes, and a nil slice to NULL as before.
func byRef(args []any) []any {
	for i, a := range args {
		switch v := a.(type) {
		case []int64:
			args[i] = int64Array(v)
		case []pgtype.UUID:
			args[i] = uuidArray(v)
		}
	}
	return args
}

// int64Array is a []int64 for pgx's pgtype.ArrayGetter.
type int64Array []int64

func (a int64Array) Dimensions() []pgtype.ArrayDimension { return dimensions(len(a), a == nil) }
func (a int64Array) Index(i int) any                     { return int64Ref{&a[i]} }
func (a int64Array) IndexType() any                      { return int64Ref{} }

// int64Ref is one element: a pointer, so boxing it allocates nothing.
type int64Ref struct{ p *int64 }

func (r int64Ref) Int64Value() (pgtype.Int8, error) {
	return pgtype.Int8{Int64: *r.p, Valid: true}, nil
}

// uuidArray is a []pgtype.UUID for pgx's pgtype.ArrayGetter; its elements
// are *pgtype.UUID, which pgx encodes as it does pgtype.UUID.
type uuidArray []pgtype.UUID

func (a uuidArray) Dimensions() []pgtype.ArrayDimension { return dimensions(len(a), a == nil) }
func (a uuidArray) Index(i int) any                     { return &a[i] }
func (a uuidArray) IndexType() any                      { return &pgtype.UUID{} }

// dimensions is pgtype.FlatArray's: nil (NULL) for a nil slice.
func dimensions(n int, isNil bool) []pgtype.ArrayDimension {
	if isNil {
		return nil
	}
	return []pgtype.ArrayDimension{{Length: int32(n), LowerBound: 1}} //nolint:gosec // bounded by MaxBatch
}
