package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/internal/validate"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// A scoped view handed another scope's ids and claim tokens, read straight
// from the table, can read, claim, ack, nack, extend, dead-letter, redrive
// or purge none of them.
func TestScopeIsolationUnderAdversary(t *testing.T) {
	f := newFixture(t)
	victim := f.scoped(f.store, "victim")
	mallory := f.scoped(f.store, "mallory")
	d := draft(`{"secret": true}`)
	d.DedupeKey = "k"
	d.MaxAttempts = 1
	held := f.enqueue(victim, d)
	f.enqueue(victim, draft(`"pending"`))
	dead := f.enqueue(victim, outbox.Draft{Lane: d.Lane, Target: d.Target, Payload: json.RawMessage(`"dead"`), MaxAttempts: 1})
	got := f.claim(victim, claimReq(3, time.Hour, "victim"))
	var deadToken string
	for _, m := range got {
		if m.ID == dead.ID {
			deadToken = m.ClaimToken
		}
	}
	if ok, _ := victim.DeadLetter(f.ctx, dead.ID, deadToken, "x"); !ok {
		t.Fatal("setup: dead-letter")
	}
	before := f.snapshot()
	// Mallory reads ids and tokens from the table itself.
	rows, err := f.pool.Query(f.ctx, `SELECT id::text, coalesce(claim_token::text, '') FROM pgoutbox_message WHERE scope = 'victim'`)
	if err != nil {
		t.Fatal(err)
	}
	var stolen []outbox.Receipt
	for rows.Next() {
		var r outbox.Receipt
		if err := rows.Scan(&r.ID, &r.ClaimToken); err != nil {
			t.Fatal(err)
		}
		if r.ClaimToken == "" {
			r.ClaimToken = "00000000-0000-4000-8000-000000000000"
		}
		stolen = append(stolen, r)
	}
	if len(stolen) != 3 {
		t.Fatalf("setup: %d rows", len(stolen))
	}
	ctx := f.ctx
	for _, r := range stolen {
		if _, err := mallory.Get(ctx, r.ID); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("get %s: %v", r.ID, err)
		}
		if ok, err := mallory.Ack(ctx, r.ID, r.ClaimToken); ok || err != nil {
			t.Errorf("ack %s: %v %v", r.ID, ok, err)
		}
		if out, err := mallory.Nack(ctx, r.ID, r.ClaimToken, "x", time.Time{}); out != outbox.NackLostClaim || err != nil {
			t.Errorf("nack %s: %v %v", r.ID, out, err)
		}
		if ok, err := mallory.ExtendLease(ctx, r.ID, r.ClaimToken, time.Hour); ok || err != nil {
			t.Errorf("extend %s: %v %v", r.ID, ok, err)
		}
		if ok, err := mallory.DeadLetter(ctx, r.ID, r.ClaimToken, "x"); ok || err != nil {
			t.Errorf("dead-letter %s: %v %v", r.ID, ok, err)
		}
	}
	if ok, err := mallory.AckMany(ctx, stolen); err != nil || ok[0] || ok[1] || ok[2] {
		t.Errorf("ack many: %v %v", ok, err)
	}
	if _, acked, err := mallory.ClaimAndAck(ctx, claimReq(10, time.Hour, "mallory"), stolen); err != nil || acked[0] || acked[1] || acked[2] {
		t.Errorf("claim and ack: %v %v", acked, err)
	}
	if res, _ := mallory.Redrive(ctx, outbox.RedriveRequest{IDs: []string{dead.ID}}); res.Redriven != 0 {
		t.Error("redrove the victim's dead letter")
	}
	if res, _ := mallory.Redrive(ctx, outbox.RedriveRequest{Lane: d.Lane, Target: d.Target}); res.Redriven != 0 {
		t.Error("redrove the victim's dead letters by lane")
	}
	if n, _ := mallory.Purge(ctx, outbox.PurgeRequest{DeadLetters: true}); n != 0 {
		t.Error("purged the victim's messages")
	}
	if l, _ := mallory.List(ctx, outbox.ListFilter{}); len(l) != 0 {
		t.Errorf("listed %d of the victim's messages", len(l))
	}
	if st, _ := mallory.Stats(ctx, true); len(st) != 0 {
		t.Errorf("stats show the victim's messages: %+v", st)
	}
	if r, err := mallory.Enqueue(ctx, d); err != nil || r.Deduplicated || r.Message.ID == held.ID {
		t.Errorf("dedupe against the victim's key: %+v %v", r, err)
	}
	batch, err := mallory.LockBatch(ctx, lockReq(10))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range batch.Messages() {
		for _, r := range stolen {
			if m.ID == r.ID {
				t.Errorf("lock mode reached the victim's message %s", m.ID)
			}
		}
	}
	if len(batch.Messages()) > 0 {
		if err := batch.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Only mallory's own new message was written.
	var foreign int
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM pgoutbox_message WHERE scope = 'mallory' AND lane <> $1`, d.Lane).Scan(&foreign); err != nil || foreign != 0 {
		t.Fatal(foreign, err)
	}
	if _, err := f.pool.Exec(ctx, `DELETE FROM pgoutbox_message WHERE scope = 'mallory'`); err != nil {
		t.Fatal(err)
	}
	if f.snapshot() != before {
		t.Fatal("the victim's messages changed")
	}
}

// Claim tokens are version 4 UUIDs from the server's strong random source
// (gen_random_uuid): 122 random bits, never repeated, every random bit
// varying.
func TestClaimTokensAreRandomV4UUIDs(t *testing.T) {
	f := newFixture(t)
	f.fill(f.store, 2000, draft(`{}`))
	got := f.claim(f.store, claimReq(2000, time.Minute, "c"))
	seen := map[string]bool{}
	var ones [128]int
	for _, m := range got {
		tok := strings.ReplaceAll(m.ClaimToken, "-", "")
		if len(tok) != 32 || tok[12] != '4' || !strings.ContainsRune("89ab", rune(tok[16])) {
			t.Fatalf("token %q is not a version 4 UUID", m.ClaimToken)
		}
		if seen[tok] {
			t.Fatalf("token %s repeated", tok)
		}
		seen[tok] = true
		for i := range 32 {
			var v byte
			_, _ = fmt.Sscanf(tok[i:i+1], "%x", &v)
			for b := range 4 {
				if v&(8>>b) != 0 {
					ones[i*4+b]++
				}
			}
		}
	}
	fixed := map[int]bool{48: true, 49: true, 50: true, 51: true, 64: true, 65: true} // version and variant bits
	random := 0
	for bit, n := range ones {
		if fixed[bit] {
			continue
		}
		random++
		if n < 850 || n > 1150 { // 2000 draws of a fair bit: ±6.7 sigma
			t.Errorf("bit %d set in %d of 2000 tokens", bit, n)
		}
	}
	if random != 122 {
		t.Fatalf("%d random bits, want 122", random)
	}
}

// Tokens and ids never appear together in logs at info level or above; the
// relay and the store log ids alone.
func TestLogsNeverPairTokensWithIDs(t *testing.T) {
	f := newFixture(t)
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	store := outbox.NewPostgresStore(f.pool, outbox.WithLogger(logger))
	var tokens sync.Map
	for i := range 20 {
		d := draft(itoa(i))
		d.MaxAttempts = 2
		f.enqueue(store, d)
	}
	cfg := relayConfig(func(_ context.Context, m outbox.Message) error {
		tokens.Store(m.ClaimToken, true)
		switch m.Payload[0] {
		case '1':
			panic("boom")
		case '2':
			return relay.Permanent(errors.New("bad"))
		case '3':
			return errors.New("again")
		}
		return nil
	})
	cfg.Logger = logger
	cfg.Backoff = func(int) time.Duration { return 0 }
	runRelay(t, newRelay(t, store, cfg))
	eventually(t, 20*time.Second, "settled", func() bool {
		return f.count("status IN ('pending', 'claimed')") == 0
	})
	out := buf.String()
	if !strings.Contains(out, "panicked") {
		t.Fatalf("the test logged nothing worth checking:\n%s", out)
	}
	tokens.Range(func(k, _ any) bool {
		if strings.Contains(out, k.(string)) {
			t.Errorf("token %s appears in the logs", k)
		}
		return true
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Hostile strings in every string field are stored verbatim or refused with
// ErrValidation; none is executed.
func TestHostileStringsStoredVerbatimOrRefused(t *testing.T) {
	f := newFixture(t)
	hostile := []string{
		`'; DROP TABLE pgoutbox_message; --`, `" OR 1=1 --`, `\x00`, "\x00", "a\x00b", "\xff\xfe", "\u202e\u200b",
		"🔥💥", strings.Repeat("x", 300), strings.Repeat("é", 600), `$1`, `%s%n`, "line\nbreak", "tab\there", `\`, `E'\\x00'`,
	}
	stored, refused := 0, 0
	for _, s := range hostile {
		for _, field := range []string{"lane", "target", "dedupe_key", "scope", "consumer_id", "reason", "payload"} {
			store := f.store
			d := draft(`{}`)
			r := claimReq(1, time.Minute, "c")
			var err error
			switch field {
			case "lane":
				d.Lane, r.Lane = s, s
			case "target":
				d.Target, r.Target = s, s
			case "dedupe_key":
				d.DedupeKey = s
			case "scope":
				store, err = f.store.Scoped(s)
			case "consumer_id":
				r.ConsumerID = s
			case "payload":
				b, _ := json.Marshal(map[string]string{s: s})
				d.Payload = b
			}
			if err != nil {
				if !errors.Is(err, outbox.ErrValidation) {
					t.Errorf("%s %q: %v", field, s, err)
				}
				refused++
				continue
			}
			res, err := store.Enqueue(f.ctx, d)
			if err != nil {
				if !errors.Is(err, outbox.ErrValidation) {
					t.Errorf("%s %q: enqueue %v", field, s, err)
				}
				refused++
				continue
			}
			got, err := store.Claim(f.ctx, r)
			if err != nil {
				if !errors.Is(err, outbox.ErrValidation) {
					t.Errorf("%s %q: claim %v", field, s, err)
				}
				refused++
				_, _ = f.pool.Exec(f.ctx, `DELETE FROM pgoutbox_message WHERE id = $1::bigint`, res.Message.ID)
				continue
			}
			if len(got) != 1 {
				t.Fatalf("%s %q: claimed %d", field, s, len(got))
			}
			m := got[0]
			if field == "reason" {
				if _, err := store.Nack(f.ctx, m.ID, m.ClaimToken, s, time.Now().Add(time.Hour)); err != nil {
					t.Errorf("reason %q: %v", s, err)
				}
				if back := f.get(store, m.ID).LastError; back != validate.CleanReason(s) {
					t.Errorf("reason %q stored as %q", s, back)
				}
			} else {
				back := f.get(store, m.ID)
				if back.Lane != d.Lane || back.Target != d.Target || back.DedupeKey != d.DedupeKey || m.ClaimedBy != r.ConsumerID || !jsonSame(back.Payload, d.Payload) {
					t.Errorf("%s %q not stored verbatim: %+v", field, s, back)
				}
				if ok, _ := store.Ack(f.ctx, m.ID, m.ClaimToken); !ok {
					t.Errorf("%s %q: ack", field, s)
				}
			}
			stored++
			if _, err := f.pool.Exec(f.ctx, `DELETE FROM pgoutbox_message WHERE id = $1::bigint`, m.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	var exists bool
	if err := f.pool.QueryRow(f.ctx, `SELECT to_regclass('pgoutbox_message') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		t.Fatal("the table is gone")
	}
	t.Logf("%d hostile values stored verbatim, %d refused with ErrValidation", stored, refused)
}

