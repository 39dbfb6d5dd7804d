package main

import "testing"

func TestReplaceSection(t *testing.T) {
	section := markerBegin + "\nnew\n" + markerEnd + "\n"
	for _, tc := range []struct{ doc, want string }{
		{"", section},
		{"# Benchmarks\n\nmain report\n", "# Benchmarks\n\nmain report\n\n" + section},
		{"# Benchmarks\n\n" + markerBegin + "\nold\n" + markerEnd + "\n\n## after\n", "# Benchmarks\n\n" + section + "## after\n"},
		// Another kept section (the dashboard's) ends with the same marker,
		// before and after ours: both stay as they were.
		{
			"# B\n\n<!-- keep: dashboard -->\nd\n" + markerEnd + "\n\n" + markerBegin + "\nold\n" + markerEnd + "\n\n<!-- keep: x -->\nx\n" + markerEnd + "\n",
			"# B\n\n<!-- keep: dashboard -->\nd\n" + markerEnd + "\n\n" + section + "<!-- keep: x -->\nx\n" + markerEnd + "\n",
		},
	} {
		if got := string(replaceSection([]byte(tc.doc), section)); got != tc.want {
			t.Errorf("replaceSection(%q) =\n%q\nwant\n%q", tc.doc, got, tc.want)
		}
	}
}
