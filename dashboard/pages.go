package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pgoutbox/pgoutbox/db"
	"github.com/pgoutbox/pgoutbox/internal/validate"
	"github.com/pgoutbox/pgoutbox/outbox"
)

// Sizes of what pages show.
const (
	pageSize         = 50
	listPayloadRunes = 120     // payloads in lists are cut to this
	listErrorRunes   = 140     // and errors
	listKeyRunes     = 40      // and ordering keys
	maxWaitingCount  = 100     // messages waiting behind a held key are counted up to this
	maxDetailPayload = 1 << 20 // the detail page shows at most 1 MiB of a payload
	maxGroups        = 200     // dead-letter groups shown
)

// page is what every template gets.
type page struct {
	Title     string
	Nav       string // which tab is current
	Base      string
	Scope     string
	Scopes    []string // for the selector; nil when the store is scoped
	Writes    bool     // writes are enabled
	Op        operator
	Here      string // this page's path and query, for redirects back to it
	Path      string // where the scope selector goes: this page's list
	Notice    string
	Error     string // what was wrong with the request
	SampleErr string
	Stale     string // the sampler is not running or is behind
	Data      any
}

// CanWrite reports whether this request may use the write actions.
func (p page) CanWrite() bool { return p.Writes && p.Op.Name != "" }

// ScopeLabel names a scope for people.
func (p page) ScopeLabel() string { return scopeLabel(p.Scope) }

func scopeLabel(s string) string {
	if s == "" {
		return "(unscoped)"
	}
	return s
}

func (d *Dashboard) newPage(r *http.Request, title, nav string) page {
	p := page{Title: title, Nav: nav, Base: d.cfg.BasePath, Scope: d.scope, Writes: d.cfg.EnableWrites, Op: d.authenticate(r), Here: d.here(r), Path: selectorPath(r.URL.Path)}
	if v := r.URL.Query().Get("scope"); v != "" {
		p.Scope = v
	}
	latest, errAt, lastErr := d.sampler.state()
	if !d.fixed {
		p.Scopes = []string{""}
		if latest != nil {
			for _, s := range latest.Scopes {
				if s != "" {
					p.Scopes = append(p.Scopes, s)
				}
			}
		}
		if !slices.Contains(p.Scopes, p.Scope) {
			p.Scopes = append(p.Scopes, p.Scope)
		}
	}
	if lastErr != nil {
		p.SampleErr = fmt.Sprintf("Sampling failed at %s: %v", errAt.UTC().Format(time.TimeOnly), lastErr)
	}
	switch {
	case latest == nil && !d.running.Load():
		p.Stale = "No sample yet: the sampler is not running (the dashboard's owner must call Dashboard.Run)."
	case latest == nil:
		p.Stale = "Waiting for the first sample."
	case time.Since(latest.At) > 3*d.cfg.SampleInterval+d.cfg.QueryTimeout:
		p.Stale = fmt.Sprintf("The last sample is from %s ago.", shortAge(time.Since(latest.At)))
	}
	if text := r.URL.Query().Get("notice"); d.checkNotice(text, r.URL.Query().Get("sig")) {
		p.Notice = text
	}
	return p
}

// selectorPath is where the scope selector leads from path: the same list,
// or the overview.
func selectorPath(path string) string {
	switch {
	case path == "/messages" || strings.HasPrefix(path, "/messages/"):
		return "/messages"
	case strings.HasPrefix(path, "/dead-letters"):
		return "/dead-letters"
	case strings.HasPrefix(path, "/purge"):
		return "/purge"
	}
	return "/"
}

