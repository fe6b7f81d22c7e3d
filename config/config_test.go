package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // hermetic zone data for the tests

	"gopkg.in/yaml.v3"

	"github.com/oncecron/oncecron/schedule"
)

// env is the environment seen by the tests.
func env(name string) (string, bool) {
	v, ok := map[string]string{
		"REDIS_PASSWORD": "s3cret",
		"EMPTY":          "",
		"PORT":           "8080",
		"TTL":            "15s",
	}[name]
	return v, ok
}

func hostname() (string, error) { return "host-1", nil }

func parse(t *testing.T, src string, opts ...Option) (*Config, error) {
	t.Helper()
	opts = append([]Option{WithLookupEnv(env), WithHostname(hostname)}, opts...)
	return Parse("t.yaml", []byte(src), opts...)
}

func mustParse(t *testing.T, src string, opts ...Option) *Config {
	t.Helper()
	c, err := parse(t, src, opts...)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

// errorLines returns the lines of err's message.
func errorLines(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T is not a *config.Error: %v", err, err)
	}
	return strings.Split(err.Error(), "\n")
}

func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

func TestLoadDefaultTable(t *testing.T) {
	c, err := Load("jobs.yaml", WithHostname(hostname))
	if err != nil {
		t.Fatal(err)
	}
	if c.File != "jobs.yaml" || c.Backend.Type != BackendMemory || c.Lock.TTL != 10*time.Second {
		t.Errorf("unexpected table: %+v", c)
	}
	if len(c.Jobs) != 2 {
		t.Fatalf("got %d jobs, want 2", len(c.Jobs))
	}
	demo, hello := c.Jobs[0], c.Jobs[1]
	wantCmd := []string{"/bin/sh", "-c", `echo "tick $ONCECRON_JOB at $ONCECRON_FIRE_TIME token $ONCECRON_TOKEN on $ONCECRON_REPLICA"`}
	if demo.Name != "demo" || !slices.Equal(demo.Command, wantCmd) || demo.Spec != "@every 5s" {
		t.Errorf("demo job = %+v", demo)
	}
	if hello.Name != "hello" || hello.Func != "example.hello" || hello.Spec != "@every 3s" {
		t.Errorf("hello job = %+v", hello)
	}
	var args struct{ Greeting string }
	if err := hello.Args.Decode(&args); err != nil || args.Greeting != "hello" {
		t.Errorf("hello args = %+v, %v", args, err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	if got := demo.Schedule.Next(at); !got.Equal(at.Add(4 * time.Second)) {
		t.Errorf("demo fires at %v", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, lines(
		"backend: {type: memory}",
		"jobs:",
		"  - name: a",
		"    schedule: '@hourly'",
		"    command: [true]",
	))
	want := Config{
		File:            "t.yaml",
		Backend:         Backend{Type: BackendMemory, Etcd: Etcd{DialTimeout: DefaultEtcdDialTimeout}, Zookeeper: Zookeeper{SessionTimeout: DefaultZookeeperSessionTimeout}},
		Lock:            Lock{TTL: 10 * time.Second, Namespace: "oncecron", Margin: 500 * time.Millisecond, Retention: 48 * time.Hour, MaxClockOffset: time.Second},
		Replica:         "host-1",
		ShutdownTimeout: 30 * time.Second,
	}
	got := *c
	got.Jobs = nil
	if !equalConfig(got, want) {
		t.Errorf("config = %+v\nwant %+v", got, want)
	}
	j := c.Jobs[0]
	if j.Timezone != "UTC" || j.Location != time.UTC || j.DST != schedule.DSTAdjust || !j.Anchor.IsZero() ||
		j.Timeout != 0 || j.Retries != 0 || j.RetryBackoff != time.Second || j.StartingDeadline != 20*time.Second ||
		j.Misfire != MisfireRunLatest || j.OnHolderLoss != HolderLossRetry || j.Overlap != OverlapSkip ||
		j.Critical || j.Disabled || j.Args != nil || j.Env != nil || j.Dir != "" || j.Line != 3 {
		t.Errorf("job defaults = %+v", j)
	}
}

func equalConfig(a, b Config) bool {
	return a.File == b.File && a.Backend.Type == b.Backend.Type && a.Lock == b.Lock &&
		a.Replica == b.Replica && a.ShutdownTimeout == b.ShutdownTimeout && a.Admin == b.Admin &&
		a.Backend.Etcd.DialTimeout == b.Backend.Etcd.DialTimeout &&
		a.Backend.Zookeeper.SessionTimeout == b.Backend.Zookeeper.SessionTimeout
}

func TestStartingDeadlineDefault(t *testing.T) {
	for _, tt := range []struct {
		ttl  string
		want time.Duration
	}{{"1s", 10 * time.Second}, {"5s", 10 * time.Second}, {"10s", 20 * time.Second}, {"1m", 2 * time.Minute}} {
		c := mustParse(t, lines(
			"backend: {type: memory}",
			"lock: {ttl: "+tt.ttl+", margin: 100ms}",
			"jobs: [{name: a, schedule: '@daily', func: f}]",
		))
		if got := c.Jobs[0].StartingDeadline; got != tt.want {
			t.Errorf("ttl %s: starting_deadline = %s, want %s", tt.ttl, got, tt.want)
		}
	}
}

func TestFullConfig(t *testing.T) {
	c := mustParse(t, lines(
		"backend:",
		"  type: redis",
		"  redis:",
		"    addrs: ['10.0.0.1:26379', '10.0.0.2:26379']",
		"    master_name: mymaster",
		"    username: oncecron",
		"    password: ${REDIS_PASSWORD}",
		"    db: 3",
		"    tls: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem, server_name: redis.internal, insecure_skip_verify: true}",
		"lock: {ttl: '${TTL}', namespace: prod.eu-1, margin: 1s, retention: 72h}",
		"replica: worker-7",
		"shutdown_timeout: 1m",
		"admin: {listen: '127.0.0.1:9090'}",
		"jobs:",
		"  - name: reconcile-payments",
		"    schedule: '0 30 2 * * *'",
		"    timezone: Asia/Shanghai",
		"    dst: both",
		"    func: payments.reconcile",
		"    args:",
		"      currency: CNY",
		"      port: ${PORT}     # plain: resolved after expansion",
		"      quoted: '${PORT}' # quoted: stays a string",
		"      empty: ${EMPTY}   # never null",
		"      nested: [a, '$${literal}']",
		"    timeout: 1h",
		"    retries: 3",
		"    retry_backoff: 2s",
		"    starting_deadline: 1m",
		"    misfire: run_all",
		"    on_holder_loss: abandon",
		"    overlap: allow",
		"    critical: false",
		"  - name: rotate-logs",
		"    schedule: '@every 10s'",
		"    anchor: '2026-01-01T00:00:03+01:00'",
		"    command: [/usr/sbin/logrotate, /etc/logrotate.conf]",
		"    env: {LC_ALL: C, PORT: '${PORT:-1}', HOME: $$HOME}",
		"    dir: /var/log",
		"    disabled: true",
	))
	r := c.Backend.Redis
	wantTLS := TLS{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ServerName: "redis.internal", InsecureSkipVerify: true}
	if c.Backend.Type != BackendRedis || r.Addr != "" || !slices.Equal(r.Addrs, []string{"10.0.0.1:26379", "10.0.0.2:26379"}) ||
		r.MasterName != "mymaster" || r.Username != "oncecron" || r.Password != "s3cret" || r.DB != 3 ||
		r.TLS == nil || *r.TLS != wantTLS {
		t.Errorf("redis = %+v", r)
	}
	if want := (Lock{TTL: 15 * time.Second, Namespace: "prod.eu-1", Margin: time.Second, Retention: 72 * time.Hour, MaxClockOffset: time.Second}); c.Lock != want {
		t.Errorf("lock = %+v, want %+v", c.Lock, want)
	}
	if c.Replica != "worker-7" || c.ShutdownTimeout != time.Minute || c.Admin.Listen != "127.0.0.1:9090" {
		t.Errorf("top level = %+v", c)
	}
	p, l := c.Jobs[0], c.Jobs[1]
	if p.Name != "reconcile-payments" || p.Spec != "0 30 2 * * *" || p.Timezone != "Asia/Shanghai" ||
		p.Location.String() != "Asia/Shanghai" || p.DST != schedule.DSTBoth || p.Func != "payments.reconcile" ||
		p.Timeout != time.Hour || p.Retries != 3 || p.RetryBackoff != 2*time.Second || p.StartingDeadline != time.Minute ||
		p.Misfire != MisfireRunAll || p.OnHolderLoss != HolderLossAbandon || p.Overlap != OverlapAllow ||
		p.Critical || p.Disabled || p.Line != 15 {
		t.Errorf("payments job = %+v", p)
	}
	if got := p.Schedule.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); !got.Equal(time.Date(2026, 1, 1, 18, 30, 0, 0, time.UTC)) {
		t.Errorf("payments fires at %v", got)
	}
	var args struct {
		Currency string
		Port     int
		Quoted   any
		Empty    *string
		Nested   []string
	}
	if err := p.Args.Decode(&args); err != nil || args.Currency != "CNY" || args.Port != 8080 || args.Quoted != "8080" ||
		args.Empty == nil || *args.Empty != "" || !slices.Equal(args.Nested, []string{"a", "${literal}"}) {
		t.Errorf("args = %+v, %v", args, err)
	}
	wantEnv := map[string]string{"LC_ALL": "C", "PORT": "8080", "HOME": "$HOME"}
	if l.Name != "rotate-logs" || !l.Anchor.Equal(time.Date(2025, 12, 31, 23, 0, 3, 0, time.UTC)) ||
		!slices.Equal(l.Command, []string{"/usr/sbin/logrotate", "/etc/logrotate.conf"}) ||
		len(l.Env) != len(wantEnv) || l.Env["LC_ALL"] != "C" || l.Env["PORT"] != "8080" || l.Env["HOME"] != "$HOME" ||
		l.Dir != "/var/log" || !l.Disabled {
		t.Errorf("logs job = %+v", l)
	}
	if got := l.Schedule.Next(time.Date(2026, 5, 5, 0, 0, 0, 0, time.UTC)); !got.Equal(time.Date(2026, 5, 5, 0, 0, 3, 0, time.UTC)) {
		t.Errorf("logs fires at %v (anchor ignored?)", got)
	}
}

func TestMergeKeys(t *testing.T) {
	c := mustParse(t, lines(
		"backend: {type: memory}",
		"jobs:",
		"  - &base",
		"    name: a",
		"    schedule: '@daily'",
		"    command: [x]",
		"    retries: 2",
		"  - <<: *base",
		"    name: b",
		"    retries: 5",
	))
	a, b := c.Jobs[0], c.Jobs[1]
	if a.Name != "a" || b.Name != "b" || b.Spec != "@daily" || !slices.Equal(b.Command, []string{"x"}) || b.Retries != 5 || a.Retries != 2 {
		t.Errorf("jobs = %+v\n%+v", a, b)
	}
}

func TestErrors(t *testing.T) {
	const head = "backend: {type: memory}\njobs:\n" // jobs start on line 3
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"empty file", "", []string{"t.yaml:1: empty file: expected a mapping with backend, lock and jobs"}},
		{"only comments", "# nothing\n", []string{"t.yaml:1: empty file: expected a mapping with backend, lock and jobs"}},
		{"empty document", "---\n", []string{"t.yaml:1: empty file: expected a mapping with backend, lock and jobs"}},
		{"not a mapping", "- a\n", []string{"t.yaml:1: expected a mapping, got a list"}},
		{"YAML syntax", lines("backend: {type: memory}", "jobs:", "  - name: a", "   schedule: x: y"),
			[]string{"t.yaml:3: invalid YAML: did not find expected '-' indicator"}},
		{"YAML bad mapping", lines("backend: {type: memory}", "jobs:", "  - name: a", "    schedule: x: y"),
			[]string{"t.yaml:4: invalid YAML: mapping values are not allowed in this context"}},
		{"YAML control character", lines("backend: {type: memory}", "jobs:", "  - name: \x01"),
			[]string{"t.yaml:3: invalid YAML: control characters are not allowed"}},
		{"YAML unclosed flow", lines("backend: {type: memory}", "jobs: [{name: a, args: {x: ${PORT}}}]"),
			[]string{"t.yaml:2: invalid YAML: did not find expected ',' or '}'"}},
		{"YAML unknown anchor", lines("backend: {type: memory}", "jobs: *nope"),
			[]string{"t.yaml:2: invalid YAML: unknown anchor 'nope' referenced"}},
		{"YAML tab", lines("backend: {type: memory}", "\tjobs: []"),
			[]string{"t.yaml:2: invalid YAML: found character that cannot start any token"}},
		{"two documents", lines("backend: {type: memory}", "jobs: []", "---", "a: 1"),
			[]string{"t.yaml:3: a second YAML document: the file must hold exactly one"}},
		{"missing sections", lines("lock: {ttl: 10s}"), []string{
			"t.yaml:1: backend: required: a mapping with type: memory, redis, etcd or zookeeper",
			"t.yaml:1: jobs: required: a list of jobs (write jobs: [] for none)"}},
		{"unknown keys everywhere", lines(
			"backend:",
			"  type: memory",
			"  tpye: redis",
			"lock: {ttl: 10s, nmespace: x}",
			"extra: 1",
			"jobs:",
			"  - name: a",
			"    schedule: '@daily'",
			"    command: [x]",
			"    shedule: x",
			"    foo: bar",
		), []string{
			`t.yaml:3: backend.tpye: unknown field (did you mean "type"?)`,
			`t.yaml:4: lock.nmespace: unknown field (did you mean "namespace"?)`,
			"t.yaml:5: extra: unknown field",
			`t.yaml:10: jobs[0].shedule: unknown field (did you mean "schedule"?)`,
			"t.yaml:11: jobs[0].foo: unknown field",
		}},
		{"duplicate key", lines("backend: {type: memory}", "backend: {type: redis}", "jobs: []"),
			[]string{"t.yaml:2: backend: duplicate field"}},
		{"backend not a mapping", lines("backend: redis", "jobs: []"),
			[]string{"t.yaml:1: backend: expected a mapping, got a scalar"}},
		{"backend type unknown", lines("backend: {type: mysql}", "jobs: []"),
			[]string{`t.yaml:1: backend.type: invalid value "mysql" (want memory, redis, etcd or zookeeper)`}},
		{"backend type missing", lines("backend: {redis: {addr: 'h:1'}}", "jobs: []"),
			[]string{"t.yaml:1: backend.type: required (want memory, redis, etcd or zookeeper)"}},
		{"redis without address", lines("backend:", "  type: redis", "  redis: {db: 1}", "jobs: []"),
			[]string{"t.yaml:3: backend.redis.addr: required: set addr (one server) or addrs (a cluster, or sentinels with master_name)"}},
		{"redis section missing", lines("backend:", "  type: redis", "jobs: []"),
			[]string{"t.yaml:2: backend.redis.addr: required: set addr (one server) or addrs (a cluster, or sentinels with master_name)"}},
		{"redis conflicts", lines(
			"backend:",
			"  type: redis",
			"  redis:",
			"    addr: 'h:1'",
			"    addrs: ['h:2', nohost]",
			"    master_name: m",
			"    db: -1",
			"jobs: []",
		), []string{
			"t.yaml:5: backend.redis.addrs: set addr or addrs, not both",
			`t.yaml:5: backend.redis.addrs: invalid address "nohost": want host:port`,
			"t.yaml:7: backend.redis.db: must not be negative, got -1",
		}},
		{"redis cluster db", lines("backend: {type: redis, redis: {addrs: ['a:1'], db: 2}}", "jobs: []"),
			[]string{"t.yaml:1: backend.redis.db: must be 0 with a Redis Cluster (addrs without master_name)"}},
		{"redis sentinel without addrs", lines("backend: {type: redis, redis: {addr: 'a:1', master_name: m}}", "jobs: []"),
			[]string{"t.yaml:1: backend.redis.master_name: needs addrs: the sentinels' addresses"}},
		{"redis tls half a certificate", lines("backend:", "  type: redis", "  redis:", "    addr: 'a:1'", "    tls: {cert_file: c.pem}", "jobs: []"),
			[]string{"t.yaml:5: backend.redis.tls.cert_file: a client certificate needs both cert_file and key_file"}},
		{"etcd without endpoints", lines("backend:", "  type: etcd", "  etcd: {dial_timeout: 0s}", "jobs: []"), []string{
			`t.yaml:3: backend.etcd.endpoints: required: at least one etcd endpoint, e.g. ["127.0.0.1:2379"]`,
			"t.yaml:3: backend.etcd.dial_timeout: must be positive",
		}},
		{"zookeeper", lines("backend:", "  type: zookeeper", "  zookeeper: {servers: [], session_timeout: 100ms, username: u}", "jobs: []"), []string{
			`t.yaml:3: backend.zookeeper.servers: required: at least one ZooKeeper server, e.g. ["127.0.0.1:2181"]`,
			"t.yaml:3: backend.zookeeper.session_timeout: must be at least 1s, got 100ms",
			"t.yaml:3: backend.zookeeper.username: digest auth needs both username and password",
		}},
		{"zookeeper ttl longer than the session", lines("backend:", "  type: zookeeper", "  zookeeper: {servers: ['h:1'], session_timeout: 5s}", "lock:", "  ttl: 10s", "jobs: []"), []string{
			"t.yaml:5: lock.ttl: 10s exceeds backend.zookeeper.session_timeout (5s): a claim lives as long as the session, so the TTL cannot be longer; raise session_timeout to the TTL",
		}},
		{"etcd password without username", lines("backend:", "  type: etcd", "  etcd: {endpoints: [a], password: p}", "jobs: []"), []string{
			"t.yaml:3: backend.etcd.username: password authentication needs both username and password",
		}},
		{"unused backend sections are not required", lines("backend: {type: memory, etcd: {}, zookeeper: {}}", "jobs: []"), nil},
		{"lock", lines(
			"backend: {type: memory}",
			"lock:",
			"  ttl: 500ms",
			"  namespace: 'my app'",
			"  margin: -1s",
			"  retention: 0s",
			"jobs: []",
		), []string{
			"t.yaml:3: lock.ttl: must be at least 1s, got 500ms: the lease is renewed every ttl/3, and a shorter one cannot outlast a backend round trip and clock drift",
			`t.yaml:4: lock.namespace: invalid namespace "my app": use 1 to 64 of A-Z a-z 0-9 . _ -`,
			"t.yaml:5: lock.margin: must not be negative, got -1s",
			"t.yaml:6: lock.retention: must be positive, got 0s",
		}},
		{"durations need units", lines("backend: {type: memory}", "lock: {ttl: 10}", "shutdown_timeout: soon", "jobs: []"), []string{
			`t.yaml:2: lock.ttl: invalid duration "10": missing unit (write e.g. 10s)`,
			`t.yaml:3: shutdown_timeout: invalid duration "soon" (write e.g. 500ms, 10s, 5m or 1h30m)`,
		}},
		{"margin too large", lines("backend: {type: memory}", "lock: {ttl: 3s, margin: 1s}", "jobs: []"),
			[]string{"t.yaml:2: lock.margin: must be less than ttl/3 (1s), got 1s: the lease is renewed every ttl/3"}},
		{"namespace too long", lines("backend: {type: memory}", "lock: {namespace: "+strings.Repeat("n", 65)+"}", "jobs: []"),
			[]string{`t.yaml:2: lock.namespace: invalid namespace "` + strings.Repeat("n", 65) + `": use 1 to 64 of A-Z a-z 0-9 . _ -`}},
		{"top level", lines("backend: {type: memory}", "replica: 'a b'", "admin: {listen: localhost}", "jobs: []"), []string{
			`t.yaml:2: replica: invalid replica name "a b": use 1 to 128 of A-Z a-z 0-9 . _ -`,
			`t.yaml:3: admin.listen: invalid address "localhost": want host:port, e.g. 127.0.0.1:9090`,
		}},
		{"jobs not a list", lines("backend: {type: memory}", "jobs: {a: 1}"),
			[]string{"t.yaml:2: jobs: expected a list, got a mapping"}},
		{"job not a mapping", head + "  - hello\n",
			[]string{"t.yaml:3: jobs[0]: expected a mapping, got a scalar"}},
		{"empty job", head + "  - {}\n", []string{
			"t.yaml:3: jobs[0].name: required",
			"t.yaml:3: jobs[0].schedule: required: 5 or 6 cron fields, or a descriptor such as @daily or @every 30s",
			"t.yaml:3: jobs[0].func: required: set func (a registered Go function) or command (a program)",
		}},
		{"bad names and duplicates", lines(
			"backend: {type: memory}",
			"jobs:",
			"  - {name: 'a/b', schedule: '@daily', func: f}",
			"  - {name: ok, schedule: '@daily', func: f}",
			"  - {name: ok, schedule: '@daily', func: f}",
			"  - {name: '', schedule: '@daily', func: f}",
		), []string{
			`t.yaml:3: jobs[0].name: invalid job name "a/b": use 1 to 128 of A-Z a-z 0-9 . _ -`,
			`t.yaml:5: jobs[2].name: duplicate job name "ok" (first used by jobs[1])`,
			`t.yaml:6: jobs[3].name: invalid job name "": use 1 to 128 of A-Z a-z 0-9 . _ -`,
		}},
		{"func and command", head + "  - {name: a, schedule: '@daily', func: f, command: [x]}\n",
			[]string{"t.yaml:3: jobs[0].command: set func or command, not both"}},
		{"bad schedules", lines(
			"backend: {type: memory}",
			"jobs:",
			"  - name: a",
			"    func: f",
			"    schedule: '0 30 2 *'",
			"  - name: b",
			"    func: f",
			"    schedule: '@every 0s'",
			"  - name: c",
			"    func: f",
			"    schedule: [1]",
			"  - name: d",
			"    func: f",
			"    schedule: ''",
			"  - name: e",
			"    func: f",
			"    schedule: 'TZ=Nowhere/Land @daily'",
		), []string{
			"t.yaml:5: jobs[0].schedule: expected 5 or 6 fields, got 4",
			"t.yaml:8: jobs[1].schedule: @every: duration 0s is shorter than 1s",
			"t.yaml:11: jobs[2].schedule: expected a single value, got a list",
			"t.yaml:14: jobs[3].schedule: empty spec",
			`t.yaml:17: jobs[4].schedule: unknown time zone "Nowhere/Land"`,
		}},
		{"timezones", lines(
			"backend: {type: memory}",
			"jobs:",
			"  - {name: a, func: f, schedule: '@daily', timezone: Mars/Olympus}",
			"  - {name: b, func: f, schedule: '@daily', timezone: Local}",
		), []string{
			`t.yaml:3: jobs[0].timezone: unknown time zone "Mars/Olympus"`,
			`t.yaml:4: jobs[1].timezone: time zone "Local" is not allowed: replicas may run in different zones; use an IANA name such as "Europe/Paris"`,
		}},
		{"enums", lines(
			"backend: {type: memory}",
			"jobs:",
			"  - name: a",
			"    func: f",
			"    schedule: '@daily'",
			"    dst: sometimes",
			"    misfire: run_first",
			"    on_holder_loss: panic",
			"    overlap: queue",
			"    critical: maybe",
		), []string{
			`t.yaml:6: jobs[0].dst: invalid value "sometimes" (want adjust, skip or both)`,
			`t.yaml:7: jobs[0].misfire: invalid value "run_first" (want run_latest, run_all or skip)`,
			`t.yaml:8: jobs[0].on_holder_loss: invalid value "panic" (want retry or abandon)`,
			`t.yaml:9: jobs[0].overlap: invalid value "queue" (want skip, allow, buffer_one or cancel_other)`,
			`t.yaml:10: jobs[0].critical: expected true or false, got "maybe"`,
		}},
		{"numbers", lines(
			"backend: {type: memory}",
			"jobs:",
			"  - name: a",
			"    func: f",
			"    schedule: '@daily'",
			"    timeout: -1s",
			"    retries: -1",
			"    retry_backoff: -2s",
			"    starting_deadline: 0s",
			"  - {name: b, func: f, schedule: '@daily', retries: many, starting_deadline: 49h}",
		), []string{
			"t.yaml:6: jobs[0].timeout: must not be negative, got -1s",
			"t.yaml:7: jobs[0].retries: must not be negative, got -1",
			"t.yaml:8: jobs[0].retry_backoff: must not be negative, got -2s",
			"t.yaml:9: jobs[0].starting_deadline: must be positive, got 0s",
			`t.yaml:10: jobs[1].retries: expected an integer, got "many"`,
			"t.yaml:10: jobs[1].starting_deadline: 49h0m0s exceeds lock.retention (48h0m0s): a late replica could run a tick again after its done marker expired",
		}},
		{"commands", lines(
			"backend: {type: memory}",
			"jobs:",
			"  - {name: a, schedule: '@daily', command: []}",
			"  - {name: b, schedule: '@daily', command: ['', x]}",
			"  - {name: c, schedule: '@daily', command: /bin/true}",
			"  - {name: d, schedule: '@daily', command: [x, [y]]}",
		), []string{
			"t.yaml:3: jobs[0].command: must not be empty: list the program and its arguments",
			"t.yaml:4: jobs[1].command: the program (first element) must not be empty",
			"t.yaml:5: jobs[2].command: expected a list, got a scalar",
			"t.yaml:6: jobs[3].command[1]: expected a single value, got a list",
		}},
		{"fields of the other job kind", lines(
			"backend: {type: memory}",
			"jobs:",
			"  - {name: a, schedule: '@daily', command: [x], args: {a: 1}}",
			"  - {name: b, schedule: '@daily', func: f, env: {A: b}, dir: /tmp}",
			"  - {name: c, schedule: '@daily', func: ''}",
		), []string{
			"t.yaml:3: jobs[0].args: applies only to func jobs",
			"t.yaml:4: jobs[1].env: applies only to command jobs",
			"t.yaml:4: jobs[1].dir: applies only to command jobs",
			"t.yaml:5: jobs[2].func: must not be empty",
		}},
		{"env", lines(
			"backend: {type: memory}",
			"jobs:",
			"  - name: a",
			"    schedule: '@daily'",
			"    command: [x]",
			"    env:",
			"      1X: a",
			"      ONCECRON_JOB: b",
			"      OK: [c]",
			"  - {name: b, schedule: '@daily', command: [x], env: [A=b]}",
		), []string{
			"t.yaml:7: jobs[0].env.1X: invalid variable name: use A-Z a-z 0-9 _, not starting with a digit",
			"t.yaml:8: jobs[0].env.ONCECRON_JOB: the ONCECRON_ prefix is reserved for the variables oncecron sets",
			"t.yaml:9: jobs[0].env.OK: expected a single value, got a list",
			"t.yaml:10: jobs[1].env: expected a mapping of variable names to values, got a list",
		}},
		{"anchors", lines(
			"backend: {type: memory}",
			"jobs:",
			"  - {name: a, func: f, schedule: '@daily', anchor: '2026-01-01T00:00:00Z'}",
			"  - {name: b, func: f, schedule: '@every 1m', anchor: yesterday}",
			"  - {name: c, func: f, schedule: '@every 1m', anchor: '2026-01-01T00:00:00.5Z'}",
			"  - {name: d, func: f, schedule: 'CRON_TZ=UTC @every 1m', anchor: '2026-01-01T00:00:00Z'}",
		), []string{
			"t.yaml:3: jobs[0].anchor: applies only to @every schedules",
			`t.yaml:4: jobs[1].anchor: invalid instant "yesterday": want RFC 3339, e.g. 2026-01-01T00:00:00Z`,
			`t.yaml:5: jobs[2].anchor: must be a whole second, got "2026-01-01T00:00:00.5Z"`,
		}},
		{"missing environment variables", lines(
			"backend:",
			"  type: redis",
			"  redis: {addr: '${REDIS_ADDR:-127.0.0.1:6379}', password: '${NOPE}'}",
			"jobs:",
			"  - name: a",
			"    func: f",
			"    schedule: '@daily'",
			"    args: {key: '${API_KEY}', ok: '${EMPTY}', list: [1, '${X'], also: '${9}'}",
		), []string{
			"t.yaml:3: backend.redis.password: environment variable NOPE is not set (write ${NOPE:-default} to allow a default)",
			"t.yaml:8: jobs[0].args.key: environment variable API_KEY is not set (write ${API_KEY:-default} to allow a default)",
			`t.yaml:8: jobs[0].args.list[1]: unterminated "${" (write "$$" for a literal "$")`,
			`t.yaml:8: jobs[0].args.also: invalid variable reference "${9}": want ${NAME} or ${NAME:-default} (write "$$" for a literal "$")`,
		}},
		{"self-referencing alias in args", lines(
			"backend: {type: memory}",
			"jobs:",
			"  - name: a",
			"    func: f",
			"    schedule: '@daily'",
			"    args: &loop [*loop]",
		), []string{
			"t.yaml:6: jobs[0].args: too large or too deeply nested (an alias may refer to itself)",
		}},
		{"bad merge", lines("backend: {type: memory}", "jobs:", "  - {<<: [1], name: a, func: f, schedule: '@daily'}"),
			[]string{"t.yaml:3: jobs[0]: a merge key (<<) needs a mapping or a list of mappings"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse(t, tt.src)
			got := errorLines(t, err)
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if (err == nil) != (c != nil) {
				t.Errorf("Parse returned config %v with error %v", c != nil, err)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"plain", "plain", ""},
		{"", "", ""},
		{"${REDIS_PASSWORD}", "s3cret", ""},
		{"a-${PORT}-b", "a-8080-b", ""},
		{"${NOPE:-fallback}", "fallback", ""},
		{"${EMPTY:-fallback}", "fallback", ""},
		{"${PORT:-1}", "8080", ""},
		{"${NOPE:-}", "", ""},
		{"${EMPTY}", "", ""},
		{"${NOPE:-a:-b}", "a:-b", ""},
		{"$$", "$", ""},
		{"$${PORT}", "${PORT}", ""},
		{"$$$$", "$$", ""},
		{"$HOME and $ alone $", "$HOME and $ alone $", ""},
		{"$${PORT}${PORT}", "${PORT}8080", ""},
		{"${NOPE}", "", "environment variable NOPE is not set (write ${NOPE:-default} to allow a default)"},
		{"${PORT", "", `unterminated "${" (write "$$" for a literal "$")`},
		{"${}", "", `invalid variable reference "${}": want ${NAME} or ${NAME:-default} (write "$$" for a literal "$")`},
		{"${A B}", "", `invalid variable reference "${A B}": want ${NAME} or ${NAME:-default} (write "$$" for a literal "$")`},
		{"${A:?x}", "", `invalid variable reference "${A:?x}": want ${NAME} or ${NAME:-default} (write "$$" for a literal "$")`},
	}
	for _, tt := range tests {
		got, err := expand(tt.in, env)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("expand(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// checker knows example.hello, whose args need a greeting.
type checker struct{ calls []string }

func (c *checker) CheckFunc(name string, args *yaml.Node) error {
	c.calls = append(c.calls, name)
	if name != "example.hello" {
		return fmt.Errorf("%w %q (known: example.hello)", ErrUnknownFunc, name)
	}
	var a struct {
		Greeting string `yaml:"greeting"`
	}
	if args == nil {
		return errors.New("needs args with a greeting")
	}
	if err := args.Decode(&a); err != nil {
		return fmt.Errorf("cannot decode: %v", err)
	}
	if a.Greeting == "" {
		return errors.New("greeting must not be empty")
	}
	return nil
}

func TestFuncChecker(t *testing.T) {
	src := lines(
		"backend: {type: memory}",
		"jobs:",
		"  - name: ok",
		"    schedule: '@daily'",
		"    func: example.hello",
		"    args: {greeting: '${NOPE:-hi}'}",
		"  - name: unknown",
		"    schedule: '@daily'",
		"    func: example.bye",
		"  - name: bad-args",
		"    schedule: '@daily'",
		"    func: example.hello",
		"    args:",
		"      greeting: ''",
		"  - name: no-args",
		"    schedule: '@daily'",
		"    func: example.hello",
		"  - name: invalid-job",
		"    schedule: 'bad'",
		"    func: example.bye",
	)
	c := &checker{}
	_, err := parse(t, src, WithFuncChecker(c))
	want := []string{
		`t.yaml:9: jobs[1].func: unknown function "example.bye" (known: example.hello)`,
		"t.yaml:14: jobs[2].args: greeting must not be empty",
		"t.yaml:17: jobs[3].func: needs args with a greeting",
		"t.yaml:19: jobs[4].schedule: expected 5 or 6 fields, got 1",
	}
	if got := errorLines(t, err); !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// An invalid job is not handed to the checker.
	if wantCalls := []string{"example.hello", "example.bye", "example.hello", "example.hello"}; !slices.Equal(c.calls, wantCalls) {
		t.Errorf("CheckFunc calls = %v, want %v", c.calls, wantCalls)
	}
	// Without a checker any function is accepted.
	if _, err := parse(t, lines("backend: {type: memory}", "jobs: [{name: a, schedule: '@daily', func: any.thing}]")); err != nil {
		t.Error(err)
	}
}

func TestErrorType(t *testing.T) {
	_, err := parse(t, lines("backend: {type: memory}", "lock: {ttl: 1ms}", "jobs: [{name: a, schedule: '* * * *', func: f}]"))
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Errors) != 2 {
		t.Fatalf("err = %#v", err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatal("errors.As(*FieldError) failed")
	}
	want := FieldError{File: "t.yaml", Line: 2, Column: 13, Field: "lock.ttl", Msg: fe.Msg}
	if *fe != want || !strings.HasPrefix(fe.Msg, "must be at least 1s") {
		t.Errorf("first error = %+v", *fe)
	}
	if s := ce.Errors[1].Error(); s != "t.yaml:3: jobs[0].schedule: expected 5 or 6 fields, got 4" {
		t.Errorf("second error = %q", s)
	}
	if s := (&FieldError{File: "f.yaml", Msg: "boom"}).Error(); s != "f.yaml: boom" {
		t.Errorf("file-level error = %q", s)
	}
}

func TestHash(t *testing.T) {
	base := lines(
		"backend: {type: redis, redis: {addr: 'a:1', password: x}}",
		"lock: {ttl: 10s}",
		"replica: r1",
		"jobs:",
		"  - {name: a, schedule: '@daily', func: f, args: {x: 1, y: [1, 2]}}",
		"  - {name: b, schedule: '@hourly', command: [x]}",
	)
	same := map[string]string{
		"reformatted and reordered": lines(
			"# a comment",
			"replica: r2              # per replica",
			"shutdown_timeout: 5s",
			"admin: {listen: ':9090'}",
			"jobs:",
			"  - name: b",
			"    command: [x]",
			"    schedule: '@hourly'",
			"  - name: a",
			"    func: f",
			"    args:",
			"      y: [1, 2]",
			"      x: 1",
			"    schedule: '@daily'",
			"    misfire: run_latest  # the default",
			"lock: {ttl: 10s, namespace: oncecron}",
			"backend: {type: redis, redis: {addr: 'b:2', password: other}}",
		),
	}
	differ := map[string]string{
		"schedule":  strings.Replace(base, "'@daily'", "'@weekly'", 1),
		"args":      strings.Replace(base, "x: 1", "x: 2", 1),
		"args type": strings.Replace(base, "x: 1", "x: '1'", 1),
		"ttl":       strings.Replace(base, "ttl: 10s", "ttl: 20s", 1),
		"backend":   strings.Replace(base, "type: redis, redis: {addr: 'a:1', password: x}", "type: memory", 1),
		"command":   strings.Replace(base, "[x]", "[y]", 1),
		"disabled":  strings.Replace(base, "command: [x]", "command: [x], disabled: true", 1),
	}
	h := mustParse(t, base).Hash()
	if len(h) != 64 {
		t.Errorf("hash %q is not a hex SHA-256", h)
	}
	if h2 := mustParse(t, base).Hash(); h2 != h {
		t.Errorf("hash not stable: %s != %s", h, h2)
	}
	for name, src := range same {
		if got := mustParse(t, src).Hash(); got != h {
			t.Errorf("%s: hash changed", name)
		}
	}
	for name, src := range differ {
		if got := mustParse(t, src).Hash(); got == h {
			t.Errorf("%s: hash did not change", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	seeds := []string{
		"", "---\n", "- a\n", "backend: {type: memory}\njobs: []\n",
		"backend: {type: redis, redis: {addr: '${A:-x:1}'}}\njobs: [{name: a, schedule: '@every 1s', func: f, args: &a [*a]}]\n",
		"a: &a [*a, *a]\nb: *a\n", "jobs:\n  - <<: {name: x}\n    <<: [*y]\n",
		"backend:\n  type: etcd\n  etcd: {endpoints: [x], tls: {}}\nlock: {ttl: 1s}\njobs:\n  - {name: a, schedule: 'CRON_TZ=Asia/Shanghai 0 0 * * *', command: [x], env: {A: $$}}\n",
		"\x00", "a: \x01", "{[: ]}", "jobs: [{<<: *x}]",
	}
	if data, err := os.ReadFile("jobs.yaml"); err == nil {
		seeds = append(seeds, string(data))
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data, WithLookupEnv(env), WithHostname(hostname), WithFuncChecker(&checker{}))
		if (c == nil) == (err == nil) {
			t.Fatalf("config %v, error %v", c, err)
		}
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Errors) == 0 {
				t.Fatalf("error %T %v", err, err)
			}
			for _, fe := range ce.Errors {
				if fe.Line < 1 || fe.File != "f.yaml" || fe.Msg == "" {
					t.Fatalf("bad error %+v", fe)
				}
			}
			return
		}
		_ = c.Hash()
	})
}

func TestHostileInputsAreBounded(t *testing.T) {
	// Merge keys that fan out exponentially, and a billion laughs in args.
	var b strings.Builder
	b.WriteString("backend: {type: memory}\nx0: &m0 {name: a}\n")
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&b, "x%d: &m%d {<<: [*m%d, *m%d, *m%d, *m%d, *m%d, *m%d, *m%d, *m%d]}\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("jobs:\n  - {<<: *m12, schedule: '@daily', func: f, args: *l9}\n")
	_, err := parse(t, b.String())
	got := errorLines(t, err)
	if len(got) < 3 || !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "merge keys") }) ||
		!slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "args: too large") }) {
		t.Errorf("errors: %s", strings.Join(got, "\n"))
	}
}

