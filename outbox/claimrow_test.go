package outbox

import (
	"reflect"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/db"
)

// claimedRow copies a claim statement's row field by field, so a column
// added to the table (and to the claim's result) would be dropped silently
// if it forgot one, where the type conversion it replaced failed to compile.
// Every field of the table row must come over, with its value.
func TestClaimedRowCopiesEveryColumn(t *testing.T) {
	var row db.MessageClaimRow
	rv := reflect.ValueOf(&row).Elem()
	for i := range rv.NumField() {
		setNonZero(t, rv.Field(i), rv.Type().Field(i).Name)
	}
	got := reflect.ValueOf(claimedRow(row))
	want := reflect.TypeOf(db.PgoutboxMessage{})
	for i := range want.NumField() {
		name := want.Field(i).Name
		src := rv.FieldByName(name)
		if !src.IsValid() {
			t.Errorf("the claim's row has no %s", name)
			continue
		}
		if !reflect.DeepEqual(got.Field(i).Interface(), src.Interface()) {
			t.Errorf("claimedRow dropped or changed %s", name)
		}
	}
}

// setNonZero gives a field a value other than its zero value.
func setNonZero(t *testing.T, v reflect.Value, name string) {
	t.Helper()
	switch v.Interface().(type) {
	case time.Time:
		v.Set(reflect.ValueOf(time.Unix(1_700_000_000, 0)))
		return
	case *time.Time:
		at := time.Unix(1_700_000_001, 0)
		v.Set(reflect.ValueOf(&at))
		return
	}
	switch v.Kind() {
	case reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.String:
		v.SetString(name)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice: // json.RawMessage
		v.SetBytes([]byte(`{"` + name + `":1}`))
	case reflect.Pointer: // *string
		s := name
		v.Set(reflect.ValueOf(&s))
	case reflect.Struct: // pgtype.UUID
		for i := range v.NumField() {
			setNonZero(t, v.Field(i), name)
		}
	case reflect.Array:
		for i := range v.Len() {
			v.Index(i).SetUint(uint64(i + 1))
		}
	default:
		t.Fatalf("no non-zero value for %s (%s)", name, v.Type())
	}
}
