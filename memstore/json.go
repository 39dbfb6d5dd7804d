package memstore

import (
	"bytes"
	"encoding/json"
	"math/big"
)

// jsonEqual compares two JSON texts the way Postgres compares jsonb values:
// objects by their keys (the last of duplicate keys wins), arrays in order,
// numbers by numeric value (1.0 equals 1), strings and literals exactly.
func jsonEqual(a, b []byte) bool {
	x, errA := decode(a)
	y, errB := decode(b)
	return errA == nil && errB == nil && valueEqual(x, y)
}

func decode(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

func valueEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !valueEqual(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !valueEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		p, okP := new(big.Rat).SetString(string(x))
		q, okQ := new(big.Rat).SetString(string(y))
		return okP && okQ && p.Cmp(q) == 0
	default:
		return a == b
	}
}
