package etcdlock

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/oncecron/oncecron/locking"
)

// reconnectMaxDelay bounds the wait between attempts to reconnect to an
// endpoint that went away.
const reconnectMaxDelay = time.Second

// Defaults of a Backend. Each can be changed with an Option.
const (
	// DefaultNamespace prefixes every key the backend writes.
	DefaultNamespace = "oncecron"
	// DefaultDialTimeout bounds connecting (and New's first round trip).
	DefaultDialTimeout = 5 * time.Second
	// DefaultRequestTimeout bounds every single request to etcd, also when the
	// caller's context has no deadline.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultHistoryRetention is how long history records live at least: records
	// written by AddRecord live this long, records written by Complete live for
	// the longer of this and the completion's retention.
	DefaultHistoryRetention = 48 * time.Hour
)

// Option configures a Backend.
type Option func(*options)

type options struct {
	namespace        string
	username         string
	password         string
	tlsFiles         *TLSFiles
	tlsConfig        *tls.Config
	dialTimeout      time.Duration
	requestTimeout   time.Duration
	historyRetention time.Duration
	logger           *zap.Logger
	clock            locking.Clock
	newOnly          []string // names of the options that only New accepts
}

// TLSFiles names the PEM files of a TLS client configuration. Empty fields are
// left at Go's defaults (the system roots, no client certificate, the server
// name taken from the endpoint).
type TLSFiles struct {
	// CAFile holds the certificates of the authorities that sign the servers'.
	CAFile string
	// CertFile and KeyFile hold the client certificate and its key, for servers
	// that authenticate clients by certificate. Set both or neither.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the servers' certificates.
	ServerName string
}

// WithNamespace sets the namespace under which every key lives (default
// DefaultNamespace); it must pass locking.ValidateNamespace. Replicas that must
// exclude each other use the same namespace.
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithAuth sets the user name and password (etcd authentication). New only.
func WithAuth(username, password string) Option {
	return func(o *options) {
		o.username, o.password = username, password
		o.newOnly = append(o.newOnly, "WithAuth")
	}
}

// WithTLS makes New connect with TLS configured from PEM files. New only.
// Endpoints without a scheme then use TLS; https:// endpoints always do.
func WithTLS(files TLSFiles) Option {
	return func(o *options) {
		f := files
		o.tlsFiles = &f
		o.newOnly = append(o.newOnly, "WithTLS")
	}
}

// WithTLSConfig makes New connect with the given TLS configuration (cloned).
// New only; it takes precedence over WithTLS.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(o *options) {
		o.tlsConfig = cfg
		o.newOnly = append(o.newOnly, "WithTLSConfig")
	}
}

// WithDialTimeout bounds connecting and New's first round trip (default
// DefaultDialTimeout); the caller's context may bound them further. New only.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) {
		o.dialTimeout = d
		o.newOnly = append(o.newOnly, "WithDialTimeout")
	}
}

// WithRequestTimeout bounds each request to etcd (default DefaultRequestTimeout).
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) { o.requestTimeout = d }
}

// WithHistoryRetention sets how long history records live at least (default
// DefaultHistoryRetention). See the package documentation.
func WithHistoryRetention(d time.Duration) Option {
	return func(o *options) { o.historyRetention = d }
}

// WithLogger sets the logger of the backend and, for New, of the etcd client
// (default: no logging).
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.logger = l } }

// WithClock sets the clock of the backend (default locking.SystemClock). It must
// be the Locker's clock: grants carry Since instants read from it.
func WithClock(c locking.Clock) Option { return func(o *options) { o.clock = c } }

