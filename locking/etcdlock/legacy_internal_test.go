package etcdlock

import (
	"strconv"
	"testing"
	"time"
)

// TestLegacyScopesPlan: what a claim adds for a scope, by what the Backend
// knows of it (pure logic, explicit times).
func TestLegacyScopesPlan(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	type step struct {
		at             time.Duration // after t0
		learn          int64         // -1: no probe answer; else the count the probe read
		compare, probe bool          // what plan says before learning
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"unknown scope: compare and probe; a zero count makes it clean", []step{
			{0, 0, true, true}, {time.Second, -1, false, false}, {time.Hour, -1, false, false}}},
		{"markers left: compare, probe again only after legacyProbeEvery", []step{
			{0, 3, true, true}, {legacyProbeEvery / 2, -1, true, false},
			{legacyProbeEvery, 1, true, true}, {legacyProbeEvery + time.Second, -1, true, false},
			{2 * legacyProbeEvery, 0, true, true}, {2*legacyProbeEvery + time.Second, -1, false, false}}},
		{"a probe whose answer never came (lost or failed claim) waits its turn", []step{
			{0, -1, true, true}, {time.Second, -1, true, false}, {legacyProbeEvery, 0, true, true},
			{legacyProbeEvery + time.Second, -1, false, false}}},
		{"a clock stepped back probes again", []step{
			{time.Hour, -1, true, true}, {0, -1, true, true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var l legacyScopes
			for i, s := range tc.steps {
				compare, probe := l.plan("s", t0.Add(s.at))
				if compare != s.compare || probe != s.probe {
					t.Fatalf("step %d: plan = compare %v, probe %v; want %v, %v", i, compare, probe, s.compare, s.probe)
				}
				if s.learn >= 0 {
					l.learn("s", s.learn)
				}
			}
			if c, _ := l.plan("other", t0); !c {
				t.Error("another scope was taken for clean")
			}
		})
	}
}

// TestLegacyScopesBound: a full legacyScopes forgets and learns again.
func TestLegacyScopesBound(t *testing.T) {
	var l legacyScopes
	now := time.Now()
	for i := range maxLegacyScopes - 1 {
		l.plan(strconv.Itoa(i), now)
	}
	l.learn("clean", 0)
	if !l.isClean("clean") || len(l.m) != maxLegacyScopes {
		t.Fatalf("clean %v, %d scopes remembered", l.isClean("clean"), len(l.m))
	}
	l.plan("one more", now)
	if len(l.m) != 1 || l.isClean("clean") {
		t.Errorf("after the bound: %d scopes remembered, clean %v; want 1, false", len(l.m), l.isClean("clean"))
	}
}
