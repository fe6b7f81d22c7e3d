package cli_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/oncecron/oncecron/cli"
	"github.com/oncecron/oncecron/config"
	"github.com/oncecron/oncecron/internal/testenv"
	"github.com/oncecron/oncecron/locking"
)

// secret returns a random password that no output can contain by chance.
func secret(t *testing.T, label string) string {
	t.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	return label + "-" + hex.EncodeToString(b[:])
}

// clientTLS trusts certs' authority and, if withCert, presents its client
// certificate.
func clientTLS(t *testing.T, certs *testenv.Certs, withCert bool) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if withCert {
		cert, err := tls.LoadX509KeyPair(certs.ClientCertFile, certs.ClientKeyFile)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc
}

// tlsKey is the YAML of a backend's tls key for certs; without a client
// certificate unless withCert.
func tlsKey(certs *testenv.Certs, withCert bool) string {
	s := fmt.Sprintf("{ca_file: %q", certs.CAFile)
	if withCert {
		s += fmt.Sprintf(", cert_file: %q, key_file: %q", certs.ClientCertFile, certs.ClientKeyFile)
	}
	return s + "}"
}

// startSecureRedis starts a Redis that serves TLS only, requires a client
// certificate, and has the ACL user oncecron with password.
func startSecureRedis(t *testing.T, certs *testenv.Certs, password string) string {
	t.Helper()
	srv := testenv.StartRedis(t, testenv.RedisOptions{TLS: certs, ClientCertAuth: true})
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), TLSConfig: clientTLS(t, certs, true)})
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.Do(ctx, "ACL", "SETUSER", "oncecron", "on", ">"+password, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "default", "off").Err(); err != nil {
		t.Fatal(err)
	}
	return srv.Addr()
}

