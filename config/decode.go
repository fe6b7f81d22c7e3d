package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/oncecron/oncecron/schedule"
)

// Load reads, decodes and validates the cron table in the file at path.
// A file that cannot be read yields the *os.PathError; an invalid one a
// *Error listing every problem with its line.
func Load(path string, opts ...Option) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data, opts...)
}

// Parse decodes and validates a cron table; name is used in error
// messages and as Config.File. Invalid input yields a *Error.
func Parse(name string, data []byte, opts ...Option) (*Config, error) {
	o := options{lookupEnv: os.LookupEnv, hostname: defaultReplica}
	for _, opt := range opts {
		opt(&o)
	}
	d := &decoder{file: name, opts: o, read: map[string]string{}}
	cfg := d.decodeFile(data)
	if len(d.errs) > 0 {
		d.redact()
		sortErrors(d.errs)
		return nil, &Error{Errors: d.errs}
	}
	return cfg, nil
}

// minBareSecret is the length from which a value read from the environment is
// also redacted where it appears unquoted in an error message; shorter values
// are redacted only as whole quoted strings ("v" or `v`), so that a variable set to "1" does
// not rewrite every "1" of the messages.
const minBareSecret = 6

// redact replaces in every error message the values read from the environment
// with the references that produced them: a value may be a secret, and a
// secret put in the wrong field (db: ${REDIS_PASSWORD}) must not be echoed by
// "expected an integer, got ...". Longer values go first, so that a value that
// contains another is replaced whole.
func (d *decoder) redact() {
	names := make([]string, 0, len(d.read))
	for name, v := range d.read {
		if v != "" {
			names = append(names, name)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if a, b := len(d.read[names[i]]), len(d.read[names[j]]); a != b {
			return a > b
		}
		return names[i] < names[j]
	})
	for _, fe := range d.errs {
		for _, name := range names {
			v, ref := d.read[name], "${"+name+"}"
			fe.Msg = strings.ReplaceAll(fe.Msg, strconv.Quote(v), strconv.Quote(ref))
			fe.Msg = strings.ReplaceAll(fe.Msg, "`"+v+"`", "`"+ref+"`") // as yaml.v3 quotes
			if len(v) >= minBareSecret {
				fe.Msg = strings.ReplaceAll(fe.Msg, v, ref)
			}
		}
	}
}

// lookupEnv reads an environment variable for ${VAR}, noting its value for
// redact.
func (d *decoder) lookupEnv(name string) (string, bool) {
	v, ok := d.opts.lookupEnv(name)
	if ok {
		d.read[name] = v
	}
	return v, ok
}

type decoder struct {
	file string
	opts options
	errs []*FieldError
	read map[string]string // the environment variables read, for redact
}

func (d *decoder) errorf(n *yaml.Node, field, format string, args ...any) {
	fe := &FieldError{File: d.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		fe.Line, fe.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, fe)
}

var (
	yamlLine          = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	yamlUnknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
)

// syntaxError reports an error of the YAML parser at its line.
func (d *decoder) syntaxError(err error, data []byte) {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		// yaml.v3 numbers lines from 0 in parser errors ("did not find
		// expected ...") and from 1 in scanner errors.
		if strings.HasPrefix(msg, "did not find expected") {
			line++
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
		// Messages without a line: find the culprit, else blame line 1,
		// which yaml.v3 leaves unnumbered.
		idx := -1
		if m := yamlUnknownAnchor.FindStringSubmatch(err.Error()); m != nil {
			idx = bytes.Index(data, []byte("*"+m[1]))
		} else if strings.Contains(msg, "control characters") {
			idx = bytes.IndexFunc(data, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\r' && r != '\t' })
		}
		line = 1 + bytes.Count(data[:max(idx, 0)], []byte("\n"))
	}
	d.errs = append(d.errs, &FieldError{File: d.file, Line: line, Msg: "invalid YAML: " + msg})
}

// parseYAML returns the document's root node, or nil after reporting why
// there is none.
func (d *decoder) parseYAML(data []byte) (root *yaml.Node) {
	defer func() {
		if r := recover(); r != nil { // yaml.v3 has panicked on odd inputs before
			d.errs = append(d.errs, &FieldError{File: d.file, Line: 1, Msg: fmt.Sprintf("invalid YAML: %v", r)})
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errs = append(d.errs, &FieldError{File: d.file, Line: 1, Msg: "empty file: expected a mapping with backend, lock and jobs"})
		} else {
			d.syntaxError(err, data)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err, data)
		return nil
	default:
		d.errorf(&next, "", "a second YAML document: the file must hold exactly one")
		return nil
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		d.errs = append(d.errs, &FieldError{File: d.file, Line: 1, Msg: "empty file: expected a mapping with backend, lock and jobs"})
		return nil
	}
	root = doc.Content[0]
	return root
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch resolve(n).Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a scalar"
	}
	return "an unexpected node"
}

