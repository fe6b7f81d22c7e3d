package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	bsm "github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	redsyncgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/redislock"
)

// Redis contenders, every one on its own go-redis client with the settings
// redislock.Dial uses (go-redis retries off, context timeouts on) and a hook
// that counts its requests:
//
//	raw            SET key val NX PX + the compare-and-delete Lua unlock
//	oncecron-*     Locker.Claim + Lease.Complete (retention 1m) or Lease.Release
//	redsync        go-redsync/redsync v4, one pool: Mutex.Lock/TryLock + Unlock
//	bsm-redislock  bsm/redislock: Obtain (no retry) + Lock.Release

// redisHook counts requests: one per command, one per pipeline. The commands
// of a new connection's handshake (HELLO, CLIENT ...) also pass through the
// hooks; they are not counted.
type redisHook struct{ c *counter }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func handshake(cmd redis.Cmder) bool { return cmd.Name() == "hello" || cmd.Name() == "client" }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !handshake(cmd) {
			h.c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !slices.ContainsFunc(cmds, handshake) {
			h.c.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// redisWarm dials c's connection before a measurement. go-redis v9.23 probes
// CLIENT MAINT_NOTIFICATIONS on a client's first connection; Redis 7.0 rejects
// it and the client dials again on its next request. Two requests absorb that
// (as redislock.Dial's clients do in production, once per client).
func redisWarm(b *testing.B, c *redis.Client) {
	b.Helper()
	for range 2 {
		if err := c.Ping(context.Background()).Err(); err != nil {
			b.Fatal(err)
		}
	}
}

func redisClient(b *testing.B) (*redis.Client, *counter) {
	b.Helper()
	c := redis.NewClient(&redis.Options{
		Addr: addr(b, envRedis), DialTimeout: time.Second,
		MaxRetries: -1, ContextTimeoutEnabled: true,
	})
	b.Cleanup(func() { _ = c.Close() })
	n := &counter{}
	c.AddHook(redisHook{n})
	return c, n
}

func redisLocker(b *testing.B, c *redis.Client) *locking.Locker {
	b.Helper()
	be, err := redislock.New(c, redislock.Options{Namespace: runID})
	if err != nil {
		b.Fatal(err)
	}
	l, err := locking.New(be)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// rawUnlock is the classic Redis unlock: delete the key only if it still holds
// our random value.
var rawUnlock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

func rawLock(ctx context.Context, c *redis.Client, key string) (string, bool, error) {
	val := locking.NewOwner()
	ok, err := c.SetNX(ctx, key, val, ttl).Result()
	return val, ok, err
}

func rawRelease(ctx context.Context, c *redis.Client, key, val string) error {
	n, err := rawUnlock.Run(ctx, c, []string{key}, val).Int()
	if err == nil && n != 1 {
		err = errors.New("raw: compare-and-delete found no key")
	}
	return err
}

func rkey(contender string, i int) string { return fmt.Sprintf("%s:%s:%d", runID, contender, i) }

func tick(contender string, i int) locking.Key {
	return locking.Key{Scope: contender, Name: strconv.Itoa(i)}
}

var errLost = errors.New("lost an uncontended lock")

// redisLockUnlock is the lock + unlock of each Redis contender.
func redisLockUnlock() []lockContender {
	ctx := context.Background()
	locker := func(b *testing.B) (*locking.Locker, *counter) {
		c, n := redisClient(b)
		return redisLocker(b, c), n
	}
	return []lockContender{
		{"raw", func(b *testing.B) (*counter, func(int) error) {
			c, n := redisClient(b)
			return n, func(i int) error {
				k := rkey("lu-raw", i)
				val, ok, err := rawLock(ctx, c, k)
				if err != nil || !ok {
					return errors.Join(err, errLost)
				}
				return rawRelease(ctx, c, k, val)
			}
		}},
		{"oncecron-complete", oncecronLockUnlock(true, locker)},
		{"oncecron-release", oncecronLockUnlock(false, locker)},
		{"redsync", func(b *testing.B) (*counter, func(int) error) {
			c, n := redisClient(b)
			rs := redsync.New(redsyncgoredis.NewPool(c))
			return n, func(i int) error {
				m := rs.NewMutex(rkey("lu-redsync", i), redsync.WithExpiry(ttl), redsync.WithTries(1))
				if err := m.LockContext(ctx); err != nil {
					return err
				}
				ok, err := m.UnlockContext(ctx)
				if err == nil && !ok {
					err = errors.New("redsync: unlock failed")
				}
				return err
			}
		}},
		{"bsm-redislock", func(b *testing.B) (*counter, func(int) error) {
			c, n := redisClient(b)
			bl := bsm.New(c)
			return n, func(i int) error {
				lock, err := bl.Obtain(ctx, rkey("lu-bsm", i), ttl, nil)
				if err != nil {
					return err
				}
				return lock.Release(ctx)
			}
		}},
	}
}

// BenchmarkRedisLockUnlock: each contender's lock + unlock of a fresh key, one
// contender after another (see BenchmarkRedisInterleaved for the ratios).
func BenchmarkRedisLockUnlock(b *testing.B) { lockUnlockEach(b, redisLockUnlock()) }

// BenchmarkRedisInterleaved: the same operations taking turns (see interleave).
func BenchmarkRedisInterleaved(b *testing.B) { interleave(b, redisLockUnlock()) }

// BenchmarkRedisRace: per round, 8 clients race for one fresh key; ns/op is the
// round including the winner's unlock (oncecron: Complete).
func BenchmarkRedisRace(b *testing.B) {
	ctx := context.Background()
	rec := locking.Record{Outcome: locking.OutcomeSucceeded}
	clients := func(b *testing.B) ([]*redis.Client, []*counter) {
		cs := make([]*redis.Client, racers)
		ns := make([]*counter, racers)
		for r := range cs {
			cs[r], ns[r] = redisClient(b)
			redisWarm(b, cs[r])
		}
		return cs, ns
	}
	b.Run("raw", func(b *testing.B) {
		cs, ns := clients(b)
		vals := make([]string, racers)
		for _, c := range cs { // load the unlock script (the server keeps it for every client)
			if err := rawUnlock.Load(ctx, c).Err(); err != nil {
				b.Fatal(err)
			}
		}
		race(b, ns, func(r, i int) (bool, error) {
			val, ok, err := rawLock(ctx, cs[r], rkey("race-raw", i))
			vals[r] = val
			return ok, err
		}, func(r, i int) error {
			return rawRelease(ctx, cs[r], rkey("race-raw", i), vals[r])
		})
	})
	b.Run("oncecron", func(b *testing.B) {
		cs, ns := clients(b)
		ls := make([]*locking.Locker, racers)
		leases := make([]*locking.Lease, racers)
		for r, c := range cs {
			ls[r] = redisLocker(b, c)
			lease, err := ls[r].Claim(ctx, tick("race-warm", fresh(1)), ttl) // loads the scripts
			if err != nil {
				b.Fatal(err)
			}
			if err := lease.Complete(ctx, rec, retention); err != nil {
				b.Fatal(err)
			}
		}
		race(b, ns, func(r, i int) (bool, error) {
			lease, err := ls[r].Claim(ctx, tick("race-oncecron", i), ttl)
			leases[r] = lease
			switch {
			case err == nil:
				return true, nil
			case errors.Is(err, locking.ErrHeld), errors.Is(err, locking.ErrDone):
				return false, nil
			}
			return false, err
		}, func(r, i int) error {
			return leases[r].Complete(ctx, rec, retention)
		})
	})
	b.Run("redsync", func(b *testing.B) {
		cs, ns := clients(b)
		rss := make([]*redsync.Redsync, racers)
		ms := make([]*redsync.Mutex, racers)
		for r, c := range cs {
			rss[r] = redsync.New(redsyncgoredis.NewPool(c))
			m := rss[r].NewMutex(rkey("race-redsync-warm", fresh(1)), redsync.WithExpiry(ttl))
			if err := m.LockContext(ctx); err != nil {
				b.Fatal(err)
			}
			if _, err := m.UnlockContext(ctx); err != nil {
				b.Fatal(err)
			}
		}
		race(b, ns, func(r, i int) (bool, error) {
			ms[r] = rss[r].NewMutex(rkey("race-redsync", i), redsync.WithExpiry(ttl))
			err := ms[r].TryLockContext(ctx)
			var taken *redsync.ErrTaken
			switch {
			case err == nil:
				return true, nil
			case errors.As(err, &taken), errors.Is(err, redsync.ErrFailed):
				return false, nil
			}
			return false, err
		}, func(r, i int) error {
			ok, err := ms[r].UnlockContext(ctx)
			if err == nil && !ok {
				err = errors.New("redsync: unlock failed")
			}
			return err
		})
	})
	b.Run("bsm-redislock", func(b *testing.B) {
		cs, ns := clients(b)
		bls := make([]*bsm.Client, racers)
		locks := make([]*bsm.Lock, racers)
		for r, c := range cs {
			bls[r] = bsm.New(c)
			lock, err := bls[r].Obtain(ctx, rkey("race-bsm-warm", fresh(1)), ttl, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := lock.Release(ctx); err != nil {
				b.Fatal(err)
			}
		}
		race(b, ns, func(r, i int) (bool, error) {
			lock, err := bls[r].Obtain(ctx, rkey("race-bsm", i), ttl, nil)
			locks[r] = lock
			switch {
			case err == nil:
				return true, nil
			case errors.Is(err, bsm.ErrNotObtained):
				return false, nil
			}
			return false, err
		}, func(r, i int) error {
			return locks[r].Release(ctx)
		})
	})
}

// BenchmarkRedisBurst: 3 replicas, each its own client, claim the same 1,000
// ticks (one key each, as 1,000 jobs due in the same second) at once. ns/op is
// the time until every tick is claimed; what was won is released afterwards,
// with the timer stopped.
//
//	raw-batch            SET NX PX for all ticks in one pipeline
//	oncecron-batch       Locker.ClaimBatch: the claim scripts in one pipeline
//	raw-one-by-one       SET NX PX per tick, one after the other
//	oncecron-one-by-one  Locker.Claim per tick
//	redsync-one-by-one   Mutex.TryLock per tick (the others have no batch API)
//	bsm-redislock-one-by-one
func BenchmarkRedisBurst(b *testing.B) {
	ctx := context.Background()
	replicaClients := func(b *testing.B) ([]*redis.Client, []*counter) {
		cs := make([]*redis.Client, replicas)
		ns := make([]*counter, replicas)
		for r := range cs {
			cs[r], ns[r] = redisClient(b)
			redisWarm(b, cs[r])
		}
		return cs, ns
	}
	// Keys that are not released expire with their ttl; fresh ones are used
	// for every burst.
	noRelease := func(int, int, []bool) error { return nil }
	b.Run("raw-batch", func(b *testing.B) {
		cs, ns := replicaClients(b)
		burst(b, ns, func(r, i int, won []bool) error {
			cmds := make([]*redis.BoolCmd, ticks)
			_, err := cs[r].Pipelined(ctx, func(p redis.Pipeliner) error {
				for t := range ticks {
					cmds[t] = p.SetNX(ctx, rkey(fmt.Sprint("burst-raw-batch-", i), t), locking.NewOwner(), ttl)
				}
				return nil
			})
			if err != nil {
				return err
			}
			for t, cmd := range cmds {
				won[t] = cmd.Val()
			}
			return nil
		}, noRelease)
	})
	oncecronBurst := func(batch bool) func(b *testing.B) {
		return func(b *testing.B) {
			cs, ns := replicaClients(b)
			ls := make([]*locking.Locker, replicas)
			leases := make([][]*locking.Lease, replicas)
			name := map[bool]string{true: "burst-batch", false: "burst-one"}[batch]
			for r, c := range cs {
				ls[r] = redisLocker(b, c)
				lease, err := ls[r].Claim(ctx, tick(name+"-warm", fresh(1)), ttl) // loads the script
				if err != nil {
					b.Fatal(err)
				}
				if err := lease.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
			burstTicks(b, ns, ls, leases, name, batch)
		}
	}
	b.Run("oncecron-batch", oncecronBurst(true))
	b.Run("raw-one-by-one", func(b *testing.B) {
		cs, ns := replicaClients(b)
		burst(b, ns, func(r, i int, won []bool) error {
			for t := range ticks {
				_, ok, err := rawLock(ctx, cs[r], rkey(fmt.Sprint("burst-raw-one-", i), t))
				if err != nil {
					return err
				}
				won[t] = ok
			}
			return nil
		}, noRelease)
	})
	b.Run("oncecron-one-by-one", oncecronBurst(false))
	b.Run("redsync-one-by-one", func(b *testing.B) {
		cs, ns := replicaClients(b)
		rss := make([]*redsync.Redsync, replicas)
		for r, c := range cs {
			rss[r] = redsync.New(redsyncgoredis.NewPool(c))
		}
		burst(b, ns, func(r, i int, won []bool) error {
			for t := range ticks {
				err := rss[r].NewMutex(rkey(fmt.Sprint("burst-redsync-", i), t), redsync.WithExpiry(ttl)).TryLockContext(ctx)
				var taken *redsync.ErrTaken
				switch {
				case err == nil:
					won[t] = true
				case errors.As(err, &taken), errors.Is(err, redsync.ErrFailed):
				default:
					return err
				}
			}
			return nil
		}, noRelease)
	})
	b.Run("bsm-redislock-one-by-one", func(b *testing.B) {
		cs, ns := replicaClients(b)
		bls := make([]*bsm.Client, replicas)
		for r, c := range cs {
			bls[r] = bsm.New(c)
			if _, err := bls[r].Obtain(ctx, rkey("burst-bsm-warm", fresh(1)), ttl, nil); err != nil { // loads the script
				b.Fatal(err)
			}
		}
		burst(b, ns, func(r, i int, won []bool) error {
			for t := range ticks {
				_, err := bls[r].Obtain(ctx, rkey(fmt.Sprint("burst-bsm-", i), t), ttl, nil)
				switch {
				case err == nil:
					won[t] = true
				case errors.Is(err, bsm.ErrNotObtained):
				default:
					return err
				}
			}
			return nil
		}, noRelease)
	})
}

// burstTicks is the oncecron side of a burst on any backend: with batch, each
// replica calls Locker.ClaimBatch for all ticks (one pipeline on Redis, up to
// 64 concurrent claims elsewhere); without, Locker.Claim per tick in order.
// Leases won are released (64 at a time) with the timer stopped.
func burstTicks(b *testing.B, ns []*counter, ls []*locking.Locker, leases [][]*locking.Lease, name string, batch bool) {
	b.Helper()
	ctx := context.Background()
	keys := func(i int) []locking.Key {
		ks := make([]locking.Key, ticks)
		for t := range ks {
			// One scope per job, as 1,000 different jobs due at the same instant.
			ks[t] = locking.Key{Scope: fmt.Sprintf("%s-job%d", name, t), Name: strconv.Itoa(i)}
		}
		return ks
	}
	// Warm up: every replica claims and releases a set of the same scopes once
	// (ZooKeeper creates a scope's nodes on its first claim in a process).
	warm := keys(fresh(1))
	if err := parallel(len(ls), len(ls), func(r int) error {
		got, errs := ls[r].ClaimBatch(ctx, warm, ttl)
		for t, err := range errs {
			if err == nil {
				if err := got[t].Release(ctx); err != nil {
					return err
				}
			} else if !errors.Is(err, locking.ErrHeld) && !errors.Is(err, locking.ErrDone) {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	burst(b, ns, func(r, i int, won []bool) error {
		ks := keys(i)
		leases[r] = make([]*locking.Lease, ticks)
		if batch {
			got, errs := ls[r].ClaimBatch(ctx, ks, ttl)
			for t, err := range errs {
				switch {
				case err == nil:
					won[t], leases[r][t] = true, got[t]
				case errors.Is(err, locking.ErrHeld), errors.Is(err, locking.ErrDone):
				default:
					return err
				}
			}
			return nil
		}
		for t, k := range ks {
			lease, err := ls[r].Claim(ctx, k, ttl)
			switch {
			case err == nil:
				won[t], leases[r][t] = true, lease
			case errors.Is(err, locking.ErrHeld), errors.Is(err, locking.ErrDone):
			default:
				return err
			}
		}
		return nil
	}, func(r, i int, won []bool) error {
		return parallel(ticks, 64, func(t int) error {
			if l := leases[r][t]; l != nil {
				return l.Release(ctx)
			}
			return nil
		})
	})
}
