package config

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/oncecron/oncecron/schedule"
)

// Defaults applied by Load and Parse to keys that are absent.
const (
	DefaultTTL                     = 10 * time.Second
	DefaultNamespace               = "oncecron"
	DefaultMargin                  = 500 * time.Millisecond
	DefaultRetention               = 48 * time.Hour
	DefaultShutdownTimeout         = 30 * time.Second
	DefaultRetryBackoff            = time.Second
	DefaultEtcdDialTimeout         = 5 * time.Second
	DefaultZookeeperSessionTimeout = 10 * time.Second
	// MinDefaultStartingDeadline is the floor of a job's default
	// starting_deadline, which is max(2 × lock.ttl, 10s).
	MinDefaultStartingDeadline = 10 * time.Second
	// MinTTL is the shortest lock.ttl accepted.
	MinTTL = time.Second
	// DefaultMaxClockOffset is the default of lock.max_clock_offset.
	DefaultMaxClockOffset = time.Second
)

// Config is a validated cron table: the decoded contents of jobs.yaml with
// defaults applied and every schedule parsed.
type Config struct {
	// File is the name the table was loaded from.
	File    string
	Backend Backend
	Lock    Lock
	// Replica names this process in locks and logs (key "replica";
	// default: hostname-pid; the --replica flag overrides it).
	Replica string
	// ShutdownTimeout bounds how long a stopping replica waits for running
	// jobs (key "shutdown_timeout"; default 30s).
	ShutdownTimeout time.Duration
	Admin           Admin
	// Jobs are in file order.
	Jobs []Job
}

// BackendType names a lock backend (key "backend.type").
type BackendType string

// The lock backends.
const (
	BackendMemory    BackendType = "memory" // in-process: a single replica, for development
	BackendRedis     BackendType = "redis"
	BackendEtcd      BackendType = "etcd"
	BackendZookeeper BackendType = "zookeeper"
)

// Backend is the "backend" section. Only the section named by Type is
// validated and meaningful.
type Backend struct {
	Type      BackendType // required
	Redis     Redis
	Etcd      Etcd
	Zookeeper Zookeeper
}

// TLS is a client TLS setting (key "tls" of a backend). Its presence, even
// empty ("tls: {}"), enables TLS; an empty CAFile means the system roots.
type TLS struct {
	CAFile             string // "ca_file"
	CertFile           string // "cert_file", client certificate; needs KeyFile
	KeyFile            string // "key_file"
	ServerName         string // "server_name", overrides the name checked
	InsecureSkipVerify bool   // "insecure_skip_verify"; for tests only
}

// Redis is the "backend.redis" section. Exactly one of Addr (a single
// server) and Addrs (a Redis Cluster, or Sentinels when MasterName is set)
// is required.
type Redis struct {
	Addr       string   // "addr", host:port
	Addrs      []string // "addrs"
	MasterName string   // "master_name", Sentinel mode; needs Addrs
	Username   string   // "username"
	Password   string   // "password"; use ${VAR} to keep it out of the file
	DB         int      // "db"; default 0; must be 0 for a Cluster
	TLS        *TLS     // "tls"; nil: plain TCP
}

// Etcd is the "backend.etcd" section.
type Etcd struct {
	Endpoints   []string      // "endpoints", required
	Username    string        // "username"
	Password    string        // "password"
	DialTimeout time.Duration // "dial_timeout"; default 5s
	TLS         *TLS          // "tls"; nil: plain TCP
}

// Zookeeper is the "backend.zookeeper" section.
type Zookeeper struct {
	Servers        []string      // "servers", required
	SessionTimeout time.Duration // "session_timeout"; default 10s
	Username       string        // "username", digest auth; needs Password
	Password       string        // "password"
}

// Lock is the "lock" section.
type Lock struct {
	// TTL is the lease of a tick's lock; the holder renews it every TTL/3
	// (key "ttl"; default 10s; at least 1s).
	TTL time.Duration
	// Namespace prefixes every key, so deployments can share a backend
	// (key "namespace"; default "oncecron"; [A-Za-z0-9._-], at most 64).
	Namespace string
	// Margin is subtracted from the lease when deciding whether it is still
	// held, to absorb clock drift and latency (key "margin"; default 500ms;
	// less than TTL/3).
	Margin time.Duration
	// Retention is how long a tick's done marker is kept (key "retention";
	// default 48h; at least every job's StartingDeadline).
	Retention time.Duration
	// MaxClockOffset is how far a replica's clock may be from the backend's
	// (Redis TIME, ZooKeeper node times) before it stops claiming critical
	// jobs and warns (key "max_clock_offset"; default 1s; 0 turns the check off).
	MaxClockOffset time.Duration
}

// Admin is the "admin" section.
type Admin struct {
	// Listen is the host:port of the admin HTTP endpoint (key "listen");
	// empty, the default, disables it.
	Listen string
}

