package main

import "strings"

// Markers around a section of BENCHMARKS.md that another benchmark wrote
// (the dashboard's: go test -bench Dashboard ./dashboard). make bench
// regenerates the rest of the file and keeps these sections, in order, at
// its end.
const (
	keepBegin = "<!-- keep: "
	keepEnd   = "<!-- /keep -->"
)

// keptSections returns every section of md from a line starting with
// keepBegin to the next keepEnd line, markers included, each followed by a
// newline and preceded by a blank line. An unclosed section runs to the end.
func keptSections(md string) string {
	var out strings.Builder
	lines := strings.SplitAfter(md, "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], keepBegin) {
			continue
		}
		out.WriteString("\n")
		for ; i < len(lines); i++ {
			out.WriteString(lines[i])
			if strings.HasPrefix(lines[i], keepEnd) {
				break
			}
		}
		if !strings.HasSuffix(out.String(), "\n") {
			out.WriteString("\n")
		}
	}
	return out.String()
}
