package scheduler

import (
	"testing"
	"time"
)

func TestLagMeter(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	var m lagMeter
	steps := []struct {
		at, took time.Duration // answer time after t0, and how long it took
		want     time.Duration // get() after it
	}{
		{0, 300 * time.Millisecond, 300 * time.Millisecond},
		{time.Second, 20 * time.Millisecond, 300 * time.Millisecond},      // the window's longest
		{11 * time.Second, 10 * time.Millisecond, 300 * time.Millisecond}, // new window: the last one still counts
		{22 * time.Second, 5 * time.Millisecond, 10 * time.Millisecond},   // the slow burst is two windows old
		{23 * time.Second, 400 * time.Millisecond, 400 * time.Millisecond},
	}
	for i, st := range steps {
		now := t0.Add(st.at)
		m.note(now.Add(-st.took), now)
		if got := m.get(); got != st.want {
			t.Errorf("step %d: lag %v, want %v", i, got, st.want)
		}
	}
}
