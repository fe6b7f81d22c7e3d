package etcdlock_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking/etcdlock"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger logs to the test's log; benchmarks do not log.
func testLogger(t testing.TB) *zap.Logger {
	if _, ok := t.(*testing.B); ok {
		return zap.NewNop()
	}
	return zaptest.NewLogger(t)
}

// newNamespace returns a namespace unique to this run.
func newNamespace() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "t-" + hex.EncodeToString(b[:])
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newBackend connects a Backend to the shared test etcd, closed when t ends.
func newBackend(t testing.TB, ns string, opts ...etcdlock.Option) *etcdlock.Backend {
	t.Helper()
	return newBackendAt(t, testenv.EtcdAddr(t), ns, opts...)
}

func newBackendAt(t testing.TB, addr, ns string, opts ...etcdlock.Option) *etcdlock.Backend {
	t.Helper()
	opts = append([]etcdlock.Option{etcdlock.WithNamespace(ns), etcdlock.WithLogger(testLogger(t))}, opts...)
	b, err := etcdlock.New(testCtx(t), []string{addr}, opts...)
	if err != nil {
		t.Fatalf("etcdlock.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// rawClient returns a plain etcd client of the shared test server.
func rawClient(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{testenv.EtcdAddr(t)}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("clientv3.New: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// countKeys counts the keys under prefix.
func countKeys(t testing.TB, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	resp, err := cli.Get(testCtx(t), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("count %s: %v", prefix, err)
	}
	return resp.Count
}

// countingKV counts the requests made through an etcd client's KV.
type countingKV struct {
	clientv3.KV
	txns, other *atomic.Int64
}

func (c countingKV) Txn(ctx context.Context) clientv3.Txn {
	return countingTxn{c.KV.Txn(ctx), c.txns}
}

func (c countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	c.other.Add(1)
	return c.KV.Get(ctx, key, opts...)
}

func (c countingKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	c.other.Add(1)
	return c.KV.Put(ctx, key, val, opts...)
}

func (c countingKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	c.other.Add(1)
	return c.KV.Delete(ctx, key, opts...)
}

type countingTxn struct {
	clientv3.Txn
	n *atomic.Int64
}

func (t countingTxn) If(cs ...clientv3.Cmp) clientv3.Txn { return countingTxn{t.Txn.If(cs...), t.n} }
func (t countingTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	return countingTxn{t.Txn.Then(ops...), t.n}
}
func (t countingTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	return countingTxn{t.Txn.Else(ops...), t.n}
}
func (t countingTxn) Commit() (*clientv3.TxnResponse, error) {
	t.n.Add(1)
	return t.Txn.Commit()
}

// countingBackend returns a Backend on its own client whose KV requests are
// counted.
func countingBackend(t testing.TB, ns string) (b *etcdlock.Backend, txns, other *atomic.Int64) {
	t.Helper()
	cli := rawClient(t)
	txns, other = new(atomic.Int64), new(atomic.Int64)
	cli.KV = countingKV{cli.KV, txns, other}
	b, err := etcdlock.NewFromClient(cli, etcdlock.WithNamespace(ns), etcdlock.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("NewFromClient: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, txns, other
}

func clientOpts() []clientv3.OpOption { return []clientv3.OpOption{clientv3.WithPrefix()} }

func leaseID(id int64) clientv3.LeaseID { return clientv3.LeaseID(id) }
