package etcdlock

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/oncecron/oncecron/internal/testenv"
)

// TestProbe: the diagnosis New adds when a cluster does not answer finds
// nothing wrong with healthy endpoints (plain and TLS), and names the cause for
// a closed port, a TLS server spoken to in plain text and a plain server spoken
// to with TLS.
func TestProbe(t *testing.T) {
	certs := testenv.NewCerts(t)
	tlsSrv := testenv.StartEtcdWith(t, testenv.EtcdOptions{TLS: certs})
	plain := testenv.EtcdAddr(t)
	closed := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	trust, err := (&options{tlsFiles: &TLSFiles{CAFile: certs.CAFile}}).tls()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ep   string
		tls  *tls.Config
		ok   bool
		want error
	}{
		{"plain", plain, nil, true, nil},
		{"plain, http://", "http://" + plain, trust, true, nil},
		{"tls", tlsSrv.Addr(), trust, true, nil},
		{"tls, https://", "https://" + tlsSrv.Addr(), trust, true, nil},
		{"closed port", closed, nil, false, nil},
		{"tls server, plain client", tlsSrv.Addr(), nil, false, errExpectsTLS},
		{"plain server, tls client", plain, trust, false, errClosedOnTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := probe(ctx, []string{tc.ep}, tc.tls)
			t.Logf("probe: %v", err)
			switch {
			case tc.ok && err != nil:
				t.Errorf("probe of a healthy endpoint: %v", err)
			case !tc.ok && err == nil:
				t.Error("probe found nothing wrong")
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("probe: %v, want %v", err, tc.want)
			}
		})
	}
	var ne *net.OpError
	if err := probe(context.Background(), []string{closed}, nil); !errors.As(err, &ne) {
		t.Errorf("probe of a closed port: %v, want the dial error", err)
	}
}
