package cli

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/oncecron/oncecron/config"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/memlock"
)

// TestMemoryBounds: the memory backend keeps done markers for the longest
// starting deadline + TTL + 1 min, not lock.retention, and shares its
// history records out among the jobs.
func TestMemoryBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := &config.Config{Lock: config.Lock{TTL: 10 * time.Second, Retention: 48 * time.Hour}}
		for i := range 10000 {
			d := 20 * time.Second
			if i == 7 {
				d = 5 * time.Minute
			}
			cfg.Jobs = append(cfg.Jobs, config.Job{StartingDeadline: d})
		}
		ctx := t.Context()
		b := memlock.New(memoryBounds(cfg)...)
		defer b.Close()
		key := locking.Key{Scope: "job", Name: "t"}
		owner := locking.NewOwner()
		g, err := b.Claim(ctx, key, owner, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Complete(ctx, g, locking.Record{Key: key, Owner: owner, Token: g.Token}, cfg.Lock.Retention); err != nil {
			t.Fatal(err)
		}
		for i := range 12 {
			if err := b.AddRecord(ctx, locking.Record{Key: key, Token: uint64(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if recs, _ := b.Records(ctx, "job", 100); len(recs) != 10 {
			t.Errorf("%d records kept for a job among 10,000, want 10", len(recs))
		}
		keep := 5*time.Minute + 10*time.Second + time.Minute
		time.Sleep(keep - time.Second)
		if _, err := b.Claim(ctx, key, locking.NewOwner(), time.Second); !errors.Is(err, locking.ErrDone) {
			t.Errorf("claim within the longest deadline + TTL + 1 min: %v, want ErrDone", err)
		}
		time.Sleep(2 * time.Second)
		if _, err := b.Claim(ctx, key, locking.NewOwner(), time.Second); err != nil {
			t.Errorf("claim after the longest deadline + TTL + 1 min: %v, want a win (lock.retention does not apply)", err)
		}
	})
}
