package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/oncecron/oncecron/config"
	"github.com/oncecron/oncecron/jobs"
	"github.com/oncecron/oncecron/locking"
	"github.com/oncecron/oncecron/locking/etcdlock"
	"github.com/oncecron/oncecron/locking/memlock"
	"github.com/oncecron/oncecron/locking/redislock"
	"github.com/oncecron/oncecron/locking/zklock"
)

// Registry is what Main needs of a plugin registry; *jobs.Registry has it.
type Registry interface {
	config.FuncChecker
	Decode(name string, args *yaml.Node) (jobs.Plugin, any, error)
}

func defaultRegistry() Registry { return jobs.Default() }

// memoryRecords is how many history records the memory backend keeps in all
// (about 250 bytes each), shared out among the jobs, within 10 and
// memlock.DefaultMaxRecords per job.
const memoryRecords = 100_000

// memoryBounds bounds what the memory backend holds, which lives in the
// replica's own heap: done markers for the longest starting deadline plus
// the TTL and a minute instead of lock.retention (see
// memlock.WithMaxRetention), and history records within memoryRecords. With
// 10,000 jobs every minute that is tens of megabytes in the steady state,
// not the gigabytes that two days of markers and a thousand records a job
// would take.
func memoryBounds(cfg *config.Config) []memlock.Option {
	perJob := min(max(memoryRecords/max(len(cfg.Jobs), 1), 10), memlock.DefaultMaxRecords)
	return []memlock.Option{memlock.WithMaxRetention(memoryKeep(cfg)), memlock.WithMaxRecords(perJob)}
}

// memoryKeep is how long the memory backend keeps done markers for cfg's
// jobs: the longest starting deadline + TTL + 1 min. A reloaded table sets it
// again (see watchTable), so that a job added with a longer deadline is
// covered.
func memoryKeep(cfg *config.Config) time.Duration {
	deadline := time.Duration(0)
	for _, j := range cfg.Jobs {
		deadline = max(deadline, j.StartingDeadline)
	}
	return deadline + cfg.Lock.TTL + time.Minute
}

// OpenBackend connects to the lock backend cfg names. The memory backend
// serves one process only.
func OpenBackend(ctx context.Context, cfg *config.Config, log *zap.Logger) (locking.Backend, error) {
	ns := cfg.Lock.Namespace
	switch cfg.Backend.Type {
	case config.BackendMemory:
		return memlock.New(memoryBounds(cfg)...), nil
	case config.BackendRedis:
		r := cfg.Backend.Redis
		addrs := r.Addrs
		if r.Addr != "" {
			addrs = []string{r.Addr}
		}
		tc, err := tlsConfig(r.TLS)
		if err != nil {
			return nil, fmt.Errorf("backend.redis.tls: %w", err)
		}
		b, err := redislock.Dial(redislock.Config{
			Addrs: addrs, MasterName: r.MasterName, Username: r.Username, Password: r.Password, DB: r.DB,
			TLS: tc, Options: redislock.Options{Namespace: ns, Logger: log},
		})
		if err != nil {
			return nil, err
		}
		// Dial does not contact the server; etcd and ZooKeeper connect in
		// their constructors, so fail here too rather than log refused claims
		// forever.
		if err := b.Client().Ping(ctx).Err(); err != nil {
			_ = b.Close()
			hint := ""
			if r.TLS == nil && errors.Is(err, io.EOF) {
				hint = " (the server closed the connection: does it expect TLS? see backend.redis.tls)"
			}
			return nil, fmt.Errorf("redislock: ping %s: %w: %w%s", strings.Join(addrs, ", "), locking.ErrUnavailable, err, hint)
		}
		return b, nil
	case config.BackendEtcd:
		e := cfg.Backend.Etcd
		opts := []etcdlock.Option{etcdlock.WithNamespace(ns), etcdlock.WithLogger(log)}
		if e.Username != "" {
			opts = append(opts, etcdlock.WithAuth(e.Username, e.Password))
		}
		if e.DialTimeout > 0 {
			opts = append(opts, etcdlock.WithDialTimeout(e.DialTimeout))
		}
		if e.TLS != nil {
			tc, err := tlsConfig(e.TLS)
			if err != nil {
				return nil, fmt.Errorf("backend.etcd.tls: %w", err)
			}
			opts = append(opts, etcdlock.WithTLSConfig(tc))
		}
		return etcdlock.New(ctx, e.Endpoints, opts...)
	case config.BackendZookeeper:
		z := cfg.Backend.Zookeeper
		opts := []zklock.Option{zklock.WithNamespace(ns), zklock.WithLogger(log), zklock.WithJanitor(time.Minute, 100)}
		if z.SessionTimeout > 0 {
			opts = append(opts, zklock.WithSessionTimeout(z.SessionTimeout))
		}
		if z.Username != "" {
			opts = append(opts, zklock.WithDigestAuth(z.Username, z.Password))
		}
		servers := make([]string, len(z.Servers))
		for i, s := range z.Servers {
			servers[i] = strings.TrimPrefix(s, "zk://")
		}
		return zklock.New(ctx, servers, opts...)
	}
	return nil, fmt.Errorf("unknown backend type %q", cfg.Backend.Type)
}

// tlsConfig builds a client TLS configuration from PEM files; nil for nil.
func tlsConfig(t *config.TLS) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in, for tests
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
