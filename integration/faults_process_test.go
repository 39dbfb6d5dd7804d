package integration

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for Migrate

	"github.com/pgoutbox/pgoutbox/internal/faultproxy"
	"github.com/pgoutbox/pgoutbox/internal/pgserver"
	"github.com/pgoutbox/pgoutbox/internal/pgtest"
	"github.com/pgoutbox/pgoutbox/outbox"
	"github.com/pgoutbox/pgoutbox/relay"
)

// childRelayEnv, when set in the environment, makes the test binary run a
// relay on that database instead of the tests (see TestMain), printing
// "handled <seq>" for each message until it is killed.
const childRelayEnv = "PGOUTBOX_CHILD_RELAY_URL"

func runChildRelay(url string) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	store := outbox.NewPostgresStore(pool)
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	r, err := relay.New(store, relay.Config{
		Lane: "kill", Target: "t", Concurrency: 8, Lease: 2 * time.Second, HeartbeatInterval: 500 * time.Millisecond,
		PollInterval: 20 * time.Millisecond, ConsumerID: "doomed-child",
		Handler: func(_ context.Context, m outbox.Message) error {
			var p struct{ Seq int }
			_ = json.Unmarshal(m.Payload, &p)
			mu.Lock()
			fmt.Fprintf(out, "handled %d\n", p.Seq)
			_ = out.Flush()
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			return nil
		},
	})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	_ = r.Run(ctx) // until SIGKILL
}

// A relay process killed with SIGKILL mid-batch: another relay delivers its
// messages after their leases expire; none is lost.
func TestFaultRelayProcessKilled(t *testing.T) {
	t.Parallel()
	d := pgtest.NewDB(t)
	store := outbox.NewPostgresStore(d.Pool)
	const total = 300
	drafts := make([]outbox.Draft, total)
	for i := range drafts {
		p, _ := json.Marshal(map[string]int{"seq": i})
		drafts[i] = outbox.Draft{Lane: "kill", Target: "t", Payload: p}
	}
	if _, err := store.EnqueueMany(t.Context(), drafts); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childRelayEnv+"="+d.URL)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	delivered := map[int]int{}
	childHandled := 0
	seen := make(chan struct{}, total)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if seq, ok := strings.CutPrefix(sc.Text(), "handled "); ok {
				n, _ := strconv.Atoi(seq)
				mu.Lock()
				delivered[n]++
				childHandled++
				mu.Unlock()
				seen <- struct{}{}
			}
		}
	}()
	for range 40 {
		select {
		case <-seen:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("the child relay handled nothing")
		}
	}
	killedAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	var claimed int
	if err := d.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pgoutbox_message WHERE status = 'claimed'`).Scan(&claimed); err != nil {
		t.Fatal(err)
	}
	cfg := relay.Config{
		Lane: "kill", Target: "t", Concurrency: 16, Lease: 2 * time.Second, PollInterval: 20 * time.Millisecond,
		Handler: func(_ context.Context, m outbox.Message) error {
			var p struct{ Seq int }
			_ = json.Unmarshal(m.Payload, &p)
			mu.Lock()
			delivered[p.Seq]++
			mu.Unlock()
			return nil
		},
	}
	r, err := relay.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runRelay(t, r)
	eventually(t, time.Minute, "every message delivered after the kill", func() bool {
		var n int
		_ = d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pgoutbox_message WHERE status = 'delivered'`).Scan(&n)
		return n == total
	})
	recovery := time.Since(killedAt)
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for seq := range total {
		switch n := delivered[seq]; {
		case n == 0:
			t.Errorf("seq %d never delivered", seq)
		case n > 1:
			dups += n - 1
		}
	}
	t.Logf("RELIABILITY | relay process killed | SIGKILL to a relay subprocess after 40 deliveries (%d claimed at death) | %d | %d | %d | 0 | %s |",
		claimed, total, total, dups, recovery.Round(10*time.Millisecond))
}

// PostgreSQL restarted mid-run, in fast and then immediate mode, on a
// durable server of this test's own so that no other test sees it go.
func TestFaultPostgresRestarted(t *testing.T) {
	ctx := t.Context()
	// Durable commits: with synchronous_commit off (the suite's fast
	// setting) an immediate shutdown loses commits the server already
	// acknowledged, which would be the server's doing, not ours.
	srv, err := pgserver.StartContainer(ctx, nil)
	if err != nil {
		t.Fatalf("this test restarts a server of its own and needs a container: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	host := func() string {
		h, err := srv.Container.Host(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p, err := srv.Container.MappedPort(ctx, "5432/tcp")
		if err != nil {
			t.Fatal(err)
		}
		return h + ":" + p.Port()
	}
	// The checks also go through a proxy, which follows the server's port.
	admin, err := faultproxy.Start(host())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	url := strings.Replace(srv.URL, hostOf(srv.URL), admin.Addr(), 1)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	direct := pgtest.Pool(t, url)
	e := newFaultEnv(t, url, direct, 2*time.Second)
	restart := func(how string) {
		switch how {
		case "fast":
			timeout := 10 * time.Second
			if err := srv.Container.Stop(ctx, &timeout); err != nil {
				t.Errorf("stop: %v", err)
			}
		case "immediate":
			id := srv.Container.GetContainerID()
			if out, err := exec.Command("docker", "kill", "--signal", "QUIT", id).CombinedOutput(); err != nil {
				t.Errorf("docker kill -s QUIT: %v %s", err, out)
			}
			for i := 0; i < 100; i++ {
				st, err := srv.Container.State(ctx)
				if err != nil || !st.Running {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if err := srv.Container.Start(ctx); err != nil {
			t.Errorf("start: %v", err)
			return
		}
		addr := host()
		admin.SetUpstream(addr)
		e.proxy.SetUpstream(addr)
		for i := 0; i < 200; i++ {
			if err := direct.Ping(ctx); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("server not back after a %s restart", how)
	}
	r := e.run(faultConfig{producers: 2, relays: 2, lease: 2 * time.Second}, 10*time.Second, func() {
		time.Sleep(2 * time.Second)
		restart("fast")
		time.Sleep(2 * time.Second)
		restart("immediate")
	})
	logReport(t, "PostgreSQL restarted", "container stopped and started (fast shutdown), then SIGQUIT (immediate) and started", r)
}

func hostOf(u string) string {
	at := strings.LastIndex(u, "@")
	rest := u[at+1:]
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	return rest
}