func (d *Dashboard) parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"link":      d.link,
		"local":     func(path string, kv ...string) string { return strings.TrimPrefix(d.link(path, kv...), d.cfg.BasePath) },
		"time":      fmtTime,
		"ago":       ago,
		"age":       shortAge,
		"num":       fmtInt,
		"rate":      fmtRate,
		"clip":      clip,
		"scopename": scopeLabel,
	}
	out := map[string]*template.Template{}
	for _, name := range []string{"overview", "live", "messages", "message", "dead_letters", "release_key", "purge", "login", "error"} {
		files := []string{"templates/layout.html", "templates/" + name + ".html"}
		switch name {
		case "live":
			files = files[1:]
		case "overview":
			files = append(files, "templates/live.html")
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, files...)
		if err != nil {
			return nil, fmt.Errorf("dashboard: templates: %w", err)
		}
		out[name] = t
	}
	return out, nil
}

// render executes a page template into a buffer first, so that a template
// error becomes a 500 instead of half a page.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name string, p page, data any) {
	p.Data = data
	var buf bytes.Buffer
	entry := "layout"
	if name == "live" {
		entry = "live"
	}
	if err := d.pages[name].ExecuteTemplate(&buf, entry, p); err != nil {
		d.cfg.Logger.Error("dashboard: render", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	_ = r
}

type errorData struct {
	Message string
	Login   string
}

// fail shows an error page. Bad input is 400 with the validation message;
// the caller logs what deserves logging.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	d.render(w, r, status, "error", d.newPage(r, http.StatusText(status), ""), errorData{Message: msg})
}

// failErr maps an error to a status: invalid input 400, an unknown scope
// or message 404, anything else 500 (logged, with the detail kept out of
// the page).
func (d *Dashboard) failErr(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, outbox.ErrValidation):
		d.fail(w, r, http.StatusBadRequest, err.Error())
	case errors.Is(err, outbox.ErrNotFound), errors.Is(err, errNotHere):
		d.fail(w, r, http.StatusNotFound, err.Error())
	default:
		d.cfg.Logger.Error("dashboard: request failed", "path", r.URL.Path, "err", err)
		d.fail(w, r, http.StatusInternalServerError, "The request failed; the server log has the details.")
	}
}

// overviewData is the overview's live part.
type overviewData struct {
	At                  time.Time
	Rows                []row
	Total               row
	Backlog, Throughput chart
	Interval            time.Duration
	RefreshMillis       int64
}

func (d *Dashboard) overviewFor(scope string) overviewData {
	latest, _, _ := d.sampler.state()
	o := overviewData{Interval: d.cfg.SampleInterval, RefreshMillis: d.cfg.SampleInterval.Milliseconds()}
	o.Total.DeliveredPerSecond = -1
	if latest != nil {
		o.At = latest.At
		for _, r := range latest.Rows {
			if r.Scope != scope {
				continue
			}
			o.Rows = append(o.Rows, r)
			t := &o.Total
			t.Pending += r.Pending
			t.Due += r.Due
			t.Claimed += r.Claimed
			t.ExpiredLeases += r.ExpiredLeases
			t.DeadLetters += r.DeadLetters
			t.OldestDueAge = max(t.OldestDueAge, r.OldestDueAge)
			if r.DeliveredPerSecond >= 0 {
				t.DeliveredPerSecond = max(t.DeliveredPerSecond, 0) + r.DeliveredPerSecond
			}
		}
	}
	var backlog, rate []point
	for _, s := range d.sampler.history() {
		var b, v float64
		known := false
		for _, r := range s.Rows {
			if r.Scope == scope {
				b += float64(r.Pending + r.Claimed)
				if r.DeliveredPerSecond >= 0 {
					v += r.DeliveredPerSecond
					known = true
				}
			}
		}
		backlog = append(backlog, point{s.At, b})
		if known || len(s.Rows) > 0 {
			rate = append(rate, point{s.At, v})
		}
	}
	end := time.Now()
	o.Backlog = newChart("Backlog (pending + claimed)", backlog, end, d.cfg.History, func(v float64) string { return fmtInt(int64(v)) })
	o.Throughput = newChart("Delivered per second", rate, end, d.cfg.History, fmtRate)
	return o
}