func buildOptions(opts []Option) (options, error) {
	o := options{
		namespace:        DefaultNamespace,
		dialTimeout:      DefaultDialTimeout,
		requestTimeout:   DefaultRequestTimeout,
		historyRetention: DefaultHistoryRetention,
		logger:           zap.NewNop(),
		clock:            locking.SystemClock{},
	}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := locking.ValidateNamespace(o.namespace); err != nil {
		return o, fmt.Errorf("etcdlock: %w", err)
	}
	switch {
	case o.logger == nil:
		return o, fmt.Errorf("etcdlock: %w: nil logger", locking.ErrInvalid)
	case o.clock == nil:
		return o, fmt.Errorf("etcdlock: %w: nil clock", locking.ErrInvalid)
	case o.dialTimeout <= 0:
		return o, fmt.Errorf("etcdlock: %w: dial timeout %v must be positive", locking.ErrInvalid, o.dialTimeout)
	case o.requestTimeout <= 0:
		return o, fmt.Errorf("etcdlock: %w: request timeout %v must be positive", locking.ErrInvalid, o.requestTimeout)
	case o.historyRetention < time.Second:
		return o, fmt.Errorf("etcdlock: %w: history retention %v must be at least 1s", locking.ErrInvalid, o.historyRetention)
	case (o.username == "") != (o.password == ""):
		return o, fmt.Errorf("etcdlock: %w: WithAuth needs both a user name and a password", locking.ErrInvalid)
	}
	return o, nil
}

// tls returns the TLS configuration the options ask for, or nil.
func (o *options) tls() (*tls.Config, error) {
	if o.tlsConfig != nil {
		return o.tlsConfig.Clone(), nil
	}
	if o.tlsFiles == nil {
		return nil, nil
	}
	f := o.tlsFiles
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcdlock: %w: CA file: %w", locking.ErrInvalid, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcdlock: %w: CA file %s holds no PEM certificate", locking.ErrInvalid, f.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, fmt.Errorf("etcdlock: %w: TLS client certificate and key must be set together", locking.ErrInvalid)
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcdlock: %w: TLS client certificate: %w", locking.ErrInvalid, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Backend is the etcd lock backend. It is safe for concurrent use; one Backend
// per process (replica) and cluster is the intended shape. The zero value is not
// usable; call New or NewFromClient.
type Backend struct {
	cli       *clientv3.Client
	ownClient bool
	o         options
	log       *zap.Logger
	clock     locking.Clock
	prefix    string // "/<ns>/"
	base      time.Time

	ctx    context.Context // cancelled by Close: ends the background goroutines
	cancel context.CancelFunc
	wg     sync.WaitGroup
	nudge  chan struct{} // wakes the janitor

	mu       sync.Mutex
	closed   bool
	sessions map[time.Duration]*session
	creating map[time.Duration]chan struct{}
	entries  map[entryKey]*entry
	lostIDs  map[clientv3.LeaseID]struct{}

	retMu  sync.Mutex
	leases map[retKey]retLease

	batchMax atomic.Int32 // ClaimBatch's transaction size once lowered; 0: maxBatch

	held   heldSeen     // revisions at which claims found keys held (Wait)
	hub    hub          // the namespace watch that Waits share (hub.go)
	legacy legacyScopes // scopes known to hold no legacy done marker (legacy.go)
}

// New connects to the etcd cluster at endpoints ("host:port", "http://host:port"
// or "https://host:port") and checks with one round trip, within ctx and the
// dial timeout, that it answers; an unreachable cluster yields an error wrapping
// locking.ErrUnavailable. Close closes the connection.
func New(ctx context.Context, endpoints []string, opts ...Option) (*Backend, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("etcdlock: %w: no endpoints", locking.ErrInvalid)
	}
	eps := make([]string, 0, len(endpoints))
	for _, ep := range endpoints {
		ep = strings.TrimSpace(ep)
		if ep == "" {
			return nil, fmt.Errorf("etcdlock: %w: empty endpoint", locking.ErrInvalid)
		}
		eps = append(eps, ep)
	}
	tlsCfg, err := o.tls()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("etcdlock: connect: %w", errors.Join(locking.ErrUnavailable, err))
	}
	dial := o.dialTimeout
	if dl, ok := ctx.Deadline(); ok {
		dial = max(min(dial, time.Until(dl)), time.Millisecond)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            eps,
		DialTimeout:          dial,
		DialKeepAliveTime:    keepAliveTime,
		DialKeepAliveTimeout: keepAliveTimeout,
		TLS:                  tlsCfg,
		Username:             o.username,
		Password:             o.password,
		Logger:               o.logger.Named("etcd-client"),
		// gRPC backs off reconnecting up to 2 minutes by default; after a
		// server restart that would keep a replica from taking over ticks
		// (or freeing a lost claim) long after the server is back.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMaxDelay},
			MinConnectTimeout: dial,
		})},
	})
	if err != nil {
		return nil, connectError(ctx, eps, &o, tlsCfg, err)
	}
	b := newBackend(cli, true, o)
	cctx, cancel := context.WithTimeout(ctx, dial)
	defer cancel()
	// One linearizable read: proves a reachable quorum and read permission.
	if _, err := cli.Get(cctx, b.prefix, clientv3.WithCountOnly()); err != nil {
		_ = b.Close()
		return nil, connectError(ctx, eps, &o, tlsCfg, err)
	}
	return b, nil
}

