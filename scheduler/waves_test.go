package scheduler

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/oncecron/oncecron/jobs"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/memlock"
	"github.com/oncecron/oncecron/schedule"
)

// TestWavesForgotten: the scheduler forgets an instant's wave once its runs
// started, also when no claim goes out ahead of an instant (buffer_one jobs
// claim at it), so a replica that runs for days keeps a handful.
func TestWavesForgotten(t *testing.T) {
	for _, overlap := range []Overlap{OverlapBufferOne, OverlapAllow} {
		synctest.Test(t, func(t *testing.T) {
			every, err := schedule.Parse("* * * * * *", schedule.Options{})
			if err != nil {
				t.Fatal(err)
			}
			l, err := locking.New(memlock.New())
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(Options{Locker: l, Replica: "r1", TTL: 3 * time.Second, SkipCatchUp: true, Jobs: []Job{{
				Name: "j", Schedule: every, Overlap: overlap,
				Func: func(context.Context, jobs.Run) error { return nil },
			}}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			most := 0
			for range 120 {
				time.Sleep(time.Second)
				s.wavesMu.Lock()
				most = max(most, len(s.waves))
				s.wavesMu.Unlock()
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if most > 3 {
				t.Errorf("overlap %v: %d waves remembered at once over two minutes, want at most 3", overlap, most)
			}
		})
	}
}
