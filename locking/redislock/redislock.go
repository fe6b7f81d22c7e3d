// Package redislock is the Redis lock backend.
//
// Every operation is one round trip: a Lua script, loaded once and run by SHA,
// that checks and changes the keys of one fence scope atomically. The keys of a
// scope share a Redis Cluster hash slot ({scope} is their hash tag):
//
//	<ns>:{<scope>}:l:<name>   the lock: "<owner>:<token>", with PX = TTL
//	<ns>:{<scope>}:d:<name>   the done marker: "<owner>", with PX = retention
//	<ns>:{<scope>}:f          the fence counter: INCR gives each claim its token
//	<ns>:{<scope>}:h          the history: a list of JSON records, newest first
//
// Batches of claims (ClaimBatch) and of completions and releases
// (FinishBatch) go in one pipeline each, so a thousand ticks that fire or end
// together cost a few round trips, not a thousand.
//
// Claim checks the done marker, SET NX PX the lock and INCR the fence in one
// script; a claim that finds the key held also reads how long the holder's
// lease has left, for Wait. Renew, Complete and Release compare the owner id
// first and never re-create a missing key; Complete and Release PUBLISH on
// <ns>:ended that they freed it, so that waiters wake without asking (see
// Wait). Every script is safe to repeat with the same owner, so a retry after a
// lost reply cannot take, extend or free someone else's key; the client built
// by Dial also turns go-redis's own retries off, so that the watchdog, which
// knows the lease's deadline, decides when to retry.
//
// # What the guarantee rests on
//
// Fencing tokens rise strictly only if the fence counter survives whatever the
// server goes through. A single Redis server with AOF and appendfsync always
// keeps it across restarts and crashes. With appendfsync everysec a crash can
// lose up to a second of writes, and with replication a failover to a replica
// that had not received the last INCRs can hand out a token again, and a lock
// held on the old primary can be granted anew on the new one. Redis cannot
// promise more than that; for payment-grade exclusion through failover use the
// etcd or ZooKeeper backend, whose tokens come from a consensus log.
package redislock

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/oncecron/oncecron/locking"
)

// DefaultMaxRecords is how many records a scope's history keeps by default.
const DefaultMaxRecords = 1000

// Options configures a Backend.
type Options struct {
	// Namespace prefixes every key, so deployments can share a server
	// (default "oncecron").
	Namespace string
	// MaxRecords bounds each scope's history (default DefaultMaxRecords).
	MaxRecords int
	// Logger receives what the backend has to say on its own, outside any
	// operation's error: that waiters cannot subscribe to <ns>:ended (the
	// Redis user lacks the channel's permission). Default: no logging.
	Logger *zap.Logger
}

// Backend is the Redis lock backend. It is safe for concurrent use.
type Backend struct {
	c          redis.UniversalClient
	ns         string
	maxRecords int
	owned      bool // Close closes c
	log        *zap.Logger
	ended      string  // the channel of Complete's and Release's messages to waiters
	w          watcher // waiters and their subscription (wait.go)
}

// New returns a backend on an existing client (standalone, Sentinel or Cluster).
// The caller keeps ownership of c. go-redis retries commands after network errors
// by default; every script here is safe to repeat, but Dial's client turns those
// retries off, which lets the lease watchdog bound them by the lease's deadline.
func New(c redis.UniversalClient, opts Options) (*Backend, error) {
	if c == nil {
		return nil, fmt.Errorf("redislock: %w: nil client", locking.ErrInvalid)
	}
	if opts.Namespace == "" {
		opts.Namespace = "oncecron"
	}
	if err := locking.ValidateNamespace(opts.Namespace); err != nil {
		return nil, fmt.Errorf("redislock: %w", err)
	}
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = DefaultMaxRecords
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &Backend{c: c, ns: opts.Namespace, maxRecords: opts.MaxRecords, ended: opts.Namespace + ":ended", log: opts.Logger}, nil
}