// connectError explains why New could not connect: it names the endpoints and
// the user, says what an authentication refusal means, and for a cluster that
// did not answer adds what a direct connection to each endpoint finds. The etcd
// client reports a failed TLS handshake (no client certificate, an unknown
// authority) only as a timeout; the probe shows the cause.
func connectError(ctx context.Context, eps []string, o *options, tlsCfg *tls.Config, err error) error {
	who := ""
	if o.username != "" {
		who = fmt.Sprintf(" as user %q", o.username)
	}
	err = classify(ctx, err)
	hint := ""
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		hint = ": wrong user name or password"
	case errors.Is(err, rpctypes.ErrUserEmpty):
		hint = ": the cluster has authentication on and no user name and password were given"
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		hint = fmt.Sprintf(": the user may not read and write the keys under /%s/", o.namespace)
	case errors.Is(err, locking.ErrUnavailable):
		if perr := probe(ctx, eps, tlsCfg); perr != nil {
			err = errors.Join(err, perr)
		}
	}
	return fmt.Errorf("etcdlock: connect %v%s%s: %w", eps, who, hint, err)
}

// probeTimeout bounds probe.
const probeTimeout = time.Second

// probe connects to each endpoint as the etcd client would, with TLS where the
// client uses it, and returns what failed: the TCP connection, the TLS
// handshake, or the server's refusal of the client certificate, which a TLS 1.3
// server sends just after the handshake. It returns nil when every endpoint
// accepts a connection.
func probe(ctx context.Context, eps []string, tlsCfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeTimeout)
	defer cancel()
	var errs []error
	for _, ep := range eps {
		host, secure, ok := endpointTarget(ep, tlsCfg != nil)
		if !ok {
			continue
		}
		if err := probeOne(ctx, host, secure, tlsCfg); err != nil {
			errs = append(errs, fmt.Errorf("endpoint %s: %w", ep, err))
		}
	}
	return errors.Join(errs...)
}

// endpointTarget returns the host:port of an endpoint and whether the etcd
// client uses TLS for it (as clientv3 decides: always for https://, never for
// http://, when a TLS configuration is given for a bare host:port); ok is false
// for endpoints probe does not dial (unix sockets).
func endpointTarget(ep string, haveTLS bool) (host string, secure, ok bool) {
	scheme, rest, found := strings.Cut(ep, "://")
	if !found {
		if strings.HasPrefix(ep, "unix") {
			return "", false, false
		}
		return ep, haveTLS, true
	}
	switch scheme {
	case "https":
		return rest, true, true
	case "http":
		return rest, false, true
	}
	return "", false, false
}

func probeOne(ctx context.Context, host string, secure bool, tlsCfg *tls.Config) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	defer conn.Close()
	if !secure {
		return probePlain(ctx, conn)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if tlsCfg != nil {
		cfg = tlsCfg.Clone()
	}
	if cfg.ServerName == "" {
		if h, _, err := net.SplitHostPort(host); err == nil {
			cfg.ServerName = h
		}
	}
	cfg.NextProtos = []string{"h2"}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return fmt.Errorf("TLS handshake: %w: %w", errClosedOnTLS, err)
		}
		return fmt.Errorf("TLS handshake: %w", err)
	}
	// A server that accepts the client waits for it to speak: the read times out.
	_ = tc.SetReadDeadline(time.Now().Add(probeTimeout / 4))
	_, err = tc.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return fmt.Errorf("after the TLS handshake: %w", err)
}

