package testenv

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestMissingEnvSaysHowToStartServers(t *testing.T) {
	t.Setenv(EnvRedis, "")
	_, err := lookup(EnvRedis)
	if err == nil {
		t.Fatal("lookup of an empty variable succeeded")
	}
	for _, want := range []string{EnvRedis, "scripts/test.sh", `eval "$(scripts/servers.sh start)"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("FreePort gave %d, which cannot be bound: %v", p, err)
		}
		l.Close()
	}
}

func newRedis(t *testing.T, addr string, opts ...func(*redis.Options)) *redis.Client {
	o := &redis.Options{Addr: addr, DialTimeout: 2 * time.Second}
	for _, f := range opts {
		f(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func newEtcd(t *testing.T, addr string) *clientv3.Client {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

func newZK(t *testing.T, addr string) *zk.Conn {
	c, _, err := zk.Connect([]string{addr}, 2*time.Second, zk.WithLogger(nopLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestSharedServers(t *testing.T) {
	if got, err := newRedis(t, RedisAddr(t)).Ping(ctx(t)).Result(); err != nil || got != "PONG" {
		t.Errorf("redis PING = %q, %v", got, err)
	}
	if _, err := newEtcd(t, EtcdAddr(t)).Get(ctx(t), "oncecron-testenv"); err != nil {
		t.Errorf("etcd Get: %v", err)
	}
	if ok, _, err := newZK(t, ZKAddr(t)).Exists("/"); err != nil || !ok {
		t.Errorf("zookeeper Exists(/) = %v, %v", ok, err)
	}
}

func TestRedisKeepsDataAcrossRestartAndKill(t *testing.T) {
	s := StartRedis(t, RedisOptions{})
	if err := newRedis(t, s.Addr()).Set(ctx(t), "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s.Start()
	if got, err := newRedis(t, s.Addr()).Get(ctx(t), "k").Result(); err != nil || got != "v1" {
		t.Fatalf("after Stop and Start, GET k = %q, %v; want v1", got, err)
	}
	if err := newRedis(t, s.Addr()).Set(ctx(t), "k", "v2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if s.PID() != 0 {
		t.Fatalf("PID = %d after Kill", s.PID())
	}
	s.Start()
	if got, err := newRedis(t, s.Addr()).Get(ctx(t), "k").Result(); err != nil || got != "v2" {
		t.Fatalf("after Kill and Start, GET k = %q, %v; want v2", got, err)
	}
}

func TestRedisOptionsAndPause(t *testing.T) {
	s := StartRedis(t, RedisOptions{Args: []string{"--maxmemory", "7mb"}})
	c := newRedis(t, s.Addr(), func(o *redis.Options) {
		o.ReadTimeout = 300 * time.Millisecond
		o.MaxRetries = -1
	})
	got, err := c.ConfigGet(ctx(t), "maxmemory").Result()
	if err != nil || got["maxmemory"] != "7340032" {
		t.Fatalf("CONFIG GET maxmemory = %v, %v; want 7340032", got, err)
	}
	s.Pause()
	err = c.Ping(ctx(t)).Err()
	if !isTimeout(err) {
		t.Fatalf("PING to a paused server: %v; want a timeout", err)
	}
	s.Resume()
	if err := c.Ping(ctx(t)).Err(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestProxyBlackholeTimesOutAndUnblackholeRestores(t *testing.T) {
	p := NewProxy(t, RedisAddr(t))
	c := newRedis(t, p.Addr(), func(o *redis.Options) {
		o.ReadTimeout = 300 * time.Millisecond
		o.WriteTimeout = 300 * time.Millisecond
		o.MaxRetries = -1
	})
	if err := c.Set(ctx(t), "testenv-proxy", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	start := time.Now()
	err := c.Get(ctx(t), "testenv-proxy").Err()
	if !isTimeout(err) {
		t.Fatalf("GET through a blackholed proxy: %v; want a timeout", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("GET failed after %v, before its read timeout", d)
	}
	p.Unblackhole()
	if got, err := c.Get(ctx(t), "testenv-proxy").Result(); err != nil || got != "v" {
		t.Fatalf("GET after Unblackhole = %q, %v", got, err)
	}
}

// A raw connection shows that bytes sent into the blackhole are held and
// delivered afterwards, and that CutAll closes connections.
func TestProxyHoldsBytesAndCutAllCloses(t *testing.T) {
	p := NewProxy(t, RedisAddr(t))
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	roundTrip := func() string {
		t.Helper()
		if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return line
	}
	if got := roundTrip(); got != "+PONG\r\n" {
		t.Fatalf("PING = %q", got)
	}

	p.Blackhole()
	if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := r.ReadString('\n'); !isTimeout(err) {
		t.Fatalf("read through a blackholed proxy: %v; want a timeout", err)
	}
	p.Unblackhole()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "+PONG\r\n" {
		t.Fatalf("held PING answered %q, %v; want +PONG", got, err)
	}

	p.CutAll()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil || isTimeout(err) {
		t.Fatalf("read after CutAll: %v; want the connection closed", err)
	}
	conn2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	conn, r = conn2, bufio.NewReader(conn2)
	if got := roundTrip(); got != "+PONG\r\n" {
		t.Fatalf("PING on a new connection after CutAll = %q", got)
	}

	p.Close()
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("dial after Close succeeded")
	}
}

func TestEtcdKeepsDataAcrossRestart(t *testing.T) {
	s := StartEtcd(t)
	if _, err := newEtcd(t, s.Addr()).Put(ctx(t), "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s.Start()
	resp, err := newEtcd(t, s.Addr()).Get(ctx(t), "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after Stop and Start, Get k = %v", resp.Kvs)
	}
}

func TestZooKeeperKeepsDataAcrossRestart(t *testing.T) {
	s := StartZooKeeper(t)
	c := newZK(t, s.Addr())
	if _, err := c.Create("/testenv", []byte("v"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	s.Kill()
	s.Start()
	got, _, err := newZK(t, s.Addr()).Get("/testenv")
	if err != nil || string(got) != "v" {
		t.Fatalf("after Kill and Start, Get /testenv = %q, %v", got, err)
	}
}
