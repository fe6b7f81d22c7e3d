package cli

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/oncecron/oncecron/config"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/memlock"
	"github.com/oncecron/oncecron/scheduler"
	"go.uber.org/zap/zaptest"
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

// manualClock is a clock the test moves by hand (timers are real ones; the
// memory backend only reads Now).
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *manualClock) NewTimer(d time.Duration) locking.Timer {
	return locking.SystemClock{}.NewTimer(d)
}
func (c *manualClock) AfterFunc(d time.Duration, f func()) locking.Timer {
	return locking.SystemClock{}.AfterFunc(d, f)
}

// TestReloadWidensMemoryKeep: a reloaded table with a longer starting
// deadline makes the memory backend keep done markers that much longer, so a
// tick of the new job stays done for its whole deadline.
func TestReloadWidensMemoryKeep(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jobs.yaml")
	table := func(deadline string) []byte {
		return []byte("backend: {type: memory}\nlock: {ttl: 10s}\njobs:\n" +
			"  - name: a\n    schedule: \"@every 1h\"\n    command: [\"true\"]\n    starting_deadline: " + deadline + "\n")
	}
	if err := os.WriteFile(path, table("20s"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Options{Registry: defaultRegistry()}
	cfg, err := load(path, o)
	if err != nil {
		t.Fatal(err)
	}
	clk := &manualClock{now: time.Unix(1_800_000_000, 0)}
	b := memlock.New(append(memoryBounds(cfg), memlock.WithClock(clk))...)
	defer b.Close()
	l, err := locking.New(b)
	if err != nil {
		t.Fatal(err)
	}
	sjobs, err := schedulerJobs(cfg, o.Registry)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scheduler.New(scheduler.Options{Jobs: sjobs, Locker: l, Replica: "r1", TTL: cfg.Lock.TTL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); watchTable(ctx, path, cfg, s, b, o, zaptest.NewLogger(t)) }()
	defer func() { cancel(); <-done }()
	// kept reports whether a tick completed now is still done past the old
	// bound (1 min 30 s) but within the new one (10 min + 10 s + 1 min).
	kept := func(i int) bool {
		key := locking.Key{Scope: "a", Name: strconv.Itoa(i)}
		owner := locking.NewOwner()
		g, err := b.Claim(t.Context(), key, owner, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Complete(t.Context(), g, locking.Record{Key: key, Owner: owner, Token: g.Token}, cfg.Lock.Retention); err != nil {
			t.Fatal(err)
		}
		clk.add(10*time.Minute + 10*time.Second)
		_, err = b.Claim(t.Context(), key, locking.NewOwner(), time.Second)
		return errors.Is(err, locking.ErrDone)
	}
	if kept(0) {
		t.Fatal("a marker outlived the bound of the first table")
	}
	for i := 1; !kept(i); i++ {
		if i > 100 { // 10 s: the table is polled every reloadPoll
			t.Fatal("after the table's reload, markers still expire by the first table's bound")
		}
		if i%10 == 1 {
			// Written again (with a new comment) until it is read: the
			// watcher may not have taken the file's first sum yet.
			if err := os.WriteFile(path, append(table("10m"), "# "+strconv.Itoa(i)+"\n"...), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}
