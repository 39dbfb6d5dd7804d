package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/pgoutbox/pgoutbox/internal/validate"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// maxFormBytes bounds a write's form (a selection of ids fits easily).
const maxFormBytes = 1 << 20

// action is one write the dashboard offers. Every action goes through
// write: writes enabled, an authenticated operator, a same-origin request
// (guard), and an audit log line.
type action struct {
	path string
	run  func(w http.ResponseWriter, r *http.Request, op operator, scope string, st *outbox.PostgresStore)
}

// actions are the dashboard's writes. A new one is one entry here and its
// handler.
func (d *Dashboard) actions() []action {
	return []action{
		{"/dead-letters/redrive", d.redrive},
		{"/dead-letters/release-key", d.releaseKey},
		{"/purge/preview", d.purgePreview},
		{"/purge", d.purge},
	}
}

func (d *Dashboard) write(a action) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.cfg.EnableWrites {
			d.cfg.Logger.Warn("dashboard: write refused: the dashboard is read-only", "path", r.URL.Path, "remote", r.RemoteAddr)
			d.fail(w, r, http.StatusForbidden, "This dashboard is read-only: writes are not enabled.")
			return
		}
		op := d.authenticate(r)
		if op.Name == "" {
			d.cfg.Logger.Warn("dashboard: write refused: not authenticated", "path", r.URL.Path, "remote", r.RemoteAddr)
			d.unauthorized(w, r)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			d.fail(w, r, http.StatusBadRequest, "Unreadable form: "+err.Error())
			return
		}
		scope, st, err := d.requestScope(r)
		if err != nil {
			d.failErr(w, r, err)
			return
		}
		a.run(w, r, op, scope, st)
	})
}

// back redirects (303) to the dashboard page the form came from, with a
// signed notice saying what was done.
func (d *Dashboard) back(w http.ResponseWriter, r *http.Request, fallback, notice string) {
	to := r.PostFormValue("back")
	if !localPath(to) {
		to = fallback
	}
	u, err := url.Parse(to)
	if err != nil {
		u = &url.URL{Path: fallback}
	}
	q := u.Query()
	q.Set("notice", notice)
	q.Set("sig", d.noticeSig(notice))
	u.RawQuery = q.Encode()
	http.Redirect(w, r, d.cfg.BasePath+u.String(), http.StatusSeeOther) //nolint:gosec // to is a local path (localPath) or the fallback
}

// localPath accepts paths within the dashboard only, never another host
// ("//evil", "/\evil") or scheme. Control characters are refused too:
// browsers drop tabs and newlines from a URL (WHATWG URL, "basic URL
// parser"), so "/\t/evil" would become "//evil" after the redirect.
func localPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "//") && !strings.HasPrefix(p, "/\\") &&
		strings.IndexFunc(p, unicode.IsControl) < 0
}

// redrive sends dead letters back to pending: one (the "one" button), a
// selection ("id" values), a group (lane, target and exact last error), or
// every dead letter of a lane and target whose error contains a text.
func (d *Dashboard) redrive(w http.ResponseWriter, r *http.Request, op operator, scope string, st *outbox.PostgresStore) {
	ctx := r.Context()
	f := r.PostForm
	var (
		res  outbox.RedriveResult
		err  error
		mode string
		ids  []string
	)
	switch {
	case f.Get("one") != "":
		mode, ids = "one", []string{f.Get("one")}
		res, err = redriveIDs(ctx, st, ids)
	case f.Get("mode") == "group":
		mode = "group"
		res, err = redriveGroup(ctx, st, f.Get("lane"), f.Get("target"), f.Get("group_error"))
	case f.Get("mode") == "matching":
		mode = "matching"
		if strings.TrimSpace(f.Get("error_contains")) == "" {
			d.fail(w, r, http.StatusBadRequest, "Give the error text to match (error_contains).")
			return
		}
		res, err = st.Redrive(ctx, outbox.RedriveRequest{Lane: f.Get("lane"), Target: f.Get("target"), ErrorContains: f.Get("error_contains")})
	default:
		mode, ids = "selection", f["id"]
		if len(ids) == 0 {
			d.fail(w, r, http.StatusBadRequest, "Select at least one dead letter to redrive.")
			return
		}
		res, err = redriveIDs(ctx, st, ids)
	}
	if err != nil {
		if res.Redriven > 0 {
			d.audit(r, op, "redrive", "scope", scope, "mode", mode, "redriven", res.Redriven, "err", err.Error())
		}
		d.failErr(w, r, err)
		return
	}
	d.audit(r, op, "redrive", "scope", scope, "mode", mode, "lane", f.Get("lane"), "target", f.Get("target"),
		"error", firstNonEmpty(f.Get("group_error"), f.Get("error_contains")), "ids", clipIDs(ids),
		"redriven", res.Redriven, "not_dead", len(res.NotDead))
	d.nudgeSampler()
	notice := fmt.Sprintf("Redrove %d dead letter%s.", res.Redriven, plural(res.Redriven))
	if len(res.NotDead) > 0 {
		notice += fmt.Sprintf(" %d were not dead letters and were left alone: %s.", len(res.NotDead), strings.Join(clipIDs(res.NotDead), ", "))
	}
	d.back(w, r, "/dead-letters", notice)
}

