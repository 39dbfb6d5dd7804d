package benchkit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Plan is a statement's plan as auto_explain logged it: the plan, with the
// rows, buffers and WAL of the execution (EXPLAIN (ANALYZE, BUFFERS, WAL)
// without timing), of a statement slower than auto_explain.log_min_duration.
type Plan struct {
	Millis float64 `json:"ms"`
	Text   string  `json:"text"`
}

// logReader returns the server's log so far; nil when the harness cannot
// read the log (a server it did not start).
type logReader func(ctx context.Context) (io.ReadCloser, error)

// logSize is how many bytes the server's log holds.
func (h *Harness) logSize(ctx context.Context) (int64, error) {
	if h.logs == nil {
		return 0, nil
	}
	rc, err := h.logs(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = rc.Close() }()
	return io.Copy(io.Discard, rc)
}

// logSince returns the slowest plans auto_explain logged after offset, and
// the lines on lock waits and deadlocks (up to maxLines, and their count).
func (h *Harness) logSince(ctx context.Context, offset int64, maxPlans, maxLines int) (plans []Plan, lockLines []string, lockCount int, err error) {
	if h.logs == nil {
		return nil, nil, 0, nil
	}
	rc, err := h.logs(ctx)
	if err != nil {
		return nil, nil, 0, err
	}
	defer func() { _ = rc.Close() }()
	if _, err := io.CopyN(io.Discard, rc, offset); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, 0, err
	}
	rest, err := io.ReadAll(rc)
	if err != nil {
		return nil, nil, 0, err
	}
	for line := range strings.SplitSeq(string(rest), "\n") {
		if strings.Contains(line, "deadlock detected") || strings.Contains(line, "still waiting for") ||
			(strings.Contains(line, "acquired") && strings.Contains(line, " after ")) {
			lockCount++
			if len(lockLines) < maxLines {
				lockLines = append(lockLines, strings.TrimSpace(line))
			}
		}
	}
	plans = parsePlans(rest)
	slices.SortFunc(plans, func(a, b Plan) int {
		switch {
		case a.Millis > b.Millis:
			return -1
		case a.Millis < b.Millis:
			return 1
		}
		return 0
	})
	return plans[:min(len(plans), maxPlans)], lockLines, lockCount, nil
}

// parsePlans finds auto_explain's entries in a log: a line with
// "duration: N ms  plan:", then the plan's lines, each indented.
func parsePlans(log []byte) []Plan {
	var (
		out []Plan
		cur *Plan
		buf strings.Builder
	)
	flush := func() {
		if cur != nil {
			cur.Text = WithoutQueryText(strings.TrimRight(buf.String(), "\n"))
			out = append(out, *cur)
			cur = nil
			buf.Reset()
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "duration: "); i >= 0 && strings.HasSuffix(strings.TrimSpace(line), "plan:") {
			flush()
			f := strings.Fields(line[i+len("duration: "):])
			ms, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				continue
			}
			cur = &Plan{Millis: ms}
			continue
		}
		if cur != nil && (strings.HasPrefix(line, "\t") || strings.HasPrefix(line, " ")) {
			buf.WriteString(strings.TrimPrefix(line, "\t"))
			buf.WriteByte('\n')
			continue
		}
		flush()
	}
	flush()
	return out
}

// WithoutQueryText drops the query text auto_explain puts before a plan
// ("Query Text: ..." and the statement's lines): the plan starts at its
// first node, the first line with a cost. A statement of a hundred lines
// would otherwise fill an excerpt of the plan with SQL. Text without a
// cost line (costs off) is returned as is.
func WithoutQueryText(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.Contains(l, "  (cost=") {
			if i > 0 && !strings.HasPrefix(strings.TrimSpace(lines[0]), "Query Text:") {
				return text // not auto_explain's layout: leave it alone
			}
			return strings.Join(lines[i:], "\n")
		}
	}
	return text
}