// Config says how Dial reaches Redis.
type Config struct {
	// Addrs is one address for a standalone server, several for Cluster, or the
	// Sentinels' addresses with MasterName. "redis://" prefixes are accepted;
	// "rediss://" turns TLS on (with the system roots when TLS is nil).
	Addrs []string
	// MasterName selects Sentinel mode.
	MasterName string
	// Username and Password authenticate (Redis 6 ACL, or requirepass with an
	// empty Username).
	Username, Password string
	// DB selects a database (standalone and Sentinel only).
	DB int
	// TLS, if set, encrypts the connection.
	TLS *tls.Config
	// DialTimeout bounds connecting (default 5s).
	DialTimeout time.Duration
	// Options configures the backend.
	Options Options
}

// Dial returns a backend on a new client for cfg, with go-redis's command retries
// turned off. It does not contact the server; the first operation does.
func Dial(cfg Config) (*Backend, error) {
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("redislock: %w: no address", locking.ErrInvalid)
	}
	addrs := make([]string, len(cfg.Addrs))
	for i, a := range cfg.Addrs {
		if rest, ok := strings.CutPrefix(a, "rediss://"); ok {
			a = rest
			if cfg.TLS == nil {
				cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
			}
		}
		a = strings.TrimPrefix(a, "redis://")
		if a == "" {
			return nil, fmt.Errorf("redislock: %w: empty address", locking.ErrInvalid)
		}
		addrs[i] = a
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: addrs, MasterName: cfg.MasterName,
		Username: cfg.Username, Password: cfg.Password, DB: cfg.DB,
		TLSConfig: cfg.TLS, DialTimeout: cfg.DialTimeout,
		MaxRetries: -1, // scripts are idempotent, but the watchdog owns retry timing
		// Commands carry the caller's deadline; no separate socket timeouts that
		// would cut a request the lease still has time for.
		ContextTimeoutEnabled: true,
	})
	b, err := New(c, cfg.Options)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	b.owned = true
	return b, nil
}

// Client returns the underlying client.
func (b *Backend) Client() redis.UniversalClient { return b.c }

// Each key is built in one concatenation, and only the keys an operation
// uses: a claim of a thousand ticks builds three thousand.
func (b *Backend) lockKey(key locking.Key) string  { return b.ns + ":{" + key.Scope + "}:l:" + key.Name }
func (b *Backend) doneKey(key locking.Key) string  { return b.ns + ":{" + key.Scope + "}:d:" + key.Name }
func (b *Backend) fenceKey(key locking.Key) string { return b.ns + ":{" + key.Scope + "}:f" }
func (b *Backend) histKey(scope string) string     { return b.ns + ":{" + scope + "}:h" }

// The owner id is followed by ":" in the lock's value; every script compares it
// as a prefix, so an owner id never matches a longer one.
var (
	// claimScript returns the token (> 0) of a won claim, {-1, ms} if another
	// owner holds the key for ms more milliseconds (unless renewed), -2 if it
	// is done. A held key is never done (completion deletes the lock as it
	// writes the done marker), so the lock is read first: a losing racer costs
	// two reads, and its Wait knows when the holder's lease could expire.
	claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  local p = ARGV[1] .. ':'
  if string.sub(v, 1, #p) == p then return tonumber(string.sub(v, #p + 1)) end
  return {-1, redis.call('PTTL', KEYS[1])}
end
if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
local t = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. t, 'PX', ARGV[2])
return t
`)
	renewScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
local p = ARGV[1] .. ':'
if v and string.sub(v, 1, #p) == p then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)
	// completeScript: a held lock is never done, so the done marker is read
	// only when the lock is not ours (a repeated completion succeeds), and the
	// history is trimmed only once it is longer than its bound. It tells the
	// waiters (ARGV[5] is the channel, see wait.go) only when it frees the
	// lock, with pcall: a user not allowed to publish still completes.
	completeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
local p = ARGV[1] .. ':'
if not v or string.sub(v, 1, #p) ~= p then
  if redis.call('GET', KEYS[2]) == ARGV[1] then return 1 end
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
if redis.call('LPUSH', KEYS[3], ARGV[3]) > tonumber(ARGV[4]) then
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
end
redis.pcall('PUBLISH', ARGV[5], 'd' .. KEYS[1])
return 1
`)
	releaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