func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request) {
	scope, _, err := d.requestScope(r)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	d.render(w, r, http.StatusOK, "overview", d.newPage(r, "Overview", "overview"), d.overviewFor(scope))
}

// overviewLive is the overview's live part alone; the page's script
// fetches it every sample interval and swaps it in.
func (d *Dashboard) overviewLive(w http.ResponseWriter, r *http.Request) {
	scope, _, err := d.requestScope(r)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	d.render(w, r, http.StatusOK, "live", d.newPage(r, "", "overview"), d.overviewFor(scope))
}

// overviewJSON is the overview for scripts: the latest sample's rows of a
// scope and the history of its totals.
func (d *Dashboard) overviewJSON(w http.ResponseWriter, r *http.Request) {
	scope, _, err := d.requestScope(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	type rowJSON struct {
		Lane               string   `json:"lane"`
		Target             string   `json:"target"`
		Pending            int64    `json:"pending"`
		Due                int64    `json:"due"`
		OldestDueSeconds   float64  `json:"oldest_due_seconds"`
		Claimed            int64    `json:"claimed"`
		ExpiredLeases      int64    `json:"expired_leases"`
		DeadLetters        int64    `json:"dead_letters"`
		DeliveredPerSecond *float64 `json:"delivered_per_second"`
	}
	type pointJSON struct {
		At                 time.Time `json:"at"`
		Backlog            int64     `json:"backlog"`
		DeliveredPerSecond float64   `json:"delivered_per_second"`
	}
	out := struct {
		Scope     string      `json:"scope"`
		SampledAt *time.Time  `json:"sampled_at"`
		Rows      []rowJSON   `json:"rows"`
		History   []pointJSON `json:"history"`
		Error     string      `json:"sample_error,omitempty"`
	}{Scope: scope, Rows: []rowJSON{}, History: []pointJSON{}}
	latest, _, lastErr := d.sampler.state()
	if lastErr != nil {
		out.Error = lastErr.Error()
	}
	if latest != nil {
		at := latest.At.UTC()
		out.SampledAt = &at
		for _, x := range latest.Rows {
			if x.Scope != scope {
				continue
			}
			j := rowJSON{Lane: x.Lane, Target: x.Target, Pending: x.Pending, Due: x.Due, OldestDueSeconds: x.OldestDueAge.Seconds(),
				Claimed: x.Claimed, ExpiredLeases: x.ExpiredLeases, DeadLetters: x.DeadLetters}
			if x.DeliveredPerSecond >= 0 {
				v := x.DeliveredPerSecond
				j.DeliveredPerSecond = &v
			}
			out.Rows = append(out.Rows, j)
		}
	}
	for _, s := range d.sampler.history() {
		p := pointJSON{At: s.At.UTC()}
		for _, x := range s.Rows {
			if x.Scope == scope {
				p.Backlog += x.Pending + x.Claimed
				p.DeliveredPerSecond += max(x.DeliveredPerSecond, 0)
			}
		}
		out.History = append(out.History, p)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// filterField is one filter of the message list.
type filterField struct {
	Name, Label string
	Options     []string // a select's choices ("" is any); nil for text
	Value       string
}

// messageFilters are the message list's filters in form order. A new
// ListFilter field is one entry here and one line in listFilter.
func messageFilters(q url.Values) []filterField {
	fields := []filterField{
		{Name: "status", Label: "Status", Options: []string{"", string(outbox.StatusPending), string(outbox.StatusClaimed),
			string(outbox.StatusDelivered), string(outbox.StatusDeadLetter)}},
		{Name: "lane", Label: "Lane"},
		{Name: "target", Label: "Target"},
		{Name: "ordering_key", Label: "Ordering key"},
		{Name: "dedupe_key", Label: "Dedupe key"},
		{Name: "error", Label: "Error contains"},
	}
	for i := range fields {
		fields[i].Value = q.Get(fields[i].Name)
	}
	return fields
}

func listFilter(q url.Values) outbox.ListFilter {
	return outbox.ListFilter{
		Status: outbox.Status(q.Get("status")), Lane: q.Get("lane"), Target: q.Get("target"),
		OrderingKey: q.Get("ordering_key"), DedupeKey: q.Get("dedupe_key"), ErrorContains: q.Get("error"),
		AfterID: q.Get("after"), Limit: pageSize,
	}
}

type messagesData struct {
	Filters  []filterField
	Messages []messageRow
	Next     string // link to the next page, "" on the last
	First    string // link to the first page, "" on it
	Filtered bool
}

type messageRow struct {
	outbox.Message
	PayloadShort string
	KeyShort     string  // the ordering key cut for a list, "" when none
	Hold         keyHold // for keyed dead letters: whether it holds its key
}

func toRow(m outbox.Message) messageRow {
	return messageRow{Message: m, PayloadShort: clip(compactJSON(m.Payload), listPayloadRunes), KeyShort: clip(m.OrderingKey, listKeyRunes)}
}

func (d *Dashboard) messages(w http.ResponseWriter, r *http.Request) {
	scope, st, err := d.requestScope(r)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	q := r.URL.Query()
	f := listFilter(q)
	data := messagesData{Filters: messageFilters(q)}
	p := d.newPage(r, "Messages", "messages")
	if err := f.Validate(); err != nil {
		d.render(w, r, http.StatusBadRequest, "messages", withError(p, err), data)
		return
	}
	ctx, cancel := d.queryCtx(r)
	defer cancel()
	msgs, err := st.List(ctx, f)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	for _, m := range msgs {
		data.Messages = append(data.Messages, toRow(m))
	}
	kv := []string{"scope", scopeParam(scope, d.scope)}
	for _, ff := range data.Filters {
		kv = append(kv, ff.Name, ff.Value)
		data.Filtered = data.Filtered || ff.Value != ""
	}
	if limit, _ := validate.ListLimit(f.Limit); len(msgs) == limit {
		data.Next = d.link("/messages", append(kv, "after", msgs[len(msgs)-1].ID)...)
	}
	if f.AfterID != "" {
		data.First = d.link("/messages", kv...)
	}
	d.render(w, r, http.StatusOK, "messages", p, data)
}

// scopeParam is the ?scope= value for scope: empty for the store's own.
func scopeParam(scope, own string) string {
	if scope == own {
		return ""
	}
	return scope
}

// withError shows the page with an error about the request itself.
func withError(p page, err error) page {
	p.Error = err.Error()
	return p
}

// field is one labelled value of the detail page.
type field struct {
	Label, Value string
	Mono         bool
	Href         string // a link next to the value, when set
	HrefText     string
}

// messageFields are the detail page's fields in order. A new Message field
// is one line here.
func messageFields(m outbox.Message, keyList string) []field {
	lease := ""
	if !m.LeaseExpiresAt.IsZero() {
		lease = fmtTime(m.LeaseExpiresAt)
	}
	return []field{
		{Label: "ID", Value: m.ID, Mono: true},
		{Label: "Status", Value: string(m.Status)},
		{Label: "Lane", Value: m.Lane},
		{Label: "Target", Value: m.Target},
		{Label: "Dedupe key", Value: m.DedupeKey, Mono: true},
		orderingKeyField(m, keyList),
		{Label: "Attempts", Value: fmt.Sprintf("%d of %d", m.AttemptCount, m.MaxAttempts)},
		{Label: "Created", Value: fmtTime(m.CreatedAt)},
		{Label: "Available at", Value: fmtTime(m.AvailableAt)},
		{Label: "Updated", Value: fmtTime(m.UpdatedAt)},
		{Label: "Claimed by", Value: m.ClaimedBy},
		{Label: "Lease expires", Value: lease},
	}
}

// orderingKeyField shows a message's ordering key with a link to the key's
// messages (keyList), in their order.
func orderingKeyField(m outbox.Message, keyList string) field {
	f := field{Label: "Ordering key", Value: m.OrderingKey, Mono: true}
	if m.OrderingKey != "" {
		f.Href, f.HrefText = keyList, "the key's messages"
	}
	return f
}

// header is one message header, for the detail page.
type header struct{ Name, Value string }

// sortedHeaders are h in name order, so that the page reads the same every
// time.
func sortedHeaders(h map[string]string) []header {
	out := make([]header, 0, len(h))
	for _, name := range slices.Sorted(maps.Keys(h)) {
		out = append(out, header{Name: name, Value: h[name]})
	}
	return out
}

type messageData struct {
	Message   outbox.Message
	Fields    []field
	Headers   []header
	Payload   string
	Truncated int // bytes of payload not shown
	Dead      bool
	Hold      keyHold // a keyed dead letter: whether it holds its key
}

func (d *Dashboard) message(w http.ResponseWriter, r *http.Request) {
	scope, st, err := d.requestScope(r)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	ctx, cancel := d.queryCtx(r)
	defer cancel()
	m, err := st.Get(ctx, r.PathValue("id"))
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	sp := scopeParam(scope, d.scope)
	keyList := d.link("/messages", "scope", sp, "lane", m.Lane, "target", m.Target, "ordering_key", m.OrderingKey)
	data := messageData{Message: m, Fields: messageFields(m, keyList), Headers: sortedHeaders(m.Headers),
		Dead: m.Status == outbox.StatusDeadLetter}
	holds, err := d.keyHolds(ctx, st, []outbox.Message{m}, true)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	data.Hold = holds[m.ID]
	if data.Hold.Holds {
		data.Hold.Release = d.releaseLink(sp, m, d.here(r))
	}
	data.Payload = prettyJSON(m.Payload)
	if len(data.Payload) > maxDetailPayload {
		cut := maxDetailPayload
		for cut > 0 && !utf8.RuneStart(data.Payload[cut]) {
			cut--
		}
		data.Truncated = len(data.Payload) - cut
		data.Payload = data.Payload[:cut]
	}
	d.render(w, r, http.StatusOK, "message", d.newPage(r, "Message "+m.ID, "messages"), data)
}

type deadLettersData struct {
	Groups      []group
	Messages    []messageRow
	Lane        string
	Target      string
	Error       string
	Next, First string
}

type group struct {
	db.DashboardDeadLetterGroupsRow
	ErrorShort string
	View       string
}

func (d *Dashboard) deadLetters(w http.ResponseWriter, r *http.Request) {
	scope, st, err := d.requestScope(r)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	q := r.URL.Query()
	data := deadLettersData{Lane: q.Get("lane"), Target: q.Get("target"), Error: q.Get("error")}
	f := outbox.ListFilter{Status: outbox.StatusDeadLetter, Lane: data.Lane, Target: data.Target,
		ErrorContains: data.Error, AfterID: q.Get("after"), Limit: pageSize}
	if err := f.Validate(); err != nil {
		d.failErr(w, r, err)
		return
	}
	ctx, cancel := d.queryCtx(r)
	defer cancel()
	groups, err := d.q.DashboardDeadLetterGroups(ctx, db.DashboardDeadLetterGroupsParams{
		Scope: scope, Lane: optional(data.Lane), Target: optional(data.Target), Max: maxGroups,
	})
	if err != nil {
		d.failErr(w, r, fmt.Errorf("dead-letter groups: %w", err))
		return
	}
	sp := scopeParam(scope, d.scope)
	for _, g := range groups {
		data.Groups = append(data.Groups, group{DashboardDeadLetterGroupsRow: g, ErrorShort: clip(g.LastError, listErrorRunes),
			View: d.link("/dead-letters", "scope", sp, "lane", g.Lane, "target", g.Target, "error", g.LastError)})
	}
	msgs, err := st.List(ctx, f)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	holds, err := d.keyHolds(ctx, st, msgs, false)
	if err != nil {
		d.failErr(w, r, err)
		return
	}
	for _, m := range msgs {
		row := toRow(m)
		row.Hold = holds[m.ID]
		if row.Hold.Holds {
			row.Hold.Release = d.releaseLink(sp, m, d.here(r))
		}
		data.Messages = append(data.Messages, row)
	}
	kv := []string{"scope", sp, "lane", data.Lane, "target", data.Target, "error", data.Error}
	if limit, _ := validate.ListLimit(f.Limit); len(msgs) == limit {
		data.Next = d.link("/dead-letters", append(kv, "after", msgs[len(msgs)-1].ID)...)
	}
	if f.AfterID != "" {
		data.First = d.link("/dead-letters", kv...)
	}
	d.render(w, r, http.StatusOK, "dead_letters", d.newPage(r, "Dead letters", "dead"), data)
}

// keyHold says whether a keyed dead letter holds its ordering key, and how
// many of the key's messages wait behind it.
type keyHold struct {
	Holds   bool
	Waiting int  // pending messages of the key enqueued after it, up to maxWaitingCount; -1 when not counted
	More    bool // maxWaitingCount or more wait
	Release string
}

// WaitingText is the count of waiting messages for people: "3", "100+".
func (h keyHold) WaitingText() string {
	if h.More {
		return fmtInt(maxWaitingCount) + "+"
	}
	return fmtInt(int64(h.Waiting))
}

// keyHolds finds which of msgs are dead letters that hold their ordering
// key (not released, Message.HoldsOrderingKey), by id, and with count, how
// many messages wait behind each.
//
// The listing says whether each dead letter was released
// (Message.OrderingKeyReleased), so marking a page costs no query. Waiting
// messages are counted with List (the key's partial index), bounded by
// maxWaitingCount; List is planned per execution, so a count costs about
// 2.5 ms whatever the key's size, which is why lists of dead letters show
// the badge only and the count is on the message's page and the release's
// confirmation (BenchmarkDeadLettersHoldingKeys).
func (d *Dashboard) keyHolds(ctx context.Context, st *outbox.PostgresStore, msgs []outbox.Message, count bool) (map[string]keyHold, error) {
	out := map[string]keyHold{}
	for _, m := range msgs {
		if m.Status != outbox.StatusDeadLetter || !m.HoldsOrderingKey() {
			continue
		}
		if !count {
			out[m.ID] = keyHold{Holds: true, Waiting: -1}
			continue
		}
		waiting, err := st.List(ctx, outbox.ListFilter{Status: outbox.StatusPending, Lane: m.Lane, Target: m.Target,
			OrderingKey: m.OrderingKey, AfterID: m.ID, Limit: maxWaitingCount})
		if err != nil {
			return nil, fmt.Errorf("messages waiting behind message %s: %w", m.ID, err)
		}
		out[m.ID] = keyHold{Holds: true, Waiting: len(waiting), More: len(waiting) == maxWaitingCount}
	}
	return out, nil
}

// releaseLink leads to the confirmation page of releasing m's ordering
// key, which comes back to back (a path within the dashboard) afterwards.
func (d *Dashboard) releaseLink(scopeParam string, m outbox.Message, back string) string {
	return d.link("/dead-letters/release-key", "scope", scopeParam, "lane", m.Lane, "target", m.Target,
		"ordering_key", m.OrderingKey, "back", back)
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Formatting for the templates.

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t)
	if d < 0 {
		return "in " + shortAge(-d)
	}
	return shortAge(d) + " ago"
}

// shortAge is a duration at a glance: 850ms, 42s, 4m12s, 3h05m, 2d04h.
func shortAge(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// fmtInt groups thousands: 1,234,567.
func fmtInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtRate(v float64) string {
	switch {
	case v < 0:
		return "–"
	case v == 0:
		return "0"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return fmtInt(int64(math.Round(v)))
}

// clip shortens s to n runes on one line, with an ellipsis when cut.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

func prettyJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}