func TestOverlapAndJitter(t *testing.T) {
	c := mustParse(t, lines(
		"backend: {type: memory}",
		"jobs:",
		"  - {name: a, schedule: '@every 10s', command: [/bin/true], overlap: buffer_one, jitter: 2s}",
		"  - {name: b, schedule: '@every 10s', command: [/bin/true], overlap: cancel_other}",
	))
	if c.Jobs[0].Overlap != OverlapBufferOne || c.Jobs[0].Jitter != 2*time.Second || c.Jobs[1].Overlap != OverlapCancelOther || c.Jobs[1].Jitter != 0 {
		t.Errorf("jobs: %+v", c.Jobs)
	}
	_, err := parse(t, lines(
		"backend: {type: memory}",
		"jobs:",
		"  - {name: a, schedule: '@every 10s', command: [/bin/true], jitter: 1m}",
	))
	want := []string{"t.yaml:3: jobs[0].jitter: 1m0s must be less than starting_deadline (20s), or a tick would start past its deadline"}
	if got := errorLines(t, err); !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDefaultReplicaIsHostnamePID(t *testing.T) {
	c, err := Parse("t.yaml", []byte("backend: {type: memory}\njobs: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("-%d", os.Getpid()); !strings.HasSuffix(c.Replica, want) {
		t.Errorf("default replica %q, want hostname%s", c.Replica, want)
	}
}

func TestExampleTablesLoad(t *testing.T) {
	files, err := fs.Glob(os.DirFS("."), "examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example tables: %v", err)
	}
	for _, f := range files {
		if _, err := Load(f, WithLookupEnv(func(string) (string, bool) { return "", false })); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestCriticalNeedsFencedBackend(t *testing.T) {
	for _, tc := range []struct {
		name, backend string
		want          []string
	}{
		{"single redis", "{type: redis, redis: {addr: 'h:1'}}", nil},
		{"etcd", "{type: etcd, etcd: {endpoints: ['h:1']}}", nil},
		{"sentinel", "{type: redis, redis: {addrs: ['h:1'], master_name: m}}", []string{
			"t.yaml:5: jobs[0].critical: a critical job needs a backend whose fencing tokens survive failover: Redis Sentinel fails over to asynchronously replicated replicas; use etcd or zookeeper, or one Redis primary with appendfsync always"}},
		{"cluster", "{type: redis, redis: {addrs: ['h:1', 'h:2']}}", []string{
			"t.yaml:5: jobs[0].critical: a critical job needs a backend whose fencing tokens survive failover: Redis Cluster fails over to asynchronously replicated replicas; use etcd or zookeeper, or one Redis primary with appendfsync always"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, lines(
				"backend: "+tc.backend,
				"jobs:",
				"  - name: pay",
				"    schedule: '@daily'",
				"    critical: true",
				"    command: [/bin/true]",
			))
			if got := errorLines(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestReservedJobNames(t *testing.T) {
	for _, name := range []string{"_replicas", "..", "."} {
		_, err := parse(t, lines("backend: {type: memory}", "jobs:", "  - {name: '"+name+"', schedule: '@daily', command: [/bin/true]}"))
		want := []string{fmt.Sprintf("t.yaml:3: jobs[0].name: invalid job name %q: names starting with _ (and . and ..) are reserved", name)}
		if got := errorLines(t, err); !slices.Equal(got, want) {
			t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func TestStartingDeadlineCoversZooKeeperSessions(t *testing.T) {
	c := mustParse(t, lines(
		"backend: {type: zookeeper, zookeeper: {servers: ['h:1'], session_timeout: 6s}}",
		"lock: {ttl: 3s, margin: 500ms}",
		"jobs:",
		"  - {name: a, schedule: '@every 1s', command: [/bin/true]}",
	))
	// A dead runner's claim lives until its session expires: 2 x 6s + 3s.
	if got := c.Jobs[0].StartingDeadline; got != 15*time.Second {
		t.Errorf("default starting deadline %v, want 15s", got)
	}
}

// intChecker's functions take an integer argument n.
type intChecker struct{}

func (intChecker) CheckFunc(_ string, args *yaml.Node) error {
	var a struct {
		N int `yaml:"n"`
	}
	return args.Decode(&a)
}

// TestErrorsNeverShowEnvValues: a value read from the environment may be a
// secret, so error messages show the ${VAR} reference in its place, also when
// the secret sits in a field that quotes bad values (db, durations,
// addresses, zones, plugin arguments); short values are replaced only where
// they are quoted whole, so that other messages stay intact.
func TestErrorsNeverShowEnvValues(t *testing.T) {
	const long, short = "hunter2-long-secret", "ab1"
	envs := map[string]string{"PW": long, "SHORT": short, "ONE": "1"}
	lookup := func(k string) (string, bool) { v, ok := envs[k]; return v, ok }
	for _, tc := range []struct {
		name, src, want string
	}{
		{"integer", "backend: {type: redis, redis: {addr: 'a:1', password: '${PW}', db: '${PW}'}}\njobs: []\n",
			`t.yaml:1: backend.redis.db: expected an integer, got "${PW}"`},
		{"short integer", "backend: {type: redis, redis: {addr: 'a:1', db: '${SHORT}'}}\njobs: []\n",
			`t.yaml:1: backend.redis.db: expected an integer, got "${SHORT}"`},
		{"duration", "backend: {type: memory}\nlock: {ttl: '${PW}'}\njobs: []\n",
			`t.yaml:2: lock.ttl: invalid duration "${PW}" (write e.g. 500ms, 10s, 5m or 1h30m)`},
		{"address", "backend: {type: memory}\nadmin: {listen: 'x${PW}'}\njobs: []\n",
			`t.yaml:2: admin.listen: invalid address "x${PW}": want host:port, e.g. 127.0.0.1:9090`},
		{"zone", "backend: {type: memory}\njobs:\n  - {name: a, schedule: '@daily', command: [x], timezone: '${PW}'}\n",
			`t.yaml:3: jobs[0].timezone: unknown time zone "${PW}"`},
		{"plugin argument", "backend: {type: memory}\njobs:\n  - {name: a, schedule: '@daily', func: f, args: {n: '${SHORT}'}}\n",
			"${SHORT}"},
		{"short value elsewhere", "backend: {type: memory}\njobs:\n  - {name: a, schedule: '1 2', command: [x], retries: '${ONE}'}\n",
			`t.yaml:3: jobs[0].schedule: expected 5 or 6 fields, got 2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.src), WithLookupEnv(lookup), WithHostname(hostname), WithFuncChecker(intChecker{}))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			msg := err.Error()
			t.Logf("error:\n%s", msg)
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error:\n%s\nwant it to contain %q", msg, tc.want)
			}
			if strings.Contains(msg, long) || strings.Contains(msg, short) {
				t.Errorf("error shows a value of the environment:\n%s", msg)
			}
		})
	}
}