// TestOpenBackendSecure opens each backend through the table, as `scheduler
// run` does, against servers with authentication and TLS with client
// certificates: the right settings work; a wrong password, a missing client
// certificate, another authority and plain text against TLS fail with an error
// that names the server and the cause and never shows the password.
func TestOpenBackendSecure(t *testing.T) {
	certs := testenv.NewCerts(t)
	other := testenv.NewCerts(t)
	redisPass, etcdPass, zkPass := secret(t, "redis"), secret(t, "etcd"), secret(t, "zk")
	wrongPass := secret(t, "wrong")

	redisAddr := startSecureRedis(t, certs, redisPass)

	etcdSrv := testenv.StartEtcdWith(t, testenv.EtcdOptions{TLS: certs, ClientCertAuth: true})
	ns := "sec" + secret(t, "")[:9]
	testenv.EnableEtcdAuth(t, etcdSrv.Addr(), clientTLS(t, certs, true), secret(t, "root"),
		testenv.EtcdUser{Name: "oncecron", Password: etcdPass, Prefix: "/" + ns + "/"})

	zkAddr := testenv.ZKAddr(t)

	env := map[string]string{"REDIS_PASSWORD": redisPass, "ETCD_PASSWORD": etcdPass, "ZK_PASSWORD": zkPass, "WRONG": wrongPass}
	redisTable := func(tlsYAML, pass string) string {
		return fmt.Sprintf("type: redis\n  redis: {addr: %q, username: oncecron, password: %q, tls: %s}", redisAddr, pass, tlsYAML)
	}
	etcdTable := func(tlsYAML, pass string) string {
		return fmt.Sprintf("type: etcd\n  etcd: {endpoints: [%q], username: oncecron, password: %q, dial_timeout: 1s, tls: %s}", etcdSrv.Addr(), pass, tlsYAML)
	}
	zkTable := func(pass string) string {
		return fmt.Sprintf("type: zookeeper\n  zookeeper: {servers: [%q], username: oncecron, password: %q}", zkAddr, pass)
	}
	for _, tc := range []struct {
		name    string
		backend string
		want    []string // nil: opens and claims
	}{
		{"redis", redisTable(tlsKey(certs, true), "${REDIS_PASSWORD}"), nil},
		{"redis wrong password", redisTable(tlsKey(certs, true), "${WRONG}"), []string{redisAddr, "WRONGPASS"}},
		{"redis no client certificate", redisTable(tlsKey(certs, false), "${REDIS_PASSWORD}"), []string{redisAddr, "certificate required"}},
		{"redis another authority", redisTable(tlsKey(other, true), "${REDIS_PASSWORD}"), []string{redisAddr, "certificate signed by unknown authority"}},
		{"redis plain text", strings.Replace(redisTable("{}", "${REDIS_PASSWORD}"), ", tls: {}", "", 1), []string{redisAddr, "does it expect TLS"}},
		{"etcd", etcdTable(tlsKey(certs, true), "${ETCD_PASSWORD}"), nil},
		{"etcd wrong password", etcdTable(tlsKey(certs, true), "${WRONG}"), []string{etcdSrv.Addr(), `user "oncecron"`, "wrong user name or password"}},
		{"etcd no client certificate", etcdTable(tlsKey(certs, false), "${ETCD_PASSWORD}"), []string{etcdSrv.Addr(), "certificate required"}},
		{"etcd another authority", etcdTable(tlsKey(other, true), "${ETCD_PASSWORD}"), []string{etcdSrv.Addr(), "certificate signed by unknown authority"}},
		{"zookeeper", zkTable("${ZK_PASSWORD}"), nil},
		{"zookeeper wrong password", zkTable("${WRONG}"), []string{"/oncecron-" + ns, `digest user "oncecron" do not match its ACL`, "wrong password"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := "backend:\n  " + tc.backend + "\nlock: {namespace: " + ns + "}\njobs: []\n"
			cfg, err := config.Parse("t.yaml", []byte(table), config.WithLookupEnv(func(k string) (string, bool) {
				v, ok := env[k]
				return v, ok
			}))
			if err != nil {
				t.Fatalf("table:\n%s\n%v", table, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			b, err := cli.OpenBackend(ctx, cfg, zaptest.NewLogger(t))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("OpenBackend: %v", err)
				}
				defer b.Close()
				g, err := b.Claim(ctx, locking.Key{Scope: "secure", Name: tc.name}, locking.NewOwner(), 2*time.Second)
				if err != nil {
					t.Fatalf("claim: %v", err)
				}
				if err := b.Release(ctx, g); err != nil {
					t.Errorf("release: %v", err)
				}
				return
			}
			if err == nil {
				_ = b.Close()
				t.Fatal("OpenBackend succeeded")
			}
			t.Logf("OpenBackend: %v (after %v)", err, time.Since(start).Round(time.Millisecond))
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q", s)
				}
			}
			for _, p := range []string{redisPass, etcdPass, zkPass, wrongPass} {
				if strings.Contains(err.Error(), p) {
					t.Errorf("error shows a password")
				}
			}
			if !errors.Is(err, locking.ErrUnavailable) && !errors.Is(err, locking.ErrInvalid) {
				t.Errorf("error wraps neither ErrUnavailable nor ErrInvalid")
			}
			if took := time.Since(start); took > 8*time.Second {
				t.Errorf("OpenBackend took %v to fail", took)
			}
		})
	}
}

