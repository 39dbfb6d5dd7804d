package integration

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// FuzzPayloadRoundTrip feeds arbitrary bytes to Enqueue: either the payload
// is refused with ErrValidation (and nothing is written), or the stored
// payload is the same JSON value (jsonb equality) as the bytes given. A
// payload that passed validation but that Postgres refused would show up as
// another error.
func FuzzPayloadRoundTrip(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`, `[1,"x",null,true]`, `"\u0000"`, `"\ud800"`, `"\ud83d\ude00"`, `1e131071`, `1e131072`,
		`0.1e-16383`, `{"a":1,"a":2}`, `  {"k" : [ ] }  `, `-0.0`, "\"\xff\"", `{"\u00e9":"\\"}`, ``, `nul`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		d := pgtest.SharedDB(t)
		ctx := context.Background()
		store := outbox.NewPostgresStore(d.Pool, outbox.WithNotify(false))
		res, err := store.Enqueue(ctx, outbox.Draft{Lane: "fuzz", Target: "payload", Payload: payload})
		if err != nil {
			if !errors.Is(err, outbox.ErrValidation) {
				t.Fatalf("payload %q: %v (neither stored nor refused as invalid)", payload, err)
			}
			return
		}
		var same bool
		if err := d.Pool.QueryRow(ctx, `SELECT payload = $2::jsonb FROM pgoutbox_message WHERE id = $1::bigint`,
			res.Message.ID, string(payload)).Scan(&same); err != nil {
			t.Fatalf("payload %q: comparing: %v", payload, err)
		}
		if !same || !json.Valid(res.Message.Payload) {
			t.Fatalf("payload %q stored as %s", payload, res.Message.Payload)
		}
		if _, err := d.Pool.Exec(ctx, `DELETE FROM pgoutbox_message WHERE id = $1::bigint`, res.Message.ID); err != nil {
			t.Fatal(err)
		}
	})
}
