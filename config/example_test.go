package config_test

import (
	"errors"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/oncecron/oncecron/config"
)

func ExampleParse() {
	src := `
backend:
  type: memory
lock:
  ttl: 10s
jobs:
  - name: reconcile-payments
    schedule: "0 30 2 * * *"
    timezone: Asia/Shanghai
    func: payments.reconcile
    args: {currency: CNY}
    retries: 3
  - name: rotate-logs
    schedule: "@every 10s"
    command: ["/usr/sbin/logrotate", "/etc/logrotate.conf"]
`
	cfg, err := config.Parse("jobs.yaml", []byte(src))
	if err != nil {
		fmt.Println(err)
		return
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, j := range cfg.Jobs {
		fmt.Printf("%s: next %s, deadline %s, misfire %s\n", j.Name, j.Schedule.Next(now).Format(time.RFC3339), j.StartingDeadline, j.Misfire)
	}
	// Output:
	// reconcile-payments: next 2026-01-01T18:30:00Z, deadline 20s, misfire run_latest
	// rotate-logs: next 2026-01-01T00:00:10Z, deadline 20s, misfire run_latest
}

func ExampleParse_errors() {
	src := `
backend:
  type: memory
lock:
  ttl: 500ms
jobs:
  - name: a
    schedule: "0 30 2 *"
    func: f
  - name: a
    schedule: "@daily"
    func: f
    command: [x]
    timezon: UTC
`
	_, err := config.Parse("config/jobs.yaml", []byte(src))
	fmt.Println(err)

	var ce *config.Error
	if errors.As(err, &ce) {
		fmt.Println(len(ce.Errors), "problems; the first is at line", ce.Errors[0].Line)
	}
	// Output:
	// config/jobs.yaml:5: lock.ttl: must be at least 1s, got 500ms: the lease is renewed every ttl/3, and a shorter one cannot outlast a backend round trip and clock drift
	// config/jobs.yaml:8: jobs[0].schedule: expected 5 or 6 fields, got 4
	// config/jobs.yaml:10: jobs[1].name: duplicate job name "a" (first used by jobs[0])
	// config/jobs.yaml:13: jobs[1].command: set func or command, not both
	// config/jobs.yaml:14: jobs[1].timezon: unknown field (did you mean "timezone"?)
	// 5 problems; the first is at line 5
}

func ExampleWithLookupEnv() {
	env := map[string]string{"REDIS_PASSWORD": "s3cret"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	src := `
backend:
  type: redis
  redis:
    addr: "${REDIS_ADDR:-127.0.0.1:6379}"
    password: "${REDIS_PASSWORD}"
jobs: []
`
	cfg, err := config.Parse("jobs.yaml", []byte(src), config.WithLookupEnv(lookup))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Backend.Redis.Addr, cfg.Backend.Redis.Password)

	delete(env, "REDIS_PASSWORD")
	_, err = config.Parse("jobs.yaml", []byte(src), config.WithLookupEnv(lookup))
	fmt.Println(err)
	// Output:
	// 127.0.0.1:6379 s3cret
	// jobs.yaml:6: backend.redis.password: environment variable REDIS_PASSWORD is not set (write ${REDIS_PASSWORD:-default} to allow a default)
}

// registry is a stand-in for a plugin registry.
type registry map[string]func(args *yaml.Node) error

func (r registry) CheckFunc(name string, args *yaml.Node) error {
	check, ok := r[name]
	if !ok {
		return fmt.Errorf("%w %q", config.ErrUnknownFunc, name)
	}
	return check(args)
}

func ExampleWithFuncChecker() {
	reg := registry{"example.hello": func(args *yaml.Node) error {
		var a struct {
			Greeting string `yaml:"greeting"`
		}
		if args == nil {
			return errors.New("needs args")
		}
		return args.Decode(&a)
	}}
	src := `
backend: {type: memory}
jobs:
  - name: hello
    schedule: "@every 3s"
    func: example.hello
    args: {greeting: [not, a, string]}
  - name: bye
    schedule: "@every 3s"
    func: example.bye
`
	_, err := config.Parse("jobs.yaml", []byte(src), config.WithFuncChecker(reg))
	fmt.Println(err)
	// Output:
	// jobs.yaml:7: jobs[0].args: yaml: unmarshal errors:
	//   line 7: cannot unmarshal !!seq into string
	// jobs.yaml:10: jobs[1].func: unknown function "example.bye"
}

func ExampleConfig_Hash() {
	a, _ := config.Parse("a.yaml", []byte("backend: {type: memory}\nreplica: r1\njobs: [{name: x, schedule: '@daily', func: f}]\n"))
	b, _ := config.Parse("b.yaml", []byte("# another replica\nreplica: r2\njobs:\n  - func: f\n    name: x\n    schedule: '@daily'\nbackend:\n  type: memory\n"))
	c, _ := config.Parse("c.yaml", []byte("backend: {type: memory}\njobs: [{name: x, schedule: '@hourly', func: f}]\n"))
	fmt.Println(a.Hash() == b.Hash(), a.Hash() == c.Hash())
	// Output: true false
}
