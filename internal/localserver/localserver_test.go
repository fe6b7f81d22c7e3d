package localserver

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
)

// serve answers every connection to a loopback listener with reply, once it
// has read the request, and returns the listener's address.
func serve(t *testing.T, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for range 10 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			_, _ = c.Read(buf)
			_, _ = io.WriteString(c, reply)
			_ = c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestAnswers(t *testing.T) {
	closed := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}
	for _, tc := range []struct {
		name string
		addr func(t *testing.T) string
		want bool
	}{
		{"the reply has it", func(t *testing.T) string { return serve(t, "+PONG\r\n") }, true},
		{"the reply is another", func(t *testing.T) string { return serve(t, "-ERR loading\r\n") }, false},
		{"nothing listens", closed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Answers(tc.addr(t), "PING\r\n", "+PONG"); got != tc.want {
				t.Errorf("Answers = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestZooKeeperConfig(t *testing.T) {
	cfg := fmt.Sprintf(ZooKeeperConfig, "/data", 2181)
	for _, want := range []string{"dataDir=/data\n", "clientPort=2181\n", "clientPortAddress=127.0.0.1\n"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
}