// The documented role layout: an owner migrates; the runtime role has only
// the privileges the store and relays need, and cannot change the schema.
func TestRuntimeRoleCannotAlterSchema(t *testing.T) {
	d := pgtest.NewEmptyDB(t, "template1")
	admin := pgtest.Pool(t, d.URL)
	ctx := t.Context()
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	owner, runtime := "pgoutbox_owner_"+suffix, "pgoutbox_app_"+suffix
	for _, stmt := range []string{
		fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'owner'`, owner),
		fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'app'`, runtime),
		fmt.Sprintf(`GRANT CREATE, CONNECT ON DATABASE %s TO %s`, pgx.Identifier{d.Name}.Sanitize(), owner),
		fmt.Sprintf(`GRANT CONNECT ON DATABASE %s TO %s`, pgx.Identifier{d.Name}.Sanitize(), runtime),
		fmt.Sprintf(`CREATE SCHEMA outbox AUTHORIZATION %s`, owner),
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA outbox CASCADE")
		for _, r := range []string{owner, runtime} {
			_, _ = admin.Exec(context.Background(), fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM %s", pgx.Identifier{d.Name}.Sanitize(), r))
			_, _ = admin.Exec(context.Background(), "DROP ROLE "+r)
		}
	})
	ownerURL := withUserAndSchema(d.URL, owner, "owner")
	ownerDB := openSQL(t, ownerURL)
	if err := outbox.Migrate(ctx, ownerDB); err != nil {
		t.Fatalf("migrating as the owner: %v", err)
	}
	// The grants the runtime role needs (README, "Roles").
	ownerPool := pgtest.Pool(t, ownerURL)
	for _, stmt := range []string{
		fmt.Sprintf(`GRANT USAGE ON SCHEMA outbox TO %s`, runtime),
		fmt.Sprintf(`GRANT SELECT, INSERT, UPDATE, DELETE ON outbox.pgoutbox_message TO %s`, runtime),
	} {
		if _, err := ownerPool.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	app := pgtest.Pool(t, withUserAndSchema(d.URL, runtime, "app"))
	store := outbox.NewPostgresStore(app)
	// Everything the store and a relay do works.
	if _, err := store.Enqueue(ctx, draft(`{}`)); err != nil {
		t.Fatalf("enqueue as the runtime role: %v", err)
	}
	if _, err := store.EnqueueMany(ctx, []outbox.Draft{draft(`1`), draft(`2`)}); err != nil {
		t.Fatalf("enqueue many: %v", err)
	}
	got, err := store.Claim(ctx, claimReq(10, time.Minute, "app"))
	if err != nil || len(got) != 3 {
		t.Fatalf("claim: %v", err)
	}
	if _, err := store.AckMany(ctx, []outbox.Receipt{got[0].Receipt(), got[1].Receipt()}); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if _, err := store.NackAfter(ctx, got[2].ID, got[2].ClaimToken, "x", 0); err != nil {
		t.Fatalf("nack: %v", err)
	}
	if _, err := store.Stats(ctx, true); err != nil {
		t.Fatalf("stats: %v", err)
	}
	time.Sleep(10 * time.Millisecond)
	if _, err := store.Purge(ctx, outbox.PurgeRequest{}); err != nil {
		t.Fatalf("purge: %v", err)
	}
	// And nothing that changes the schema does.
	for _, stmt := range []string{
		`ALTER TABLE outbox.pgoutbox_message ADD COLUMN evil text`,
		`DROP TABLE outbox.pgoutbox_message`,
		`CREATE TABLE outbox.evil (id int)`,
		`CREATE INDEX evil ON outbox.pgoutbox_message (payload)`,
		`TRUNCATE outbox.pgoutbox_message`,
	} {
		if _, err := app.Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "permission denied") && !strings.Contains(err.Error(), "must be owner") {
			t.Errorf("runtime role ran %q: %v", stmt, err)
		}
	}
	// The runtime role cannot migrate either.
	if err := outbox.Migrate(ctx, openSQL(t, withUserAndSchema(d.URL, runtime, "app"))); err == nil {
		t.Error("the runtime role could run migrations")
	}
}

// withUserAndSchema points a URL at another login and puts schema outbox
// first on the search path.
func withUserAndSchema(u, user, password string) string {
	at := strings.Index(u, "@")
	scheme := strings.Index(u, "://") + 3
	out := u[:scheme] + user + ":" + password + u[at:]
	sep := "?"
	if strings.Contains(out, "?") {
		sep = "&"
	}
	return out + sep + "search_path=outbox"
}