type pair struct{ key, val *yaml.Node }

// obj is a decoded mapping: its fields by name, and where to report
// fields it lacks.
type obj struct {
	d    *decoder
	path string
	at   *yaml.Node // reported for missing fields
	m    map[string]pair
	// merged counts the mappings merged in through <<, to bound the work
	// on hostile inputs.
	merged int
}

func (o *obj) field(key string) string {
	if o.path == "" {
		return key
	}
	return o.path + "." + key
}

// errorf reports a problem with field key at its value, or at the mapping
// if the key is absent.
func (o *obj) errorf(key, format string, args ...any) {
	n := o.at
	if p, ok := o.m[key]; ok {
		n = p.val
	}
	o.d.errorf(n, o.field(key), format, args...)
}

// has reports whether key is present with a non-null value.
func (o *obj) has(key string) bool {
	p, ok := o.m[key]
	return ok && !isNull(p.val)
}

// object decodes mapping n at path, reporting keys not in known,
// duplicate keys, and a non-mapping n. Merge keys (<<) are expanded.
// A null or absent n yields an empty obj located at at.
func (d *decoder) object(n *yaml.Node, at *yaml.Node, path string, known []string) *obj {
	o := &obj{d: d, path: path, at: at, m: map[string]pair{}}
	if isNull(n) {
		return o
	}
	o.at = n
	if resolve(n).Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", kindName(n))
		return o
	}
	d.collect(o, resolve(n), known, 0, false)
	return o
}