// errClosedOnTLS is probe's finding for a server that hangs up on a TLS
// handshake, as a plain-text etcd does.
var errClosedOnTLS = errors.New("the server closed the connection: does it serve plain text?")

// errExpectsTLS is probe's finding for a server that does not answer gRPC in
// plain text.
var errExpectsTLS = errors.New("the server does not answer in plain text: does it expect TLS?")

// probePlain opens an HTTP/2 connection in plain text, as the etcd client does
// without TLS: an etcd that serves plain gRPC answers with its own settings;
// one that expects TLS closes the connection or answers with a TLS alert.
func probePlain(ctx context.Context, conn net.Conn) error {
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	// The client preface and an empty SETTINGS frame (RFC 9113, section 3.4).
	preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	if _, err := io.WriteString(conn, preface); err != nil {
		return nil // nothing learned
	}
	var hdr [9]byte
	_, err := io.ReadFull(conn, hdr[:])
	var ne net.Error
	switch {
	case err == nil && hdr[3] == 0x4: // a SETTINGS frame: HTTP/2 spoken here
		return nil
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return errExpectsTLS
	case errors.As(err, &ne) && ne.Timeout():
		return nil
	}
	return err
}

// NewFromClient returns a Backend on an existing client, which the caller keeps
// owning: Close does not close it. It makes no request; the options that
// configure a connection (WithAuth, WithTLS, WithTLSConfig, WithDialTimeout) are
// refused.
func NewFromClient(cli *clientv3.Client, opts ...Option) (*Backend, error) {
	if cli == nil {
		return nil, fmt.Errorf("etcdlock: %w: nil client", locking.ErrInvalid)
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if len(o.newOnly) > 0 {
		return nil, fmt.Errorf("etcdlock: %w: %s configure a connection; NewFromClient takes a connected client", locking.ErrInvalid, strings.Join(o.newOnly, ", "))
	}
	return newBackend(cli, false, o), nil
}

func newBackend(cli *clientv3.Client, own bool, o options) *Backend {
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{
		cli: cli, ownClient: own, o: o,
		log:   o.logger.With(zap.String("backend", "etcd"), zap.String("namespace", o.namespace)),
		clock: o.clock, prefix: "/" + o.namespace + "/", base: o.clock.Now(),
		ctx: ctx, cancel: cancel, nudge: make(chan struct{}, 1),
		sessions: map[time.Duration]*session{}, creating: map[time.Duration]chan struct{}{},
		entries: map[entryKey]*entry{}, lostIDs: map[clientv3.LeaseID]struct{}{},
		leases: map[retKey]retLease{},
	}
	b.hub.b = b
	b.wg.Add(1)
	go b.janitor()
	return b
}

// Namespace returns the namespace of the backend's keys.
func (b *Backend) Namespace() string { return b.o.namespace }

// Client returns the etcd client the backend uses.
func (b *Backend) Client() *clientv3.Client { return b.cli }

// Close stops the keep-alives and the background work, closes the Lost channel
// of every grant, revokes the sessions that hold no grants (sessions holding
// grants expire after their TTL), and closes the client if New created it.
// Calling it again does nothing.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	busy := map[*session]bool{}
	for _, e := range b.entries {
		busy[e.sess] = true
	}
	var revoke []clientv3.LeaseID
	for _, s := range b.sessions {
		if !busy[s] && s.waiters == 0 {
			revoke = append(revoke, s.id)
		}
		b.killLocked(s, "backend closed")
	}
	b.entries = map[entryKey]*entry{}
	b.mu.Unlock()

	b.cancel()
	b.wg.Wait()
	if len(revoke) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), min(b.o.requestTimeout, 2*time.Second))
		for _, id := range revoke {
			if _, err := b.cli.Revoke(ctx, id); err != nil {
				b.log.Debug("revoking an idle session on close failed; it expires with its ttl", zap.Error(err))
			}
		}
		cancel()
	}
	if b.ownClient {
		return b.cli.Close()
	}
	return nil
}

