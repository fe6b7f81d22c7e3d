package jobs_test

import (
	"testing"
	"time"

	"github.com/oncecron/oncecron/jobs"
)

func TestRunWithLogger(t *testing.T) {
	log, logs := newLogger(t)
	nyc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	at := time.Date(2026, 11, 24, 21, 30, 0, 0, nyc)
	run := jobs.Run{Job: "nightly", Scheduled: at, Token: 42, Attempt: 2, Replica: "r1"}.WithLogger(log)
	if run.Scheduled.Location() != time.UTC || !run.Scheduled.Equal(at) {
		t.Errorf("Scheduled = %v, want %v in UTC", run.Scheduled, at)
	}
	run.Logger.Info("hi")
	got := logs.All()[0].ContextMap()
	want := map[string]any{
		"job": "nightly", "scheduled": at.UTC(), "token": uint64(42), "attempt": int64(2), "replica": "r1",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("field %s = %#v, want %#v", k, got[k], v)
		}
	}
}

func TestRunLogNil(t *testing.T) {
	var run jobs.Run
	run.Log().Info("must not panic")
	run = run.WithLogger(nil)
	run.Logger.Info("must not panic either")
}