func (d *decoder) collect(o *obj, n *yaml.Node, known []string, depth int, merged bool) {
	if depth > 10 || o.merged > 100 {
		if o.merged <= 100 || o.merged == 101 {
			d.errorf(n, o.path, "too many or too deeply nested merge keys (<<)")
		}
		o.merged = 102
		return
	}
	if merged {
		o.merged++
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, o.path, "expected a field name, got %s", kindName(k))
			continue
		}
		name := k.Value
		if _, dup := o.m[name]; dup {
			if !merged {
				d.errorf(k, o.field(name), "duplicate field")
			}
			continue
		}
		if !contains(known, name) {
			msg := "unknown field"
			if s := suggest(name, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.errorf(k, o.field(name), "%s", msg)
			continue
		}
		o.m[name] = pair{k, v}
	}
	for _, v := range merges {
		v = resolve(v)
		var maps []*yaml.Node
		switch v.Kind {
		case yaml.MappingNode:
			maps = []*yaml.Node{v}
		case yaml.SequenceNode:
			for _, m := range v.Content {
				maps = append(maps, resolve(m))
			}
		}
		for _, m := range maps {
			if m == nil || m.Kind != yaml.MappingNode {
				d.errorf(v, o.path, "a merge key (<<) needs a mapping or a list of mappings")
				break
			}
			d.collect(o, m, known, depth+1, true)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns the known name closest to s, if it is close enough to
// be a typo.
func suggest(s string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(s, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// scalar returns the expanded text of field key; ok is false if the field
// is absent, null or invalid (the latter reported).
func (o *obj) scalar(key string) (string, bool) {
	if !o.has(key) {
		return "", false
	}
	n := o.m[key].val
	return o.d.scalarNode(n, o.field(key))
}

func (d *decoder) scalarNode(n *yaml.Node, field string) (string, bool) {
	r := resolve(n)
	if r.Kind != yaml.ScalarNode {
		d.errorf(n, field, "expected a single value, got %s", kindName(n))
		return "", false
	}
	v, err := expand(r.Value, d.lookupEnv)
	if err != nil {
		d.errorf(n, field, "%v", err)
		return "", false
	}
	return v, true
}

func (o *obj) str(key string) string {
	v, _ := o.scalar(key)
	return v
}

// duration decodes a Go duration; def if absent or invalid.
func (o *obj) duration(key string, def time.Duration) time.Duration {
	v, ok := o.scalar(key)
	if !ok {
		return def
	}
	dur, err := time.ParseDuration(v)
	if err != nil {
		if _, nerr := strconv.ParseFloat(v, 64); nerr == nil {
			o.errorf(key, "invalid duration %q: missing unit (write e.g. %ss)", v, v)
		} else {
			o.errorf(key, "invalid duration %q (write e.g. 500ms, 10s, 5m or 1h30m)", v)
		}
		return def
	}
	return dur
}

// nonNegDuration is duration with a check that the value is >= 0.
func (o *obj) nonNegDuration(key string, def time.Duration) time.Duration {
	v := o.duration(key, def)
	if v < 0 {
		o.errorf(key, "must not be negative, got %s", v)
		return def
	}
	return v
}

func (o *obj) integer(key string, def int) int {
	v, ok := o.scalar(key)
	if !ok {
		return def
	}
	i, err := strconv.Atoi(v)
	if err != nil {
		o.errorf(key, "expected an integer, got %q", v)
		return def
	}
	return i
}

func (o *obj) boolean(key string) bool {
	v, ok := o.scalar(key)
	if !ok {
		return false
	}
	switch strings.ToLower(v) {
	case "true":
		return true
	case "false":
		return false
	}
	o.errorf(key, "expected true or false, got %q", v)
	return false
}

// list decodes a list of strings; nil if absent.
func (o *obj) list(key string) []string {
	if !o.has(key) {
		return nil
	}
	n := resolve(o.m[key].val)
	if n.Kind != yaml.SequenceNode {
		o.errorf(key, "expected a list, got %s", kindName(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, item := range n.Content {
		v, ok := o.d.scalarNode(item, fmt.Sprintf("%s[%d]", o.field(key), i))
		if ok {
			out = append(out, v)
		}
	}
	return out
}

// enum decodes one of values; def if absent or invalid.
func (o *obj) enum(key string, def string, values ...string) string {
	v, ok := o.scalar(key)
	if !ok {
		return def
	}
	if !contains(values, v) {
		o.errorf(key, "invalid value %q (want %s)", v, orList(values))
		return def
	}
	return v
}

func orList(values []string) string {
	if len(values) == 1 {
		return values[0]
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}

func (o *obj) sub(key string, known []string) *obj {
	p, ok := o.m[key]
	if !ok {
		return o.d.object(nil, o.at, o.field(key), known)
	}
	return o.d.object(p.val, p.key, o.field(key), known)
}

// validName reports whether s is made of [A-Za-z0-9._-].
func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

var (
	topFields       = []string{"backend", "lock", "jobs", "replica", "shutdown_timeout", "admin"}
	backendFields   = []string{"type", "redis", "etcd", "zookeeper"}
	redisFields     = []string{"addr", "addrs", "master_name", "username", "password", "db", "tls"}
	etcdFields      = []string{"endpoints", "username", "password", "dial_timeout", "tls"}
	zookeeperFields = []string{"servers", "session_timeout", "username", "password"}
	tlsFields       = []string{"ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify"}
	lockFields      = []string{"ttl", "namespace", "margin", "retention", "max_clock_offset"}
	adminFields     = []string{"listen"}
	jobFields       = []string{"name", "schedule", "timezone", "dst", "anchor", "func", "args", "command",
		"env", "dir", "timeout", "retries", "retry_backoff", "starting_deadline", "misfire",
		"on_holder_loss", "overlap", "jitter", "critical", "disabled"}
)

// defaultReplica names a replica that sets no name: hostname-pid, so that
// several replicas on one host are told apart in records and logs.
func defaultReplica() (string, error) {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "oncecron"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid()), nil
}

func (d *decoder) decodeFile(data []byte) *Config {
	root := d.parseYAML(data)
	if root == nil {
		return nil
	}
	top := d.object(root, root, "", topFields)
	if resolve(root).Kind != yaml.MappingNode {
		return nil
	}
	cfg := &Config{File: d.file}
	d.backend(top, &cfg.Backend)
	lock := top.sub("lock", lockFields)
	d.lock(lock, &cfg.Lock)
	if zk := cfg.Backend.Zookeeper; cfg.Backend.Type == BackendZookeeper && zk.SessionTimeout >= time.Second && cfg.Lock.TTL > zk.SessionTimeout {
		lock.errorf("ttl", "%s exceeds backend.zookeeper.session_timeout (%s): a claim lives as long as the session, so the TTL cannot be longer; raise session_timeout to the TTL", cfg.Lock.TTL, zk.SessionTimeout)
	}

	cfg.Replica = top.str("replica")
	if top.has("replica") {
		if cfg.Replica == "" || len(cfg.Replica) > 128 || !validName(cfg.Replica) {
			top.errorf("replica", "invalid replica name %q: use 1 to 128 of A-Z a-z 0-9 . _ -", cfg.Replica)
		}
	} else {
		h, err := d.opts.hostname()
		if err != nil || h == "" {
			h = "oncecron"
		}
		cfg.Replica = h
	}
	cfg.ShutdownTimeout = top.nonNegDuration("shutdown_timeout", DefaultShutdownTimeout)

	admin := top.sub("admin", adminFields)
	cfg.Admin.Listen = admin.str("listen")
	if cfg.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(cfg.Admin.Listen); err != nil {
			admin.errorf("listen", "invalid address %q: want host:port, e.g. 127.0.0.1:9090", cfg.Admin.Listen)
		}
	}
	d.jobs(top, cfg)
	return cfg
}

func (d *decoder) backend(top *obj, b *Backend) {
	o := top.sub("backend", backendFields)
	if !top.has("backend") {
		top.errorf("backend", "required: a mapping with type: memory, redis, etcd or zookeeper")
		return
	}
	types := []string{string(BackendMemory), string(BackendRedis), string(BackendEtcd), string(BackendZookeeper)}
	if !o.has("type") && resolve(top.m["backend"].val).Kind == yaml.MappingNode {
		o.errorf("type", "required (want %s)", orList(types))
	}
	b.Type = BackendType(o.enum("type", "", types...))

	r := o.sub("redis", redisFields)
	b.Redis = Redis{
		Addr: r.str("addr"), Addrs: r.list("addrs"), MasterName: r.str("master_name"),
		Username: r.str("username"), Password: r.str("password"), DB: r.integer("db", 0),
		TLS: d.tls(r),
	}
	e := o.sub("etcd", etcdFields)
	b.Etcd = Etcd{
		Endpoints: e.list("endpoints"), Username: e.str("username"), Password: e.str("password"),
		DialTimeout: e.nonNegDuration("dial_timeout", DefaultEtcdDialTimeout), TLS: d.tls(e),
	}
	z := o.sub("zookeeper", zookeeperFields)
	b.Zookeeper = Zookeeper{
		Servers: z.list("servers"), SessionTimeout: z.nonNegDuration("session_timeout", DefaultZookeeperSessionTimeout),
		Username: z.str("username"), Password: z.str("password"),
	}

	switch b.Type {
	case BackendRedis:
		rd := b.Redis
		switch {
		case rd.Addr == "" && len(rd.Addrs) == 0:
			r.errorf("addr", "required: set addr (one server) or addrs (a cluster, or sentinels with master_name)")
		case rd.Addr != "" && len(rd.Addrs) > 0:
			r.errorf("addrs", "set addr or addrs, not both")
		}
		if rd.MasterName != "" && len(rd.Addrs) == 0 {
			r.errorf("master_name", "needs addrs: the sentinels' addresses")
		}
		if rd.DB < 0 {
			r.errorf("db", "must not be negative, got %d", rd.DB)
		}
		if rd.DB != 0 && len(rd.Addrs) > 0 && rd.MasterName == "" {
			r.errorf("db", "must be 0 with a Redis Cluster (addrs without master_name)")
		}
		d.checkAddrs(r, "addr", []string{rd.Addr})
		d.checkAddrs(r, "addrs", rd.Addrs)
	case BackendEtcd:
		if len(b.Etcd.Endpoints) == 0 {
			e.errorf("endpoints", "required: at least one etcd endpoint, e.g. [\"127.0.0.1:2379\"]")
		}
		if b.Etcd.DialTimeout == 0 {
			e.errorf("dial_timeout", "must be positive")
		}
		if (b.Etcd.Username == "") != (b.Etcd.Password == "") {
			e.errorf("username", "password authentication needs both username and password")
		}
	case BackendZookeeper:
		zk := b.Zookeeper
		if len(zk.Servers) == 0 {
			z.errorf("servers", "required: at least one ZooKeeper server, e.g. [\"127.0.0.1:2181\"]")
		}
		if zk.SessionTimeout < time.Second {
			z.errorf("session_timeout", "must be at least 1s, got %s", zk.SessionTimeout)
		}
		if (zk.Username == "") != (zk.Password == "") {
			z.errorf("username", "digest auth needs both username and password")
		}
	}
}

func (d *decoder) checkAddrs(o *obj, key string, addrs []string) {
	for _, a := range addrs {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			o.errorf(key, "invalid address %q: want host:port", a)
		}
	}
}

func (d *decoder) tls(parent *obj) *TLS {
	if _, ok := parent.m["tls"]; !ok {
		return nil
	}
	o := parent.sub("tls", tlsFields)
	t := &TLS{
		CAFile: o.str("ca_file"), CertFile: o.str("cert_file"), KeyFile: o.str("key_file"),
		ServerName: o.str("server_name"), InsecureSkipVerify: o.boolean("insecure_skip_verify"),
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		o.errorf("cert_file", "a client certificate needs both cert_file and key_file")
	}
	return t
}

func (d *decoder) lock(o *obj, l *Lock) {
	l.TTL = o.duration("ttl", DefaultTTL)
	if l.TTL < MinTTL {
		o.errorf("ttl", "must be at least 1s, got %s: the lease is renewed every ttl/3, and a shorter one cannot outlast a backend round trip and clock drift", l.TTL)
		l.TTL = DefaultTTL
	}
	l.Namespace = DefaultNamespace
	if o.has("namespace") {
		l.Namespace = o.str("namespace")
		if l.Namespace == "" || len(l.Namespace) > 64 || !validName(l.Namespace) {
			o.errorf("namespace", "invalid namespace %q: use 1 to 64 of A-Z a-z 0-9 . _ -", l.Namespace)
		}
	}
	l.Margin = o.nonNegDuration("margin", DefaultMargin)
	if l.Margin >= l.TTL/3 {
		o.errorf("margin", "must be less than ttl/3 (%s), got %s: the lease is renewed every ttl/3", l.TTL/3, l.Margin)
	}
	l.Retention = o.duration("retention", DefaultRetention)
	if l.Retention <= 0 {
		o.errorf("retention", "must be positive, got %s", l.Retention)
	}
	l.MaxClockOffset = o.nonNegDuration("max_clock_offset", DefaultMaxClockOffset)
}

func (d *decoder) jobs(top *obj, cfg *Config) {
	if !top.has("jobs") {
		top.errorf("jobs", "required: a list of jobs (write jobs: [] for none)")
		return
	}
	p := top.m["jobs"]
	seq := resolve(p.val)
	if seq.Kind != yaml.SequenceNode {
		top.errorf("jobs", "expected a list, got %s", kindName(seq))
		return
	}
	names := map[string]int{}
	cfg.Jobs = make([]Job, 0, len(seq.Content))
	for i, n := range seq.Content {
		path := fmt.Sprintf("jobs[%d]", i)
		if isNull(n) || resolve(n).Kind != yaml.MappingNode {
			d.errorf(n, path, "expected a mapping, got %s", kindName(n))
			continue
		}
		o := d.object(n, n, path, jobFields)
		j := d.job(o, &cfg.Lock, takeoverDelay(cfg.Backend))
		j.Line = n.Line
		if j.Critical {
			if why := unfencedBackend(cfg.Backend); why != "" {
				o.errorf("critical", "a critical job needs a backend whose fencing tokens survive failover: %s; use etcd or zookeeper, or one Redis primary with appendfsync always", why)
			}
		}
		if j.Name != "" {
			if first, dup := names[j.Name]; dup {
				o.errorf("name", "duplicate job name %q (first used by jobs[%d])", j.Name, first)
			} else {
				names[j.Name] = i
			}
		}
		cfg.Jobs = append(cfg.Jobs, j)
	}
}

// unfencedBackend says why a backend configuration, as far as the file shows,
// cannot keep fencing tokens rising through failover ("" if it can). The rest
// (AOF, replicas attached) is checked by the replica at start.
func unfencedBackend(b Backend) string {
	if b.Type != BackendRedis {
		return ""
	}
	switch {
	case b.Redis.MasterName != "":
		return "Redis Sentinel fails over to asynchronously replicated replicas"
	case len(b.Redis.Addrs) > 0:
		return "Redis Cluster fails over to asynchronously replicated replicas"
	}
	return ""
}

// takeoverDelay is how long after a runner dies the backend may still hold its
// claim beyond the lock TTL: a ZooKeeper session outlives its client by up to
// its timeout.
func takeoverDelay(b Backend) time.Duration {
	if b.Type == BackendZookeeper {
		return 2 * b.Zookeeper.SessionTimeout
	}
	return 0
}

func (d *decoder) job(o *obj, lock *Lock, takeover time.Duration) Job {
	var j Job
	errsBefore := len(d.errs)
	j.Name = o.str("name")
	switch {
	case !o.has("name"):
		o.errorf("name", "required")
	case j.Name == "" || len(j.Name) > 128 || !validName(j.Name):
		o.errorf("name", "invalid job name %q: use 1 to 128 of A-Z a-z 0-9 . _ -", j.Name)
	case strings.HasPrefix(j.Name, "_") || j.Name == "." || j.Name == "..":
		o.errorf("name", "invalid job name %q: names starting with _ (and . and ..) are reserved", j.Name)
	}

	j.Timezone = "UTC"
	j.Location = time.UTC
	if tz := o.str("timezone"); tz != "" {
		j.Timezone = tz
		loc, err := schedule.LoadLocation(tz)
		if err != nil {
			o.errorf("timezone", "%v", err)
		} else {
			j.Location = loc
		}
	}
	if v, ok := o.scalar("dst"); ok {
		p, err := schedule.ParseDSTPolicy(v)
		if err != nil {
			o.errorf("dst", "invalid value %q (want adjust, skip or both)", v)
		}
		j.DST = p
	}
	spec, specOK := o.scalar("schedule")
	j.Spec = spec
	every := isEvery(j.Spec)
	if v, ok := o.scalar("anchor"); ok {
		t, err := time.Parse(time.RFC3339Nano, v)
		switch {
		case err != nil:
			o.errorf("anchor", "invalid instant %q: want RFC 3339, e.g. 2026-01-01T00:00:00Z", v)
		case t.Nanosecond() != 0:
			o.errorf("anchor", "must be a whole second, got %q", v)
		case j.Spec != "" && !every:
			o.errorf("anchor", "applies only to @every schedules")
		default:
			j.Anchor = t
		}
	}
	if !o.has("schedule") {
		o.errorf("schedule", "required: 5 or 6 cron fields, or a descriptor such as @daily or @every 30s")
	} else if specOK {
		s, err := schedule.Parse(j.Spec, schedule.Options{Location: j.Location, DST: j.DST, Anchor: j.Anchor})
		var pe *schedule.ParseError
		switch {
		case errors.As(err, &pe):
			o.errorf("schedule", "%s", pe.Msg)
		case err != nil:
			o.errorf("schedule", "%v", err)
		default:
			j.Schedule = s
		}
	}

	hasFunc, hasCmd := o.has("func"), o.has("command")
	switch {
	case hasFunc && hasCmd:
		o.errorf("command", "set func or command, not both")
	case !hasFunc && !hasCmd:
		o.errorf("func", "required: set func (a registered Go function) or command (a program)")
	}
	if hasFunc {
		j.Func = o.str("func")
		if j.Func == "" {
			o.errorf("func", "must not be empty")
		}
	}
	if o.has("args") {
		if !hasFunc {
			o.errorf("args", "applies only to func jobs")
		} else {
			j.Args = d.copyArgs(o.m["args"].val, o.field("args"))
		}
	}
	if hasCmd {
		j.Command = o.list("command")
		switch {
		case resolve(o.m["command"].val).Kind != yaml.SequenceNode:
			// reported by list
		case len(j.Command) == 0:
			o.errorf("command", "must not be empty: list the program and its arguments")
		case j.Command[0] == "":
			o.errorf("command", "the program (first element) must not be empty")
		}
	}
	if o.has("env") {
		if !hasCmd {
			o.errorf("env", "applies only to command jobs")
		}
		j.Env = d.env(o)
	}
	if o.has("dir") {
		j.Dir = o.str("dir")
		if !hasCmd {
			o.errorf("dir", "applies only to command jobs")
		}
	}

	j.Timeout = o.nonNegDuration("timeout", 0)
	j.Retries = o.integer("retries", 0)
	if j.Retries < 0 {
		o.errorf("retries", "must not be negative, got %d", j.Retries)
		j.Retries = 0
	}
	j.RetryBackoff = o.nonNegDuration("retry_backoff", DefaultRetryBackoff)
	j.StartingDeadline = max(2*lock.TTL, MinDefaultStartingDeadline, takeover+lock.TTL)
	if o.has("starting_deadline") {
		j.StartingDeadline = o.duration("starting_deadline", j.StartingDeadline)
		if j.StartingDeadline <= 0 {
			o.errorf("starting_deadline", "must be positive, got %s", j.StartingDeadline)
		}
	}
	if lock.Retention > 0 && j.StartingDeadline > lock.Retention {
		o.errorf("starting_deadline", "%s exceeds lock.retention (%s): a late replica could run a tick again after its done marker expired", j.StartingDeadline, lock.Retention)
	}
	j.Misfire = Misfire(o.enum("misfire", string(MisfireRunLatest), string(MisfireRunLatest), string(MisfireRunAll), string(MisfireSkip)))
	j.OnHolderLoss = HolderLoss(o.enum("on_holder_loss", string(HolderLossRetry), string(HolderLossRetry), string(HolderLossAbandon)))
	j.Overlap = Overlap(o.enum("overlap", string(OverlapSkip), string(OverlapSkip), string(OverlapAllow), string(OverlapBufferOne), string(OverlapCancelOther)))
	j.Jitter = o.nonNegDuration("jitter", 0)
	if j.Jitter > 0 && j.StartingDeadline > 0 && j.Jitter >= j.StartingDeadline {
		o.errorf("jitter", "%s must be less than starting_deadline (%s), or a tick would start past its deadline", j.Jitter, j.StartingDeadline)
	}
	j.Critical = o.boolean("critical")
	j.Disabled = o.boolean("disabled")

	if j.Func != "" && d.opts.funcChecker != nil && len(d.errs) == errsBefore {
		d.checkFunc(o, j)
	}
	return j
}

// checkFunc asks the FuncChecker about the job's function.
func (d *decoder) checkFunc(o *obj, j Job) {
	err := d.opts.funcChecker.CheckFunc(j.Func, j.Args)
	switch {
	case err == nil:
	case errors.Is(err, ErrUnknownFunc) || j.Args == nil:
		o.errorf("func", "%v", err)
	default:
		o.errorf("args", "%v", err)
	}
}

// env decodes the job's env mapping of variable names to values.
func (d *decoder) env(job *obj) map[string]string {
	n := resolve(job.m["env"].val)
	if n.Kind != yaml.MappingNode {
		job.errorf("env", "expected a mapping of variable names to values, got %s", kindName(n))
		return nil
	}
	env := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		field := job.field("env") + "." + k.Value
		if k.Kind != yaml.ScalarNode || !validEnvName(k.Value) {
			d.errorf(k, field, "invalid variable name: use A-Z a-z 0-9 _, not starting with a digit")
			continue
		}
		if strings.HasPrefix(k.Value, "ONCECRON_") {
			d.errorf(k, field, "the ONCECRON_ prefix is reserved for the variables oncecron sets")
			continue
		}
		if _, dup := env[k.Value]; dup {
			d.errorf(k, field, "duplicate variable")
			continue
		}
		v, ok := d.scalarNode(n.Content[i+1], field)
		if ok || isNull(n.Content[i+1]) {
			env[k.Value] = v
		}
	}
	return env
}

// isEvery reports whether spec is an @every schedule, with or without a
// time zone prefix.
func isEvery(spec string) bool {
	f := strings.Fields(spec)
	if len(f) > 0 && (strings.HasPrefix(f[0], "CRON_TZ=") || strings.HasPrefix(f[0], "TZ=")) {
		f = f[1:]
	}
	return len(f) > 0 && f[0] == "@every"
}

const (
	maxArgsDepth = 64
	maxArgsNodes = 10000
)

// copyArgs returns a deep copy of n with ${VAR} expanded in scalar values
// and aliases replaced by copies of their targets, so that the scheduler
// can decode it any number of times.
func (d *decoder) copyArgs(n *yaml.Node, field string) *yaml.Node {
	budget := maxArgsNodes
	c, ok := d.copyNode(n, field, true, 0, &budget)
	if budget < 0 {
		d.errorf(n, field, "too large or too deeply nested (an alias may refer to itself)")
	}
	if !ok {
		return nil
	}
	return c
}

// copyNode copies n, expanding ${VAR} in scalars if expandVars (so not in
// mapping keys). The budget bounds the total work, aliases included.
func (d *decoder) copyNode(n *yaml.Node, field string, expandVars bool, depth int, budget *int) (*yaml.Node, bool) {
	if depth > maxArgsDepth || *budget <= 0 {
		*budget = -1 // reported once by copyArgs
		return nil, false
	}
	*budget--
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.errorf(n, field, "alias to nothing")
			return nil, false
		}
		return d.copyNode(n.Alias, field, expandVars, depth+1, budget)
	}
	c := *n
	c.Anchor = ""
	c.Content = nil
	switch n.Kind {
	case yaml.ScalarNode:
		if !expandVars {
			return &c, true
		}
		v, err := expand(n.Value, d.lookupEnv)
		if err != nil {
			d.errorf(n, field, "%v", err)
			return nil, false
		}
		if v != n.Value {
			c.Value = v
			if n.Style&(yaml.TaggedStyle|yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
				// Resolve the expanded plain text as YAML would (8080 is
				// an int), except that a value never turns into null.
				c.Tag = ""
				switch v {
				case "", "~", "null", "Null", "NULL":
					c.Tag = "!!str"
				}
			}
		}
		return &c, true
	case yaml.MappingNode:
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kc, kok := d.copyNode(k, field, false, depth+1, budget)
			vc, vok := d.copyNode(v, field+"."+k.Value, expandVars, depth+1, budget)
			ok = ok && kok && vok
			c.Content = append(c.Content, kc, vc)
		}
		return &c, ok
	case yaml.SequenceNode:
		ok := true
		for i, item := range n.Content {
			ic, iok := d.copyNode(item, fmt.Sprintf("%s[%d]", field, i), expandVars, depth+1, budget)
			ok = ok && iok
			c.Content = append(c.Content, ic)
		}
		return &c, ok
	}
	return &c, true
}
