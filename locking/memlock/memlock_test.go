package memlock_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/locktest"
	"github.com/oncecron/oncecron/locking/memlock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	shared := memlock.New() // every "replica" of the in-memory backend shares one process
	locktest.Run(t, locktest.Harness{
		New: func(t *testing.T) locking.Backend { return nopClose{shared} },
		NewFaulty: func(t *testing.T) (locking.Backend, locktest.Fault) {
			f := locktest.NewFaultyBackend(shared)
			return f, f
		},
		Unreachable: func(t *testing.T) (locking.Backend, error) {
			f := locktest.NewFaultyBackend(memlock.New())
			f.Cut()
			return f, nil
		},
	})
}

// nopClose keeps one client's Close from closing the backend the others share.
type nopClose struct{ locking.Backend }

func (nopClose) Close() error { return nil }

// TestHistoryBound: a scope keeps its newest records up to the bound,
// however many were added, and reads them newest first.
func TestHistoryBound(t *testing.T) {
	b := memlock.New(memlock.WithMaxRecords(3))
	defer b.Close()
	for _, tc := range []struct {
		added, limit int
		want         []uint64 // tokens, newest first
	}{
		{added: 0, limit: 10, want: nil},
		{added: 2, limit: 10, want: []uint64{2, 1}},
		{added: 3, limit: 10, want: []uint64{3, 2, 1}},
		{added: 4, limit: 10, want: []uint64{4, 3, 2}},
		{added: 8, limit: 10, want: []uint64{8, 7, 6}},
		{added: 8, limit: 2, want: []uint64{8, 7}},
		{added: 8, limit: 0, want: nil},
	} {
		scope := fmt.Sprintf("s%d-%d", tc.added, tc.limit)
		for i := 1; i <= tc.added; i++ {
			if err := b.AddRecord(t.Context(), locking.Record{Key: locking.Key{Scope: scope, Name: "k"}, Token: uint64(i)}); err != nil {
				t.Fatal(err)
			}
		}
		recs, err := b.Records(t.Context(), scope, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, r := range recs {
			got = append(got, r.Token)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%d added, limit %d: tokens %v, want %v", tc.added, tc.limit, got, tc.want)
		}
	}
}

// TestMaxRetention: done markers last at most the bound, whatever retention
// the completion asked for, and a shorter retention is kept as asked.
func TestMaxRetention(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		b := memlock.New(memlock.WithMaxRetention(time.Minute))
		defer b.Close()
		complete := func(name string, retention time.Duration) locking.Key {
			key := locking.Key{Scope: "job", Name: name}
			owner := locking.NewOwner()
			g, err := b.Claim(ctx, key, owner, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Complete(ctx, g, locking.Record{Key: key, Owner: owner, Token: g.Token}, retention); err != nil {
				t.Fatal(err)
			}
			return key
		}
		long, short := complete("long", time.Hour), complete("short", 10*time.Second)
		claim := func(key locking.Key) error {
			g, err := b.Claim(ctx, key, locking.NewOwner(), time.Second)
			if err == nil {
				_ = b.Release(ctx, g)
			}
			return err
		}
		time.Sleep(30 * time.Second)
		if err := claim(long); !errors.Is(err, locking.ErrDone) {
			t.Errorf("30 s after a completion kept an hour (at most a minute): %v, want ErrDone", err)
		}
		if err := claim(short); err != nil {
			t.Errorf("30 s after a completion kept 10 s: %v, want a win", err)
		}
		time.Sleep(31 * time.Second)
		if err := claim(long); err != nil {
			t.Errorf("61 s after a completion kept at most a minute: %v, want a win", err)
		}
	})
}

// TestWaitWakesOnlyItsKey: a change of one key wakes the waiters of that key
// only (with thousands of losers waiting, a completion must not wake them
// all), and a waiter whose key was completed learns it from Wait.
func TestWaitWakesOnlyItsKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		b := memlock.New()
		a, other := locking.Key{Scope: "job", Name: "a"}, locking.Key{Scope: "job", Name: "b"}
		ga, err := b.Claim(ctx, a, "o1", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		gb, err := b.Claim(ctx, other, "o1", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		type woken struct {
			after time.Duration
			err   error
		}
		done := make(chan woken, 1)
		go func() {
			err := b.Wait(ctx, a)
			done <- woken{time.Since(start), err}
		}()
		time.Sleep(100 * time.Millisecond)
		if err := b.Release(ctx, gb); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		select {
		case w := <-done:
			t.Fatalf("the waiter of %s woke %v after the start (%v) when %s was released", a, w.after, w.err, other)
		default:
		}
		time.Sleep(100 * time.Millisecond)
		if err := b.Complete(ctx, ga, locking.Record{Key: a, Outcome: locking.OutcomeSucceeded}, time.Hour); err != nil {
			t.Fatal(err)
		}
		w := <-done
		if w.after != 200*time.Millisecond || !errors.Is(w.err, locking.ErrDone) {
			t.Errorf("the waiter woke %v after the start with %v, want at the completion (200ms) with ErrDone", w.after, w.err)
		}
		// A key completed already: Wait says so at once.
		if err := b.Wait(ctx, a); !errors.Is(err, locking.ErrDone) {
			t.Errorf("Wait of a completed key: %v, want ErrDone", err)
		}
	})
}