local p = ARGV[1] .. ':'
if v and string.sub(v, 1, #p) == p then
  redis.call('DEL', KEYS[1])
  redis.pcall('PUBLISH', ARGV[2], 'r' .. KEYS[1])
  return 1
end
return 0
`)
	addRecordScript = redis.NewScript(`
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return 1
`)
)

// Claim implements locking.Backend.
func (b *Backend) Claim(ctx context.Context, key locking.Key, owner string, ttl time.Duration) (locking.Grant, error) {
	sent := time.Now()
	return b.claimReply(ctx, key, owner, ttl, sent, claimScript.Run(ctx, b.c, []string{b.lockKey(key), b.doneKey(key), b.fenceKey(key)}, owner, ttl.Milliseconds()))
}

// ClaimBatch implements locking.BatchClaimer: all the claims go in one pipeline,
// one round trip per node, however many there are.
func (b *Backend) ClaimBatch(ctx context.Context, reqs []locking.ClaimRequest) []locking.ClaimResult {
	send := func(idx []int) []*redis.Cmd {
		pipe := b.c.Pipeline()
		cmds := make([]*redis.Cmd, len(idx))
		for n, i := range idx {
			r := reqs[i]
			cmds[n] = claimScript.EvalSha(ctx, pipe, []string{b.lockKey(r.Key), b.doneKey(r.Key), b.fenceKey(r.Key)}, r.Owner, r.TTL.Milliseconds())
		}
		_, _ = pipe.Exec(ctx) // each command carries its own error
		return cmds
	}
	all := make([]int, len(reqs))
	for i := range all {
		all[i] = i
	}
	sent := time.Now()
	cmds := send(all)
	var again []int
	for i, c := range cmds {
		if err := c.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		if err := claimScript.Load(ctx, b.c).Err(); err == nil {
			for n, c := range send(again) {
				cmds[again[n]] = c
			}
		}
	}
	out := make([]locking.ClaimResult, len(reqs))
	for i, r := range reqs {
		out[i].Grant, out[i].Err = b.claimReply(ctx, r.Key, r.Owner, r.TTL, sent, cmds[i])
	}
	return out
}

// claimReply interprets the reply of the claim script sent at sent.
func (b *Backend) claimReply(ctx context.Context, key locking.Key, owner string, ttl time.Duration, sent time.Time, cmd *redis.Cmd) (locking.Grant, error) {
	if held, ok := cmd.Val().([]any); ok && cmd.Err() == nil && len(held) == 2 {
		if res, ok := held[0].(int64); ok && res == -1 {
			pttl, _ := held[1].(int64)
			b.noteHeld(key, sent, pttl)
			return locking.Grant{}, fmt.Errorf("redislock: claim %s: %w", key, locking.ErrHeld)
		}
	}
	res, err := cmd.Int64()
	if err != nil {
		return locking.Grant{}, b.fail(ctx, "claim", key, err)
	}
	switch {
	case res > 0:
		return locking.Grant{Key: key, Owner: owner, Token: uint64(res), TTL: ttl}, nil
	case res == -2:
		return locking.Grant{}, fmt.Errorf("redislock: claim %s: %w", key, locking.ErrDone)
	default:
		return locking.Grant{}, fmt.Errorf("redislock: claim %s: %w: unexpected reply %d", key, locking.ErrUnavailable, res)
	}
}

// Renew implements locking.Backend.
func (b *Backend) Renew(ctx context.Context, g locking.Grant, ttl time.Duration) (locking.Grant, error) {
	ok, err := renewScript.Run(ctx, b.c, []string{b.lockKey(g.Key)}, g.Owner, ttl.Milliseconds()).Int()
	if err != nil {
		return locking.Grant{}, b.fail(ctx, "renew", g.Key, err)
	}
	if ok != 1 {
		return locking.Grant{}, fmt.Errorf("redislock: renew %s: %w", g.Key, locking.ErrNotHeld)
	}
	g.TTL, g.Since = ttl, time.Time{}
	return g, nil
}

// Complete implements locking.Backend.
func (b *Backend) Complete(ctx context.Context, g locking.Grant, rec locking.Record, retention time.Duration) error {
	data, err := json.Marshal(rec.Normalize())
	if err != nil {
		return fmt.Errorf("redislock: complete %s: %w: %v", g.Key, locking.ErrInvalid, err)
	}
	keys := []string{b.lockKey(g.Key), b.doneKey(g.Key), b.histKey(g.Key.Scope)}
	return b.finishReply(ctx, "complete", g.Key, completeScript.Run(ctx, b.c, keys, g.Owner, retention.Milliseconds(), data, b.maxRecords, b.ended))
}

// finishReply interprets the reply of the complete or release script.
func (b *Backend) finishReply(ctx context.Context, op string, key locking.Key, cmd *redis.Cmd) error {
	ok, err := cmd.Int()
	if err != nil {
		return b.fail(ctx, op, key, err)
	}
	if ok != 1 {
		return fmt.Errorf("redislock: %s %s: %w", op, key, locking.ErrNotHeld)
	}
	return nil
}

// FinishBatch implements locking.BatchFinisher: the completions and releases
// go in one pipeline.
func (b *Backend) FinishBatch(ctx context.Context, reqs []locking.FinishRequest) []error {
	errs := make([]error, len(reqs))
	if len(reqs) == 1 {
		r := reqs[0]
		if r.Record != nil {
			errs[0] = b.Complete(ctx, r.Grant, *r.Record, r.Retention)
		} else {
			errs[0] = b.Release(ctx, r.Grant)
		}
		return errs
	}
	data := make([][]byte, len(reqs))
	var idx []int
	for i, r := range reqs {
		if r.Record == nil {
			idx = append(idx, i)
			continue
		}
		d, err := json.Marshal(r.Record.Normalize())
		if err != nil {
			errs[i] = fmt.Errorf("redislock: complete %s: %w: %v", r.Grant.Key, locking.ErrInvalid, err)
			continue
		}
		data[i] = d
		idx = append(idx, i)
	}
	send := func(idx []int) []*redis.Cmd {
		pipe := b.c.Pipeline()
		cmds := make([]*redis.Cmd, len(idx))
		for n, i := range idx {
			r := reqs[i]
			if r.Record != nil {
				cmds[n] = completeScript.EvalSha(ctx, pipe, []string{b.lockKey(r.Grant.Key), b.doneKey(r.Grant.Key), b.histKey(r.Grant.Key.Scope)},
					r.Grant.Owner, r.Retention.Milliseconds(), data[i], b.maxRecords, b.ended)
			} else {
				cmds[n] = releaseScript.EvalSha(ctx, pipe, []string{b.lockKey(r.Grant.Key)}, r.Grant.Owner, b.ended)
			}
		}
		_, _ = pipe.Exec(ctx) // each command carries its own error
		return cmds
	}
	cmds := send(idx)
	var again []int // positions in idx
	for n, c := range cmds {
		if err := c.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			again = append(again, n)
		}
	}
	if len(again) > 0 {
		if completeScript.Load(ctx, b.c).Err() == nil && releaseScript.Load(ctx, b.c).Err() == nil {
			retry := make([]int, len(again))
			for k, n := range again {
				retry[k] = idx[n]
			}
			for k, c := range send(retry) {
				cmds[again[k]] = c
			}
		}
	}
	for n, i := range idx {
		op := "complete"
		if reqs[i].Record == nil {
			op = "release"
		}
		errs[i] = b.finishReply(ctx, op, reqs[i].Grant.Key, cmds[n])
	}
	return errs
}

// Release implements locking.Backend.
func (b *Backend) Release(ctx context.Context, g locking.Grant) error {
	return b.finishReply(ctx, "release", g.Key, releaseScript.Run(ctx, b.c, []string{b.lockKey(g.Key)}, g.Owner, b.ended))
}

// AddRecord implements locking.Backend.
func (b *Backend) AddRecord(ctx context.Context, rec locking.Record) error {
	data, err := json.Marshal(rec.Normalize())
	if err != nil {
		return fmt.Errorf("redislock: add record %s: %w: %v", rec.Key, locking.ErrInvalid, err)
	}
	if err := addRecordScript.Run(ctx, b.c, []string{b.histKey(rec.Key.Scope)}, data, b.maxRecords).Err(); err != nil {
		return b.fail(ctx, "add record", rec.Key, err)
	}
	return nil
}

// Records implements locking.Backend: the newest min(limit, MaxRecords) (a
// history written under a larger MaxRecords may hold more until its next write).
func (b *Backend) Records(ctx context.Context, scope string, limit int) ([]locking.Record, error) {
	raw, err := b.c.LRange(ctx, b.histKey(scope), 0, int64(min(limit, b.maxRecords))-1).Result()
	if err != nil {
		return nil, b.fail(ctx, "records", locking.Key{Scope: scope}, err)
	}
	out := make([]locking.Record, 0, len(raw))
	for _, s := range raw {
		var r locking.Record
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			return nil, fmt.Errorf("redislock: records of %q: corrupt record %.80q: %w", scope, s, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Close implements locking.Backend: it ends the subscription of Wait, wakes
// the waiters with ErrClosed, and closes the client if Dial made it.
func (b *Backend) Close() error {
	b.closeWaits()
	if b.owned {
		return b.c.Close()
	}
	return nil
}

// fail wraps a Redis or network error: everything that is not the caller's own
// context ending means the backend could not be used, and the outcome of the
// operation may be unknown.
func (b *Backend) fail(ctx context.Context, op string, key locking.Key, err error) error {
	if errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("redislock: %s %s: %w", op, key, locking.ErrClosed)
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = errors.Join(err, cerr)
	}
	return fmt.Errorf("redislock: %s %s: %w: %w", op, key, locking.ErrUnavailable, err)
}

// ServerTime implements locking.ServerClock with the TIME command.
func (b *Backend) ServerTime(ctx context.Context) (time.Time, error) {
	t, err := b.c.Time(ctx).Result()
	if err != nil {
		return time.Time{}, b.fail(ctx, "time", locking.Key{}, err)
	}
	return t, nil
}

var (
	_ locking.Backend       = (*Backend)(nil)
	_ locking.BatchClaimer  = (*Backend)(nil)
	_ locking.BatchFinisher = (*Backend)(nil)
	_ locking.ServerClock   = (*Backend)(nil)
	_ locking.Waiter        = (*Backend)(nil)
)

// CheckFencing implements locking.FencingChecker: tokens and done markers
// survive everything only on one primary with no replicas (no failover that
// could lose acknowledged writes), appendonly yes and appendfsync always.
// Sentinel and Cluster clients are refused outright, since they exist to fail
// over.
func (b *Backend) CheckFencing(ctx context.Context) error {
	switch b.c.(type) {
	case *redis.ClusterClient:
		return fmt.Errorf("redislock: %w: Redis Cluster fails over asynchronously replicated primaries", locking.ErrUnsafe)
	case *redis.Client:
	default:
		return fmt.Errorf("redislock: %w: a Sentinel or ring client fails over asynchronously replicated primaries", locking.ErrUnsafe)
	}
	if opt := b.c.(*redis.Client).Options(); opt.Addr == "FailoverClient" { // go-redis's name for Sentinel clients
		return fmt.Errorf("redislock: %w: a Sentinel client fails over asynchronously replicated primaries", locking.ErrUnsafe)
	}
	info, err := b.c.Info(ctx, "persistence", "replication").Result()
	if err != nil {
		return b.fail(ctx, "check fencing", locking.Key{}, err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	switch {
	case fields["aof_enabled"] != "1":
		return fmt.Errorf("redislock: %w: appendonly is off, so a restart loses fence counters and done markers", locking.ErrUnsafe)
	case fields["role"] != "master":
		return fmt.Errorf("redislock: %w: the server is a replica (role %s)", locking.ErrUnsafe, fields["role"])
	case fields["connected_slaves"] != "0":
		return fmt.Errorf("redislock: %w: the primary has %s replicas, and a failover to one can lose acknowledged tokens", locking.ErrUnsafe, fields["connected_slaves"])
	}
	fsync, err := b.c.ConfigGet(ctx, "appendfsync").Result()
	if err != nil {
		return fmt.Errorf("redislock: %w: cannot read appendfsync (CONFIG GET refused: %v); it must be always", locking.ErrUnsafe, err)
	}
	if v := fsync["appendfsync"]; v != "always" {
		return fmt.Errorf("redislock: %w: appendfsync is %q, so a crash can lose the last second of tokens; it must be always", locking.ErrUnsafe, v)
	}
	return nil
}
