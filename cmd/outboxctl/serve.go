package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/pgoutbox/pgoutbox/dashboard"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// defaultTokenEnv is where serve reads the operator token from unless
// --token-env names another variable. Secrets never travel as flag values,
// which any user of the machine can read in the process list.
const defaultTokenEnv = "OUTBOXCTL_DASHBOARD_TOKEN" //nolint:gosec // the name of an environment variable, not a credential

func runServe(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("serve", "serve [flags]\n\nServes the web dashboard until interrupted. Read-only unless --enable-writes; writes need the\n"+
		"operator token from the environment variable --token-env names.", std.errOut)
	url := databaseURLFlag(fs)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (loopback by default: put a TLS proxy in front to expose it)")
	scope := fs.String("scope", "", "show only this tenant scope (default: every scope, with a selector)")
	writes := fs.Bool("enable-writes", false, "allow redrive and purge (needs a token)")
	tokenEnv := fs.String("token-env", defaultTokenEnv, "environment variable holding the operator token (at least 16 bytes)")
	user := fs.String("user", "operator", "operator name the token signs in as (the audit log's \"who\")")
	authReads := fs.Bool("auth-reads", false, "require the token for every page and /metrics too")
	interval := fs.Duration("sample-interval", dashboard.DefaultSampleInterval, "how often the sampler reads the outbox (1s to 1m)")
	basePath := fs.String("base-path", "", "path prefix to serve under, like /outbox (default: the root)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	if *scope != "" {
		if err := outbox.ValidateScope(*scope); err != nil {
			return usageError{err}
		}
	}
	cfg := dashboard.Config{
		EnableWrites: *writes, RequireAuthForReads: *authReads, SampleInterval: *interval, BasePath: *basePath,
		Logger: slog.New(slog.NewTextHandler(std.errOut, nil)),
	}
	if token := os.Getenv(*tokenEnv); token != "" {
		cfg.Tokens = map[string]string{*user: token}
	} else if *writes || *authReads {
		return usagef("--enable-writes and --auth-reads need a token: set $%s (or name another variable with --token-env)", *tokenEnv)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return usagef("cannot listen on %s: %v", *addr, err)
	}
	defer func() { _ = ln.Close() }()

	pool, err := connect(ctx, *url)
	if err != nil {
		return err
	}
	defer pool.Close()
	store := outbox.NewPostgresStore(pool)
	if *scope != "" {
		if store, err = store.Scoped(*scope); err != nil {
			return usageError{err}
		}
	}
	cfg.DB = pool
	d, err := dashboard.New(store, cfg)
	if err != nil {
		return usageError{err}
	}
	defer func() { _ = d.Close() }()

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	sampled := make(chan error, 1)
	go func() { sampled <- d.Run(ctx) }()

	mux := http.NewServeMux()
	mux.Handle(*basePath+"/", d)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: a purge answers when its batches are done.
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	mode := "read-only"
	if *writes {
		mode = "writes enabled for " + *user
	}
	fmt.Fprintf(std.out, "dashboard on http://%s%s/ (%s)\n", ln.Addr(), *basePath, mode)
	if host, _, err := net.SplitHostPort(ln.Addr().String()); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() {
			cfg.Logger.Warn("the dashboard listens beyond loopback without TLS; put a TLS proxy in front", "addr", ln.Addr().String())
		}
	}

	select {
	case err = <-served:
	case <-ctx.Done():
	}
	stop()
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := srv.Shutdown(shutdown); serr != nil && err == nil {
		err = serr
	}
	if serr := <-sampled; serr != nil && err == nil {
		err = serr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
