package cli_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/oncecron/oncecron/cli"
)

// TestRunServesAdmin runs a replica with admin.listen set and checks that
// the endpoint serves while it runs, that the bearer token from the
// environment guards the state-changing routes, and that it stops with the
// replica.
func TestRunServesAdmin(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("ONCECRON_ADMIN_TOKEN", "tok")
	path := writeFile(t, t.TempDir(), "jobs.yaml", validTable+"admin:\n  listen: \""+addr+"\"\n")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	exited := make(chan int, 1)
	go func() {
		code, _, _ := run(t, ctx, "run", "--config", path, "--replica", "r1", "--log-level", "warn")
		exited <- code
	}()

	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	do := func(method, path, token string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	// Wait until jobA (@every 1s) has run once on this replica.
	ran := regexp.MustCompile(`(?m)^oncecron_runs_total\{job="jobA",status="succeeded"\} [1-9]`)
	for {
		code, body, err := do(http.MethodGet, "/metrics", "")
		if err == nil && code == http.StatusOK && ran.MatchString(body) {
			break
		}
		select {
		case code := <-exited:
			t.Fatalf("the replica exited with %d before its admin endpoint served a run", code)
		case <-ctx.Done():
			t.Fatalf("no run of jobA in /metrics: %d %v\n%s", code, err, body)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, tc := range []struct {
		method, path, token string
		code                int
	}{
		{http.MethodGet, "/healthz", "", http.StatusOK},
		{http.MethodGet, "/readyz", "", http.StatusOK},
		{http.MethodGet, "/api/replica", "", http.StatusOK},
		{http.MethodGet, "/api/jobs/jobA/runs?limit=1", "", http.StatusOK},
		{http.MethodGet, "/", "", http.StatusOK},
		{http.MethodPost, "/api/jobs/jobA/trigger", "", http.StatusUnauthorized},
		{http.MethodPost, "/api/jobs/jobA/trigger", "nope", http.StatusUnauthorized},
		{http.MethodPost, "/api/jobs/jobA/trigger", "tok", http.StatusAccepted},
	} {
		if code, body, err := do(tc.method, tc.path, tc.token); err != nil || code != tc.code {
			t.Errorf("%s %s: %d %v, want %d\n%s", tc.method, tc.path, code, err, tc.code, body)
		}
	}

	cancel()
	if code := <-exited; code != cli.ExitOK {
		t.Errorf("exit code %d, want %d", code, cli.ExitOK)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the admin endpoint still listens after the replica stopped")
	}
}
