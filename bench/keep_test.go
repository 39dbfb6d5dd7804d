package main

import "testing"

func TestKeptSections(t *testing.T) {
	md := "# Benchmarks\n\nold generated text\n\n<!-- keep: dashboard -->\n## dashboard\n\n| a | b |\n<!-- /keep -->\n\n## more generated\n<!-- keep: other -->\nx"
	want := "\n<!-- keep: dashboard -->\n## dashboard\n\n| a | b |\n<!-- /keep -->\n\n<!-- keep: other -->\nx\n"
	if got := keptSections(md); got != want {
		t.Errorf("kept:\n%q\nwant\n%q", got, want)
	}
	if got := keptSections("# nothing kept\n"); got != "" {
		t.Errorf("kept %q from a file without markers", got)
	}
}
