package dashboard

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/outbox"
)

//go:embed templates static
var assets embed.FS

// Dashboard is the operator dashboard: an http.Handler with its sampler
// and metrics. Create it with New, run Run in a goroutine, mount it on a
// mux, and Close it when done.
type Dashboard struct {
	root    *outbox.PostgresStore
	fixed   bool   // the store is scoped: only its scope is shown
	scope   string // the store's scope
	cfg     config
	q       *db.Queries
	key     []byte // signs sessions and notices
	handler http.Handler
	pages   map[string]*template.Template
	static  http.Handler
	cop     *http.CrossOriginProtection
	sampler *sampler
	metrics *metrics
	nudge   chan struct{}
	running atomic.Bool
}

// New returns a dashboard over store: every scope when store is the
// unscoped store (a selector picks one; see Config.Scopes), or only the
// store's scope when it is scoped. It validates cfg (errors wrap
// ErrConfig) and starts nothing: call Run to sample.
func New(store *outbox.PostgresStore, cfg Config) (*Dashboard, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: the store is nil", ErrConfig)
	}
	c, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	d := &Dashboard{
		root: store, scope: store.Scope(), fixed: store.Scope() != "", cfg: c, q: db.New(c.DB),
		key: make([]byte, 32), cop: http.NewCrossOriginProtection(), nudge: make(chan struct{}, 1),
		sampler: newSampler(int(c.History/c.SampleInterval) + 1),
	}
	if _, err := rand.Read(d.key); err != nil {
		return nil, fmt.Errorf("dashboard: session key: %w", err)
	}
	if d.metrics, err = newMetrics(c.Registry, func() *sample { s, _, _ := d.sampler.state(); return s }); err != nil {
		return nil, err
	}
	if d.pages, err = d.parseTemplates(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: static assets: %w", err)
	}
	d.static = http.StripPrefix("/static/", http.FileServerFS(static))
	d.handler = d.routes()
	return d, nil
}

// MeterProvider is the OpenTelemetry meter provider behind /metrics. Give
// it to relays (relay.Config.MeterProvider) so that their metrics appear
// on /metrics next to the dashboard's gauges.
func (d *Dashboard) MeterProvider() metric.MeterProvider { return d.metrics.provider }

// Close shuts the meter provider down. Stop Run by ending its context.
func (d *Dashboard) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.metrics.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("dashboard: close: %w", err)
	}
	return nil
}

// ServeHTTP serves the dashboard. With Config.BasePath set, it strips that
// prefix itself and answers 404 for paths outside it.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.handler.ServeHTTP(w, r)
}

// contentSecurityPolicy allows scripts, styles and fetches from the
// dashboard itself only (no inline script or style, nothing from elsewhere),
// forms that post to itself, and no framing (clickjacking).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (d *Dashboard) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.overview)
	mux.HandleFunc("GET /live", d.overviewLive)
	mux.HandleFunc("GET /api/overview", d.overviewJSON)
	mux.HandleFunc("GET /messages", d.messages)
	mux.HandleFunc("GET /messages/{id}", d.message)
	mux.HandleFunc("GET /dead-letters", d.deadLetters)
	mux.HandleFunc("GET /dead-letters/release-key", d.releaseForm)
	mux.HandleFunc("GET /purge", d.purgeForm)
	mux.HandleFunc("GET /login", d.loginForm)
	mux.HandleFunc("POST /login", d.login)
	mux.HandleFunc("POST /logout", d.logout)
	mux.Handle("GET /static/", d.static)
	mux.Handle("GET /metrics", d.metrics.handler)
	for _, a := range d.actions() {
		mux.Handle("POST "+a.path, d.write(a))
	}

	var h http.Handler = mux
	h = d.guard(h)
	if d.cfg.BasePath != "" {
		h = http.StripPrefix(d.cfg.BasePath, h)
	}
	return securityHeaders(h)
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") && !strings.Contains(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// guard refuses cross-origin writes (CSRF) and, with RequireAuthForReads,
// unauthenticated reads.
func (d *Dashboard) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := d.cop.Check(r); err != nil {
			d.cfg.Logger.Warn("dashboard: cross-origin request refused", "method", r.Method, "path", r.URL.Path,
				"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "remote", r.RemoteAddr)
			d.fail(w, r, http.StatusForbidden, "Cross-origin request refused: changes can only be made from the dashboard's own pages.")
			return
		}
		if d.cfg.RequireAuthForReads && r.URL.Path != "/login" && !strings.HasPrefix(r.URL.Path, "/static/") &&
			d.authenticate(r).Name == "" {
			d.unauthorized(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// unauthorized answers a request without valid credentials: a 401 that
// names the schemes (for scripts), with a page that links to the login
// form (for people).
func (d *Dashboard) unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="pgoutbox"`)
	w.Header().Add("WWW-Authenticate", `Basic realm="pgoutbox", charset="UTF-8"`)
	d.render(w, r, http.StatusUnauthorized, "error", d.newPage(r, "Sign in needed", ""), errorData{
		Message: "Sign in to continue.", Login: d.link("/login", "next", d.here(r)),
	})
}

// here is the request's path and query within the dashboard, for a redirect
// back after signing in.
func (d *Dashboard) here(r *http.Request) string {
	u := url.URL{Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	return u.String()
}

// link builds a URL inside the dashboard from a path and query pairs; empty
// values are left out.
func (d *Dashboard) link(path string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Add(kv[i], kv[i+1])
		}
	}
	u := d.cfg.BasePath + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// store is the store of one scope.
func (d *Dashboard) store(scope string) (*outbox.PostgresStore, error) {
	switch {
	case scope == d.scope:
		return d.root, nil
	case d.fixed:
		return nil, fmt.Errorf("%w: this dashboard shows scope %q only", errNotHere, d.scope)
	}
	return d.root.Scoped(scope)
}

var errNotHere = errors.New("not found")

// requestScope is the scope a request asks for (?scope=, or the store's
// own), and its store.
func (d *Dashboard) requestScope(r *http.Request) (string, *outbox.PostgresStore, error) {
	sc := d.scope
	if v := r.FormValue("scope"); v != "" {
		sc = v
	}
	st, err := d.store(sc)
	return sc, st, err
}

func (d *Dashboard) queryCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), d.cfg.QueryTimeout)
}

// audit logs a write: who, from where, what, and how many.
func (d *Dashboard) audit(r *http.Request, op operator, action string, attrs ...any) {
	d.cfg.Logger.LogAttrs(r.Context(), slog.LevelInfo, "dashboard: write",
		append([]slog.Attr{
			slog.String("who", op.Name), slog.String("auth", op.Via), slog.String("remote", r.RemoteAddr),
			slog.String("action", action),
		}, argsToAttrs(attrs)...)...)
}

func argsToAttrs(args []any) []slog.Attr {
	var out []slog.Attr
	for i := 0; i+1 < len(args); i += 2 {
		k, _ := args[i].(string)
		out = append(out, slog.Any(k, args[i+1]))
	}
	return out
}
