package wakeup

import (
	"slices"
	"testing"
	"time"
)

func TestPendingWakesOnceEachKeyOfCommittedTransactions(t *testing.T) {
	p := NewPending()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if !p.Add(1, "a", t0) {
		t.Fatal("the first Add must start the watcher")
	}
	if p.Add(1, "b", t0) || p.Add(2, "a", t0) || p.Add(3, "c", t0) || p.Add(4, "d", t0) {
		t.Fatal("Add started a second watcher while one runs")
	}
	if got := p.Xacts(); len(got) != 4 {
		t.Fatalf("Xacts = %v", got)
	}

	// A failed read keeps everything.
	if wake, done := p.Resolve(nil, t0); wake != nil || done {
		t.Fatalf("failed read: wake %v, done %v", wake, done)
	}
	wake, done := p.Resolve(map[int64]string{1: StatusCommitted, 2: StatusCommitted, 3: StatusAborted, 4: StatusInProgress}, t0)
	slices.Sort(wake)
	if !slices.Equal(wake, []string{"a", "b"}) || done {
		t.Fatalf("wake %v, done %v; want [a b], not done", wake, done)
	}
	if got := p.Xacts(); !slices.Equal(got, []int64{4}) {
		t.Fatalf("left pending %v, want [4]", got)
	}

	// The id the server forgot ("") leaves the set; the goroutine ends and
	// the next Add starts another.
	if wake, done := p.Resolve(map[int64]string{4: ""}, t0); wake != nil || !done {
		t.Fatalf("forgotten: wake %v, done %v", wake, done)
	}
	if !p.Add(5, "e", t0) {
		t.Fatal("Add after the set emptied must start a watcher")
	}
	if got := p.Oldest(t0.Add(time.Second)); got != time.Second {
		t.Errorf("Oldest = %s, want 1s", got)
	}
	// Still in progress after MaxPending: forgotten.
	if wake, done := p.Resolve(map[int64]string{5: StatusInProgress}, t0.Add(MaxPending)); wake != nil || !done {
		t.Fatalf("expired: wake %v, done %v", wake, done)
	}
}

func TestPendingDropForgetsEverything(t *testing.T) {
	p := NewPending()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p.Add(1, "a", t0)
	p.Add(2, "b", t0)
	p.Drop()
	if got := p.Xacts(); len(got) != 0 || p.Oldest(t0) != 0 {
		t.Fatalf("after Drop: %v pending", got)
	}
	if !p.Add(3, "c", t0) {
		t.Fatal("Add after Drop must start a watcher")
	}
}
