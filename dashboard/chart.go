package dashboard

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// chart is a line chart drawn as SVG by the templates: the geometry is
// computed here, so the page needs no charting script.
type chart struct {
	Title      string
	Last       string // the latest value, formatted
	W, H       int
	Left, Top  int // plot area origin
	PW, PH     int // plot area size
	Right      int // Left + PW
	LabelX     int // where the y labels end
	MidX, MidY int
	XLabelY    int // baseline of the time labels
	Line, Area string
	Grid       []gridLine
	XLabels    []xLabel
	Empty      bool
}

type gridLine struct {
	Y     float64
	Label string
}

type xLabel struct {
	X     float64
	Label string
}

type point struct {
	at time.Time
	v  float64
}

// newChart lays points out over the window [end-span, end].
func newChart(title string, pts []point, end time.Time, span time.Duration, format func(float64) string) chart {
	c := chart{Title: title, W: 560, H: 150, Left: 52, Top: 8, PW: 496, PH: 118}
	c.Right, c.LabelX, c.MidX, c.MidY = c.Left+c.PW, c.Left-6, c.Left+c.PW/2, c.Top+c.PH/2
	c.XLabelY = c.Top + c.PH + 16
	top := 0.0
	for _, p := range pts {
		top = math.Max(top, p.v)
	}
	top = niceCeil(top)
	for i := 0; i <= 2; i++ {
		v := top * float64(i) / 2
		c.Grid = append(c.Grid, gridLine{Y: float64(c.Top) + float64(c.PH)*(1-v/top), Label: format(v)})
	}
	for _, back := range []time.Duration{span, span / 2, 0} {
		label := "now"
		if back > 0 {
			label = "-" + shortDuration(back)
		}
		c.XLabels = append(c.XLabels, xLabel{X: float64(c.Left) + float64(c.PW)*(1-float64(back)/float64(span)), Label: label})
	}
	if len(pts) == 0 {
		c.Empty = true
		return c
	}
	c.Last = format(pts[len(pts)-1].v)
	var line strings.Builder
	start := end.Add(-span)
	firstX, lastX := 0.0, 0.0
	for i, p := range pts {
		x := float64(c.Left) + float64(c.PW)*math.Max(0, float64(p.at.Sub(start)))/float64(span)
		y := float64(c.Top) + float64(c.PH)*(1-p.v/top)
		if i == 0 {
			firstX = x
		} else {
			line.WriteByte(' ')
		}
		lastX = x
		line.WriteString(strconv.FormatFloat(x, 'f', 1, 64) + "," + strconv.FormatFloat(y, 'f', 1, 64))
	}
	c.Line = line.String()
	bottom := strconv.FormatFloat(float64(c.Top+c.PH), 'f', 1, 64)
	c.Area = fmt.Sprintf("%.1f,%s %s %.1f,%s", firstX, bottom, c.Line, lastX, bottom)
	return c
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1), so
// that the axis labels are round numbers.
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func shortDuration(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}