// Misfire says which ticks run when several were missed, e.g. while no
// replica was up (key "misfire").
type Misfire string

// Misfire policies.
const (
	MisfireRunLatest Misfire = "run_latest" // run the most recent missed tick only (default)
	MisfireRunAll    Misfire = "run_all"    // run every missed tick, oldest first
	MisfireSkip      Misfire = "skip"       // run none; wait for the next tick
)

// HolderLoss says what a replica does when it loses the lock of a running
// tick (key "on_holder_loss").
type HolderLoss string

// Holder-loss policies.
const (
	HolderLossRetry   HolderLoss = "retry"   // let another replica take the tick over (default)
	HolderLossAbandon HolderLoss = "abandon" // mark the tick done; nobody runs it again
)

// Overlap says whether a tick may start while the job's previous tick is
// still running (key "overlap").
type Overlap string

// Overlap policies.
const (
	OverlapSkip        Overlap = "skip"         // skip the new tick (default)
	OverlapAllow       Overlap = "allow"        // run both
	OverlapBufferOne   Overlap = "buffer_one"   // run it when the earlier run ends; at most one waits
	OverlapCancelOther Overlap = "cancel_other" // cancel the earlier run, then run this one
)

// Job is one entry of "jobs". Exactly one of Func and Command is set.
type Job struct {
	Name string // "name", unique; [A-Za-z0-9._-], at most 128
	// Spec is the schedule text (key "schedule"): 5 or 6 cron fields or a
	// descriptor; see package schedule.
	Spec string
	// Schedule is Spec parsed with Location, DST and Anchor.
	Schedule schedule.Schedule
	// Timezone is the IANA zone name as written (key "timezone"; default
	// "UTC"), and Location the loaded zone. A CRON_TZ= prefix in the spec
	// takes precedence.
	Timezone string
	Location *time.Location
	DST      schedule.DSTPolicy // "dst": adjust (default), skip or both
	// Anchor aligns an @every schedule (key "anchor", RFC 3339); zero:
	// the Unix epoch.
	Anchor time.Time

	// Func names a registered Go function (key "func"); Args is its
	// argument (key "args"), with ${VAR} expanded and aliases resolved,
	// for the plugin to decode; nil when absent.
	Func string
	Args *yaml.Node
	// Command is a program and its arguments, run without a shell (key
	// "command"), with Env added to its environment (key "env") in
	// directory Dir (key "dir").
	Command []string
	Env     map[string]string
	Dir     string

	Timeout      time.Duration // "timeout"; 0, the default, means none
	Retries      int           // "retries"; default 0
	RetryBackoff time.Duration // "retry_backoff", first retry delay, doubling; default 1s
	// StartingDeadline is how late after its instant a tick may still
	// start, e.g. when taken over from a dead replica (key
	// "starting_deadline"; default max(2 × lock.ttl, 10s), and on ZooKeeper
	// at least 2 × session_timeout + lock.ttl, since a dead runner's claim
	// lives as long as its session).
	StartingDeadline time.Duration
	Misfire          Misfire    // "misfire"; default run_latest
	OnHolderLoss     HolderLoss // "on_holder_loss"; default retry
	Overlap          Overlap    // "overlap"; default skip
	// Jitter delays each tick's start by a deterministic amount below it,
	// the same on every replica, so that many jobs sharing an instant do not
	// hit the backend in the same millisecond (key "jitter"; default 0).
	Jitter   time.Duration
	Critical bool // "critical": failures are alerts
	Disabled bool // "disabled": keep in the table, never run

	// Line is where the job starts in the file.
	Line int
}

// FuncChecker validates the plugin function of a job with "func:", so that
// Load can report unknown functions and bad arguments with their lines
// without this package importing a plugin registry. CheckFunc returns an
// error wrapping ErrUnknownFunc for an unknown name, or any other error
// for arguments its function cannot take; args is nil when the job has no
// "args".
type FuncChecker interface {
	CheckFunc(name string, args *yaml.Node) error
}

// Option customizes Load and Parse.
type Option func(*options)

type options struct {
	lookupEnv   func(string) (string, bool)
	funcChecker FuncChecker
	hostname    func() (string, error)
}

// WithLookupEnv replaces os.LookupEnv as the source of ${VAR} values.
func WithLookupEnv(lookup func(string) (string, bool)) Option {
	return func(o *options) { o.lookupEnv = lookup }
}

// WithFuncChecker makes Load and Parse check every job's func and args.
// Without it any function name is accepted.
func WithFuncChecker(c FuncChecker) Option {
	return func(o *options) { o.funcChecker = c }
}

// WithHostname replaces os.Hostname as the source of the default replica name.
func WithHostname(hostname func() (string, error)) Option {
	return func(o *options) { o.hostname = hostname }
}
