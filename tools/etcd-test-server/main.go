// Command etcd-test-server runs a single-member etcd for the tests of
// oncecron. It lives in its own module so that the etcd server and its
// dependencies stay out of the root go.mod.
//
//	etcd-test-server --data-dir DIR --client-addr 127.0.0.1:PORT --peer-addr 127.0.0.1:PORT [--name NAME]
//	    [--cert-file FILE --key-file FILE [--trusted-ca-file FILE] [--client-cert-auth]]
//
// With --cert-file and --key-file it serves clients over TLS only (https); with
// --client-cert-auth too it refuses clients without a certificate signed by
// the authority in --trusted-ca-file. Peers always use plain http on loopback.
//
// It logs to stderr at warn level, prints "ready" on stdout once the member
// serves clients, and stops cleanly on SIGTERM or SIGINT. Started again over
// the same data dir, it keeps its data.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dataDir := flag.String("data-dir", "", "data directory (required; reused on restart)")
	clientAddr := flag.String("client-addr", "127.0.0.1:2379", "host:port to serve clients on")
	peerAddr := flag.String("peer-addr", "127.0.0.1:2380", "host:port to serve peers on")
	name := flag.String("name", "oncecron-test", "member name")
	certFile := flag.String("cert-file", "", "PEM certificate the client port serves; with --key-file, clients must use TLS")
	keyFile := flag.String("key-file", "", "PEM key of --cert-file")
	trustedCA := flag.String("trusted-ca-file", "", "PEM authority that signs client certificates (for --client-cert-auth)")
	clientCertAuth := flag.Bool("client-cert-auth", false, "refuse clients without a certificate signed by --trusted-ca-file")
	maxTxnOps := flag.Uint("max-txn-ops", embed.DefaultMaxTxnOps, "maximum number of operations permitted in a transaction")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("etcd-test-server: ")
	if *dataDir == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	tlsOn := *certFile != "" || *keyFile != ""
	switch {
	case tlsOn && (*certFile == "" || *keyFile == ""):
		log.Fatal("--cert-file and --key-file go together")
	case (*clientCertAuth || *trustedCA != "") && !tlsOn:
		log.Fatal("--trusted-ca-file and --client-cert-auth need --cert-file and --key-file")
	case *clientCertAuth && *trustedCA == "":
		log.Fatal("--client-cert-auth needs --trusted-ca-file")
	}

	scheme := "http"
	if tlsOn {
		scheme = "https"
	}
	clientURL := url.URL{Scheme: scheme, Host: *clientAddr}
	peerURL := url.URL{Scheme: "http", Host: *peerAddr}

	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ClientTLSInfo.CertFile = *certFile
	cfg.ClientTLSInfo.KeyFile = *keyFile
	cfg.ClientTLSInfo.TrustedCAFile = *trustedCA
	cfg.ClientTLSInfo.ClientCertAuth = *clientCertAuth
	cfg.MaxTxnOps = *maxTxnOps
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	// Ignored by etcd when the data dir already holds a member: a restart
	// rejoins with its old data.
	cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{"stderr"}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("start: %v", err)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	select {
	case <-e.Server.ReadyNotify():
		fmt.Println("ready")
	case err := <-e.Err():
		e.Close()
		log.Fatalf("serve: %v", err)
	case s := <-sig:
		e.Close()
		log.Printf("stopped by %v before ready", s)
		return
	case <-time.After(60 * time.Second):
		e.Close()
		log.Fatal("not ready after 60s")
	}

	select {
	case err := <-e.Err():
		e.Close()
		log.Fatalf("serve: %v", err)
	case <-sig:
		e.Close()
	}
}