func redriveIDs(ctx context.Context, st *outbox.PostgresStore, ids []string) (outbox.RedriveResult, error) {
	var total outbox.RedriveResult
	for len(ids) > 0 {
		n := min(len(ids), outbox.MaxBatch)
		res, err := st.Redrive(ctx, outbox.RedriveRequest{IDs: ids[:n]})
		total.Redriven += res.Redriven
		total.NotDead = append(total.NotDead, res.NotDead...)
		if err != nil {
			return total, err
		}
		ids = ids[n:]
	}
	return total, nil
}

// redriveGroup redrives the dead letters of lane and target whose last
// error is exactly errText: Redrive's ErrorContains alone would also take
// longer errors that contain it.
func redriveGroup(ctx context.Context, st *outbox.PostgresStore, lane, target, errText string) (outbox.RedriveResult, error) {
	contains := errText
	if strings.TrimSpace(errText) == "" {
		contains = ""
	}
	f := outbox.ListFilter{Status: outbox.StatusDeadLetter, Lane: lane, Target: target, ErrorContains: contains, Limit: outbox.MaxListLimit}
	if lane == "" || target == "" {
		return outbox.RedriveResult{}, fmt.Errorf("%w: redrive a group: give its lane and target", outbox.ErrValidation)
	}
	var ids []string
	for {
		page, err := st.List(ctx, f)
		if err != nil {
			return outbox.RedriveResult{}, err
		}
		for _, m := range page {
			if m.LastError == errText {
				ids = append(ids, m.ID)
			}
		}
		if len(page) < outbox.MaxListLimit {
			break
		}
		f.AfterID = page[len(page)-1].ID
	}
	return redriveIDs(ctx, st, ids)
}

type releaseData struct {
	Lane, Target, Key string
	Holders           []messageRow // the dead letters that hold the key
	Waiting           keyHold      // what waits behind the first of them
	Back              string       // where the form returns to
	KeyList           string       // the key's messages
}

// releaseForm is the confirmation step of releasing an ordering key: which
// dead letters hold it, how many messages wait behind them, and what
// releasing does. It changes nothing; its form posts to releaseKey.
func (d *Dashboard) releaseForm(w http.ResponseWriter, r *http.Request) {
	scope, st, err := d.requestScope(r)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	q := r.URL.Query()
	data := releaseData{Lane: q.Get("lane"), Target: q.Get("target"), Key: q.Get("ordering_key"), Back: q.Get("back")}
	sp := scopeParam(scope, d.scope)
	if !localPath(data.Back) {
		data.Back = strings.TrimPrefix(d.link("/dead-letters", "scope", sp, "lane", data.Lane, "target", data.Target), d.cfg.BasePath)
	}
	if verr := validate.ReleaseKey(data.Lane, data.Target, data.Key); verr != nil {
		d.failErr(w, r, fmt.Errorf("release an ordering key: %w", verr))
		return
	}
	data.KeyList = d.link("/messages", "scope", sp, "lane", data.Lane, "target", data.Target, "ordering_key", data.Key)
	ctx, cancel := d.queryCtx(r)
	defer cancel()
	dead, err := st.List(ctx, outbox.ListFilter{Status: outbox.StatusDeadLetter, Lane: data.Lane, Target: data.Target,
		OrderingKey: data.Key, Limit: pageSize})
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	holds, err := d.keyHolds(ctx, st, dead, false)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	for _, m := range dead {
		if holds[m.ID].Holds {
			data.Holders = append(data.Holders, toRow(m))
		}
	}
	if len(data.Holders) > 0 {
		// What waits behind the first holder waits behind them all.
		counted, err := d.keyHolds(ctx, st, []outbox.Message{data.Holders[0].Message}, true)
		if err != nil {
			d.failErr(w, r, err)
			return
		}
		data.Waiting = counted[data.Holders[0].ID]
	}
	d.render(w, r, http.StatusOK, "release_key", d.newPage(r, "Release ordering key", "dead"), data)
}

// releaseKey releases an ordering key held by dead letters
// (PostgresStore.ReleaseOrderingKey): the key's next message becomes its
// head and is delivered; the dead letters stay dead letters.
func (d *Dashboard) releaseKey(w http.ResponseWriter, r *http.Request, op operator, scope string, st *outbox.PostgresStore) {
	f := r.PostForm
	lane, target, key := f.Get("lane"), f.Get("target"), f.Get("ordering_key")
	n, err := st.ReleaseOrderingKey(r.Context(), lane, target, key)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	d.audit(r, op, "release_ordering_key", "scope", scope, "lane", lane, "target", target, "ordering_key", key, "released", n)
	d.nudgeSampler()
	shown := clip(key, listKeyRunes)
	var notice string
	switch n {
	case 0:
		notice = fmt.Sprintf("No dead letter held ordering key %q of %s / %s: nothing was released.", shown, lane, target)
	case 1:
		notice = fmt.Sprintf("Released ordering key %q of %s / %s: its dead letter no longer holds it, and the key's next message is delivered now.", shown, lane, target)
	default:
		notice = fmt.Sprintf("Released ordering key %q of %s / %s: its %d dead letters no longer hold it, and the key's next message is delivered now.", shown, lane, target, n)
	}
	d.back(w, r, "/dead-letters", notice)
}