// Key layout.

func (b *Backend) scopePrefix(scope string) string { return b.prefix + scope + "/" }
func (b *Backend) lockKey(k locking.Key) string    { return b.scopePrefix(k.Scope) + "lock/" + k.Name }

// legacyDoneKey is where builds before the done value (1e356e8) kept a
// completed key's done marker; claims still honour it until it expires.
func (b *Backend) legacyDoneKey(k locking.Key) string {
	return b.scopePrefix(k.Scope) + "done/" + k.Name
}
func (b *Backend) waitPrefix(k locking.Key) string {
	return b.scopePrefix(k.Scope) + "wait/" + k.Name + "/"
}
func (b *Backend) waitKey(k locking.Key, owner string) string {
	return b.waitPrefix(k) + owner
}

// doneMark starts the value a completion leaves in a lock key: doneValue of
// the owner that completed it, on a retention lease. No owner id starts with
// it (validOwner), so a done value never equals an owner's.
const doneMark = "\x00done\x00"

func doneValue(owner string) string { return doneMark + owner }

// isDone reports whether v, a lock key's value, marks its key completed.
func isDone(v []byte) bool { return strings.HasPrefix(string(v), doneMark) }

// validOwner checks an owner id: not empty, and not starting with a NUL byte
// (a done value does).
func validOwner(owner string) error {
	switch {
	case owner == "":
		return fmt.Errorf("%w: empty owner", locking.ErrInvalid)
	case owner[0] == 0:
		return fmt.Errorf("%w: owner %q starts with a NUL byte", locking.ErrInvalid, owner)
	}
	return nil
}

func (b *Backend) recPrefix(scope string) string { return b.scopePrefix(scope) + "rec/" }

// recKey names a history record: by token, name and owner, so that repeating a
// write stores it once.
func (b *Backend) recKey(k locking.Key, token uint64, owner string) string {
	return fmt.Sprintf("%s%020d-%s-%s", b.recPrefix(k.Scope), token, k.Name, owner)
}

// Errors.

// invalidErrs are the server's answers that no retry will change.
var invalidErrs = []error{
	rpctypes.ErrPermissionDenied, rpctypes.ErrAuthFailed, rpctypes.ErrUserEmpty,
	rpctypes.ErrUserNotFound, rpctypes.ErrRoleNotGranted, rpctypes.ErrPermissionNotGranted,
	rpctypes.ErrEmptyKey, rpctypes.ErrTooManyOps, rpctypes.ErrDuplicateKey,
	rpctypes.ErrRequestTooLarge, rpctypes.ErrLeaseTTLTooLarge, clientv3.ErrMutuallyExclusiveCfg,
}

// classify wraps err, an etcd client error, in the locking sentinel it stands for:
// ErrInvalid for refusals no retry changes, ErrUnavailable for everything else
// (with ctx's error joined in, so errors.Is(err, context.Canceled) works).
func classify(ctx context.Context, err error) error {
	if errors.Is(err, locking.ErrClosed) || errors.Is(err, locking.ErrInvalid) || errors.Is(err, locking.ErrUnavailable) {
		return err
	}
	for _, ie := range invalidErrs {
		if errors.Is(err, ie) {
			return errors.Join(locking.ErrInvalid, err)
		}
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return errors.Join(locking.ErrUnavailable, err, cerr)
	}
	return errors.Join(locking.ErrUnavailable, err)
}

func (b *Backend) fail(ctx context.Context, op string, what string, err error) error {
	return fmt.Errorf("etcdlock: %s %q: %w", op, what, classify(ctx, err))
}

// rpc returns ctx bounded by the request timeout.
func (b *Backend) rpc(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.o.requestTimeout)
}
