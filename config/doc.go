// Package config loads and validates oncecron's cron table, jobs.yaml.
//
// Every replica of a deployment reads the same table; Config.Hash lets them
// check that they do. The YAML keys are a public contract:
//
//	backend:
//	  type: redis                   # memory | redis | etcd | zookeeper (required)
//	  redis:
//	    addr: "127.0.0.1:6379"      # or addrs: [...] for a cluster / sentinels
//	    master_name: ""             # with addrs: Sentinel mode
//	    username: ""
//	    password: "${REDIS_PASSWORD}"
//	    db: 0
//	    tls: {ca_file: "", cert_file: "", key_file: "", server_name: "", insecure_skip_verify: false}
//	  etcd:      {endpoints: ["127.0.0.1:2379"], username: "", password: "", dial_timeout: 5s, tls: {...}}  # username and password together
//	  zookeeper: {servers: ["127.0.0.1:2181"], session_timeout: 10s, username: "", password: ""}
//	lock:
//	  ttl: 10s                      # >= 1s; renewed every ttl/3
//	  namespace: oncecron           # [A-Za-z0-9._-], at most 64
//	  margin: 500ms                 # < ttl/3
//	  retention: 48h                # done markers; >= every starting_deadline
//	replica: ""                     # default: the host name
//	shutdown_timeout: 30s
//	admin: {listen: ""}             # host:port; empty: no admin endpoint
//	jobs:                           # required; "jobs: []" for none
//	  - name: reconcile-payments    # unique; [A-Za-z0-9._-], at most 128
//	    schedule: "0 30 2 * * *"    # see package schedule
//	    timezone: Asia/Shanghai     # IANA name; default UTC
//	    dst: adjust                 # adjust | skip | both
//	    func: payments.reconcile    # exactly one of func and command
//	    args: {currency: CNY}       # func jobs only; any YAML
//	    timeout: 1h                 # default 0: none
//	    retries: 3                  # default 0
//	    retry_backoff: 1s           # first retry delay, doubling
//	    starting_deadline: 20s      # default max(2 × lock.ttl, 10s)
//	    misfire: run_latest         # run_latest | run_all | skip
//	    on_holder_loss: retry       # retry | abandon
//	    overlap: skip               # skip | allow
//	    critical: false
//	    disabled: false
//	  - name: rotate-logs
//	    schedule: "@every 10s"
//	    anchor: "2026-01-01T00:00:00Z"  # @every only; default the Unix epoch
//	    command: ["/usr/sbin/logrotate", "/etc/logrotate.conf"]  # no shell
//	    env: {LC_ALL: C}            # command jobs only; ONCECRON_* is reserved
//	    dir: /var/log               # command jobs only
//
// The constants Default* give every default. Only the section of the
// chosen backend is checked for required fields; a tls key, even empty,
// turns TLS on.
//
// # Decoding rules
//
// Durations are Go durations ("500ms", "10s", "1h30m"). Unknown keys are
// errors, with a suggestion for likely typos; YAML anchors, aliases and
// merge keys (<<) are allowed.
//
// In every scalar value (not in keys), ${VAR} is replaced by the
// environment variable VAR and ${VAR:-default} by VAR or, when VAR is
// unset or empty, by default. A ${VAR} whose variable is unset is an
// error, so that a missing secret never silently becomes empty. Error
// messages never show a value read from the environment: where one would
// appear, its ${VAR} reference does instead. "$$" is a
// literal "$". Any other "$", as in "$HOME" inside a shell command, is
// kept as written. In flow style ({...}) a value holding ${...} must be
// quoted. In args, an unquoted value is typed after expansion, as YAML
// would (port: ${PORT} is an integer), but never becomes null; a quoted
// one stays a string.
//
// # Errors
//
// Load and Parse do not stop at the first problem: they return a *Error
// holding one *FieldError per problem, each naming the file, the line and
// the field, as in
//
//	jobs.yaml:14: jobs[2].schedule: expected 5 or 6 fields, got 4
//
// Malformed YAML is reported the same way. No input makes them panic.
//
// Plugin functions are validated without this package knowing the plugin
// registry: pass WithFuncChecker, whose CheckFunc is called for every job
// with a func once the rest of the job is valid. Job.Args keeps the args
// node so that the scheduler can decode it into the plugin's own type.
package config