type purgeData struct {
	OlderThan   string
	DeadLetters bool
	Previewed   bool
	Count       int64
}

func (d *Dashboard) purgeForm(w http.ResponseWriter, r *http.Request) {
	if _, _, err := d.requestScope(r); err != nil {
		d.failErr(w, r, err)
		return
	}
	d.render(w, r, http.StatusOK, "purge", d.newPage(r, "Purge", "purge"), purgeData{OlderThan: "72h"})
}

func purgeRequest(f url.Values) (outbox.PurgeRequest, purgeData, error) {
	data := purgeData{OlderThan: strings.TrimSpace(f.Get("older_than")), DeadLetters: f.Get("dead_letters") == "on"}
	older, err := time.ParseDuration(data.OlderThan)
	if err != nil {
		return outbox.PurgeRequest{}, data, fmt.Errorf("%w: older_than: %q is not a duration like 72h or 30m", outbox.ErrValidation, data.OlderThan)
	}
	req := outbox.PurgeRequest{OlderThan: older, DeadLetters: data.DeadLetters}
	if older < 0 {
		return req, data, fmt.Errorf("%w: older_than: must not be negative, got %s", outbox.ErrValidation, older)
	}
	return req, data, nil
}

// purgePreview is the dry run: how many messages a purge would delete now.
func (d *Dashboard) purgePreview(w http.ResponseWriter, r *http.Request, op operator, scope string, st *outbox.PostgresStore) {
	req, data, err := purgeRequest(r.PostForm)
	if err != nil {
		d.render(w, r, http.StatusBadRequest, "purge", withError(d.newPage(r, "Purge", "purge"), err), data)
		return
	}
	n, err := st.PurgeCount(r.Context(), req)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	d.audit(r, op, "purge_count", "scope", scope, "older_than", req.OlderThan.String(), "dead_letters", req.DeadLetters, "count", n)
	data.Previewed, data.Count = true, n
	d.render(w, r, http.StatusOK, "purge", d.newPage(r, "Purge", "purge"), data)
}

// purge deletes what the preview counted (as it is now). It runs in the
// request; if the request ends early, the batches done stay done.
func (d *Dashboard) purge(w http.ResponseWriter, r *http.Request, op operator, scope string, st *outbox.PostgresStore) {
	req, data, err := purgeRequest(r.PostForm)
	if err != nil {
		d.render(w, r, http.StatusBadRequest, "purge", withError(d.newPage(r, "Purge", "purge"), err), data)
		return
	}
	n, err := st.Purge(r.Context(), req)
	if req.DeadLetters && n > 0 {
		d.forgetBaseline() // purged dead letters must not count as deliveries
	}
	d.audit(r, op, "purge", "scope", scope, "older_than", req.OlderThan.String(), "dead_letters", req.DeadLetters,
		"expected", r.PostFormValue("expected"), "deleted", n, "err", errText(err))
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	d.nudgeSampler()
	d.back(w, r, "/purge", fmt.Sprintf("Purged %d message%s.", n, plural(int(n))))
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func firstNonEmpty(xs ...string) string {
	for _, x := range xs {
		if x != "" {
			return x
		}
	}
	return ""
}

// clipIDs keeps log lines and notices short: the first 20 ids and a count.
func clipIDs(ids []string) []string {
	if len(ids) <= 20 {
		return ids
	}
	return append(ids[:20:20], fmt.Sprintf("and %d more", len(ids)-20))
}

type loginData struct {
	Next       string
	Name       string
	Configured bool
}

func (d *Dashboard) loginForm(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if !localPath(next) {
		next = "/"
	}
	d.render(w, r, http.StatusOK, "login", d.newPage(r, "Sign in", "login"), loginData{Next: next, Configured: len(d.cfg.tokens) > 0})
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	name, token, next := r.PostFormValue("name"), r.PostFormValue("token"), r.PostFormValue("next")
	if !localPath(next) {
		next = "/"
	}
	who, ok := d.checkToken(name, token)
	if !ok || name == "" {
		d.cfg.Logger.Warn("dashboard: sign-in failed", "name", name, "remote", r.RemoteAddr)
		p := d.newPage(r, "Sign in", "login")
		p.Error = "Unknown name or wrong token."
		d.render(w, r, http.StatusUnauthorized, "login", p, loginData{Next: next, Name: name, Configured: len(d.cfg.tokens) > 0})
		return
	}
	d.setSession(w, r, who)
	d.audit(r, operator{Name: who, Via: "login"}, "sign_in")
	http.Redirect(w, r, d.cfg.BasePath+next, http.StatusSeeOther) //nolint:gosec // next is a local path (localPath) or /
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	d.clearSession(w, r)
	http.Redirect(w, r, d.cfg.BasePath+"/", http.StatusSeeOther)
}