// TestSecretsNeverShown runs every command a user meets against a Redis with
// a password and TLS, with the password, the admin token and a job's secret
// environment taken from the environment, and checks that none of them
// appears in what the commands print, in the replica's debug log, in the admin
// API and status page, in the errors of a wrong password, or in validate's
// errors for a table with the password in the wrong field.
func TestSecretsNeverShown(t *testing.T) {
	certs := testenv.NewCerts(t)
	redisPass, token, apiKey := secret(t, "redis"), secret(t, "token"), secret(t, "apikey")
	addr := startSecureRedis(t, certs, redisPass)
	t.Setenv("ONCECRON_SEC_REDIS_PASSWORD", redisPass)
	t.Setenv("ONCECRON_SEC_API_KEY", apiKey)
	t.Setenv("ONCECRON_ADMIN_TOKEN", token)
	secrets := []string{redisPass, token, apiKey}
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	table := func(password, extra string) string {
		return fmt.Sprintf(`backend:
  type: redis
  redis:
    addr: %q
    username: oncecron
    password: %q
    tls: %s%s
lock: {ttl: 3s, namespace: %s}
admin: {listen: %q}
jobs:
  - name: tick
    schedule: "@every 1s"
    command: ["/bin/true"]
    env: {API_KEY: "${ONCECRON_SEC_API_KEY}"}
`, addr, password, tlsKey(certs, true), extra, "sec"+secret(t, "")[:9], listen)
	}
	dir := t.TempDir()
	path := writeFile(t, dir, "jobs.yaml", table("${ONCECRON_SEC_REDIS_PASSWORD}", ""))
	shown := map[string]string{} // what each command or endpoint showed
	check := func() {
		t.Helper()
		for what, out := range shown {
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("%s shows a secret (%s…):\n%s", what, s[:5], out)
				}
			}
		}
	}
	defer check()
	cmd := func(name string, args ...string) int {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		code, stdout, stderr := run(t, ctx, args...)
		shown[name] = stdout + stderr
		return code
	}

	if code := cmd("validate", "validate", "--config", path); code != cli.ExitOK {
		t.Fatalf("validate: exit %d", code)
	}
	broken := writeFile(t, dir, "broken.yaml", table("${ONCECRON_SEC_REDIS_PASSWORD}",
		"\n    db: \"${ONCECRON_SEC_REDIS_PASSWORD}\"\n    master_name: \"${ONCECRON_SEC_REDIS_PASSWORD}\""))
	if code := cmd("validate of a broken table", "validate", "--config", broken); code != cli.ExitUsage {
		t.Errorf("validate of a broken table: exit %d, want %d", code, cli.ExitUsage)
	}
	if !strings.Contains(shown["validate of a broken table"], `got "${ONCECRON_SEC_REDIS_PASSWORD}"`) {
		t.Errorf("validate does not name the variable in place of its value:\n%s", shown["validate of a broken table"])
	}

	// A replica at debug level, with the admin endpoint, until it has run a tick.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exited := make(chan int, 1)
	go func() {
		code, stdout, stderr := run(t, ctx, "run", "--config", path, "--replica", "r1", "--log-level", "debug", "--log-format", "json")
		shown["run (its log)"] = stdout + stderr
		exited <- code
	}()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func(method, path string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+listen+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if method == http.MethodPost {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	ran := regexp.MustCompile(`(?m)^oncecron_runs_total\{job="tick",status="succeeded"\} [1-9]`)
	for {
		if code, body := get(http.MethodGet, "/metrics"); code == http.StatusOK && ran.MatchString(body) {
			break
		}
		select {
		case code := <-exited:
			t.Fatalf("the replica exited with %d before it ran a tick", code)
		case <-ctx.Done():
			t.Fatal("no tick ran")
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, ep := range []struct{ method, path string }{
		{http.MethodGet, "/"}, {http.MethodGet, "/api/jobs"}, {http.MethodGet, "/api/jobs/tick/runs"},
		{http.MethodGet, "/api/replica"}, {http.MethodGet, "/metrics"}, {http.MethodGet, "/readyz"},
		{http.MethodPost, "/api/jobs/tick/trigger?id=sec"},
	} {
		code, body := get(ep.method, ep.path)
		if code >= 300 {
			t.Errorf("%s %s: %d %s", ep.method, ep.path, code, body)
		}
		shown[ep.method+" "+ep.path] = body
	}
	cancel()
	if code := <-exited; code != cli.ExitOK {
		t.Errorf("run: exit %d", code)
	}
	if l := shown["run (its log)"]; !strings.Contains(l, `"level":"debug"`) || !strings.Contains(l, "job succeeded") {
		t.Errorf("the replica's log has no debug entries or no run:\n%s", l)
	}

	for _, args := range [][]string{
		{"status", "--config", path}, {"history", "--config", path}, {"trigger", "tick", "--config", path},
	} {
		if code := cmd(args[0], args...); code != cli.ExitOK {
			t.Errorf("%s: exit %d", args[0], code)
		}
	}
	// A wrong password is a clear error that does not show the password given.
	wrong := secret(t, "wrong")
	secrets = append(secrets, wrong)
	t.Setenv("ONCECRON_SEC_REDIS_PASSWORD", wrong)
	if code := cmd("run with a wrong password", "run", "--config", path); code != cli.ExitFailure {
		t.Errorf("run with a wrong password: exit %d, want %d", code, cli.ExitFailure)
	}
	if !strings.Contains(shown["run with a wrong password"], "WRONGPASS") {
		t.Errorf("run with a wrong password does not say WRONGPASS:\n%s", shown["run with a wrong password"])
	}
}
