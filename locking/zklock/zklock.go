package zklock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/oncecron/oncecron/locking"
)

// closeGrace is how long Close waits for the server to close the session before
// it closes the connection itself.
const closeGrace = 3 * time.Second

// Defaults of a Backend. Each can be changed with an Option.
const (
	// DefaultSessionTimeout is the session timeout asked of the server. The server
	// may negotiate it into its [minSessionTimeout, maxSessionTimeout] range; the
	// backend uses the negotiated value.
	DefaultSessionTimeout = 10 * time.Second
	// DefaultMaxRecords is how many history records per scope Sweep keeps.
	DefaultMaxRecords = 1000
	// DefaultJanitorMaxNodes bounds the requests of one janitor pass.
	DefaultJanitorMaxNodes = 500
	// DefaultRoot is the root node when no namespace is set; with namespace ns
	// the root is DefaultRoot + "-" + ns.
	DefaultRoot = "/oncecron"
)

// reapEvery is how often the reaper looks for grants past their ttl; it only
// bounds how late an abandoned entry is freed.
const reapEvery = 50 * time.Millisecond

// Option configures a Backend.
type Option func(*options)

type options struct {
	sessionTimeout  time.Duration
	user, password  string
	auth            bool
	namespace       string
	logger          *zap.Logger
	clock           locking.Clock
	dialer          zk.Dialer
	janitorEvery    time.Duration
	janitorMax      int
	maxRecords      int
	recordRetention time.Duration
}

// WithSessionTimeout sets the session timeout asked of the server (default
// DefaultSessionTimeout). A lease's ttl may not exceed the negotiated timeout.
func WithSessionTimeout(d time.Duration) Option { return func(o *options) { o.sessionTimeout = d } }

// WithDigestAuth authenticates the session with ZooKeeper's digest scheme and
// gives every node the backend creates the ACL "this user: all, world: read".
func WithDigestAuth(user, password string) Option {
	return func(o *options) { o.user, o.password, o.auth = user, password, true }
}

// WithNamespace puts all nodes under /oncecron-<ns> instead of /oncecron, so
// deployments can share an ensemble. ns must pass locking.ValidateNamespace.
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithLogger sets the logger (default: no logging). go-zookeeper's own messages
// are logged at debug level.
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.logger = l } }

// WithClock sets the clock used for grant validity, the reaper and retention
// checks (default locking.SystemClock). Its Now must carry a monotonic reading.
func WithClock(c locking.Clock) Option { return func(o *options) { o.clock = c } }

// WithDialer sets how connections to the servers are dialled (default
// net.DialTimeout), e.g. for TLS or a test proxy.
func WithDialer(d zk.Dialer) Option { return func(o *options) { o.dialer = d } }

// WithJanitor makes New start a janitor that calls Sweep every interval (with
// ±10% jitter) doing at most maxNodes requests per pass (DefaultJanitorMaxNodes
// if maxNodes is 0). Without it nothing deletes expired done markers and old
// records unless the caller runs Sweep.
func WithJanitor(interval time.Duration, maxNodes int) Option {
	return func(o *options) {
		o.janitorEvery, o.janitorMax = interval, maxNodes
		if maxNodes == 0 {
			o.janitorMax = DefaultJanitorMaxNodes
		}
	}
}

// WithMaxRecords sets how many history records per scope Sweep keeps (default
// DefaultMaxRecords).
func WithMaxRecords(n int) Option { return func(o *options) { o.maxRecords = n } }

// WithRecordRetention makes Sweep also delete history records older than d
// (default 0: records are bounded by count only).
func WithRecordRetention(d time.Duration) Option { return func(o *options) { o.recordRetention = d } }

// Backend is the ZooKeeper lock backend: one session, shared by all grants made
// through it. It is safe for concurrent use. Create it with New.
type Backend struct {
	conn     *zk.Conn
	root     string
	acl      []zk.ACL
	user     string // the digest user, "" without WithDigestAuth
	clock    locking.Clock
	log      *zap.Logger
	maxRecs  int
	recRet   time.Duration
	closing  chan struct{}
	bgDone   chan struct{} // closed when the event drain ends (the client's loop exited)
	closeErr sync.Once
	net      conns // the client's connections (see conns)

	mu       sync.Mutex
	closed   bool
	wg       sync.WaitGroup              // every goroutine the backend started
	timeouts map[int64]time.Duration     // negotiated session timeout per session id
	lost     map[int64]chan struct{}     // loss signal per session id
	contact  contact                     // last confirmed server contact
	probe    chan struct{}               // closed when the in-flight probe ends
	grants   map[string]*held            // live claims of this backend, by owner
	scopes   map[string]bool             // scopes whose nodes exist
	orphans  map[string]int64            // waiter nodes whose deletion failed -> their session
	pending  map[string]map[string]int64 // wait dir -> owner of a waiter create of unknown outcome -> session
	sweepAt  sweepCursor                 // janitor cursor

	orphanBusy atomic.Bool // a retryOrphans pass is running
}

type contact struct {
	sid int64
	at  time.Time
}

// held is a claim this backend made and has not seen end.
type held struct {
	key     locking.Key
	sid     int64
	token   uint64
	ttl     time.Duration
	expires time.Time // local monotonic; the reaper releases the claim after it
	reaping bool
}

// New connects to the ZooKeeper ensemble at servers (host:port each) and returns
// once a session is established (and authenticated, with WithDigestAuth). If that
// does not happen before ctx ends it returns an error wrapping
// locking.ErrUnavailable and ctx's error. Bad options yield locking.ErrInvalid.
func New(ctx context.Context, servers []string, opts ...Option) (*Backend, error) {
	o := options{
		sessionTimeout: DefaultSessionTimeout, logger: zap.NewNop(), clock: locking.SystemClock{},
		maxRecords: DefaultMaxRecords,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(servers); err != nil {
		return nil, err
	}
	root := DefaultRoot
	if o.namespace != "" {
		root += "-" + o.namespace
	}
	b := &Backend{
		root: root, clock: o.clock, log: o.logger.With(zap.String("backend", "zookeeper"), zap.String("root", root)),
		maxRecs: o.maxRecords, recRet: o.recordRetention,
		closing: make(chan struct{}), bgDone: make(chan struct{}),
		timeouts: map[int64]time.Duration{}, lost: map[int64]chan struct{}{},
		grants: map[string]*held{}, scopes: map[string]bool{}, orphans: map[string]int64{},
		pending: map[string]map[string]int64{},
	}
	b.acl = zk.WorldACL(zk.PermAll)
	if o.auth {
		b.acl = append(zk.DigestACL(zk.PermAll, o.user, o.password), zk.WorldACL(zk.PermRead)...)
		b.user = o.user
	}
	copts := list(zk.WithLogger(zkLogger{b}), zk.WithLogInfo(true), zk.WithDialer(b.net.dialer(o.dialer)))
	conn, events, err := zk.Connect(servers, o.sessionTimeout, copts...)
	if err != nil {
		return nil, fmt.Errorf("zklock: connect: %w: %w", locking.ErrUnavailable, err)
	}
	b.conn = conn
	go func() { // drains the event channel; ends when the client's loop has exited
		defer close(b.bgDone)
		for ev := range events {
			if ev.Type == zk.EventSession {
				b.log.Debug("session event", zap.Stringer("state", ev.State), zap.String("server", ev.Server))
				b.checkSessions()
			}
		}
	}()
	// A server that never answers is reported after the session timeout
	// (the client would otherwise try the addresses until ctx ends).
	sctx, cancel := context.WithTimeout(ctx, max(o.sessionTimeout, connectFloor))
	defer cancel()
	if err := b.start(sctx, o); err != nil {
		_ = b.Close()
		if ctx.Err() == nil && sctx.Err() != nil {
			return nil, fmt.Errorf("zklock: connect: no ZooKeeper server of %v answered within %v: %w",
				servers, max(o.sessionTimeout, connectFloor), err)
		}
		return nil, err
	}
	return b, nil
}

// connectFloor is the least time New gives the servers to answer.
const connectFloor = 5 * time.Second

// list returns its arguments as a slice; it lets New collect go-zookeeper's
// options, whose type is unexported.
func list[T any](xs ...T) []T { return xs }

func (o *options) validate(servers []string) error {
	switch {
	case len(servers) == 0:
		return fmt.Errorf("zklock: %w: no servers", locking.ErrInvalid)
	case o.sessionTimeout < 100*time.Millisecond:
		return fmt.Errorf("zklock: %w: session timeout %v below 100ms", locking.ErrInvalid, o.sessionTimeout)
	case o.logger == nil:
		return fmt.Errorf("zklock: %w: nil logger", locking.ErrInvalid)
	case o.clock == nil:
		return fmt.Errorf("zklock: %w: nil clock", locking.ErrInvalid)
	case o.auth && (o.user == "" || strings.Contains(o.user, ":")):
		return fmt.Errorf("zklock: %w: digest user must be non-empty and without ':'", locking.ErrInvalid)
	case o.janitorEvery < 0 || (o.janitorEvery > 0 && o.janitorMax < MinSweepNodes):
		return fmt.Errorf("zklock: %w: janitor interval must be positive and its budget at least %d", locking.ErrInvalid, MinSweepNodes)
	case o.maxRecords <= 0:
		return fmt.Errorf("zklock: %w: max records %d must be positive", locking.ErrInvalid, o.maxRecords)
	case o.recordRetention < 0:
		return fmt.Errorf("zklock: %w: negative record retention", locking.ErrInvalid)
	}
	for _, s := range servers {
		if s == "" {
			return fmt.Errorf("zklock: %w: empty server address", locking.ErrInvalid)
		}
	}
	if o.namespace != "" {
		if err := locking.ValidateNamespace(o.namespace); err != nil {
			return fmt.Errorf("zklock: %w", err)
		}
	}
	return nil
}

// start waits for the first session (and authenticates), then starts the
// background goroutines.
func (b *Backend) start(ctx context.Context, o options) error {
	for {
		err := b.do(ctx, func() error {
			if o.auth {
				return b.conn.AddAuth("digest", []byte(o.user+":"+o.password))
			}
			_, _, err := b.conn.Exists("/")
			return err
		})
		if err == nil {
			break
		}
		if !retryable(err) || ctx.Err() != nil {
			return b.wrap("connect", "", err)
		}
		if err := sleep(ctx, b.closing, 50*time.Millisecond); err != nil {
			return b.wrap("connect", "", err)
		}
	}
	if _, ok := b.sessionTimeout(b.conn.SessionID()); !ok {
		return fmt.Errorf("zklock: connect: %w: negotiated session timeout unknown", locking.ErrUnavailable)
	}
	// ZooKeeper takes any digest credentials; a wrong password shows only when
	// a node refuses it. Fail here rather than on every claim.
	if err := b.checkRootACL(ctx); err != nil {
		return b.wrap("connect", "", err)
	}
	b.spawn(b.monitor)
	if o.janitorEvery > 0 {
		b.spawn(func() { b.janitor(o.janitorEvery, o.janitorMax) })
	}
	return nil
}

// Close closes the session: ZooKeeper deletes its ephemeral nodes, so every key
// this backend holds is freed at once, and every grant's Lost channel is closed.
// Calls in flight return locking.ErrClosed.
func (b *Backend) Close() error {
	b.closeErr.Do(func() {
		b.mu.Lock()
		b.closed = true
		close(b.closing)
		for sid, ch := range b.lost {
			close(ch)
			delete(b.lost, sid)
		}
		b.mu.Unlock()
		if b.conn != nil {
			b.conn.Close()
			select {
			case <-b.bgDone:
			case <-time.After(closeGrace):
				// The client's close request was not answered (or not even
				// sent): end the connection, which ends the client's loop.
				b.log.Warn("session close not confirmed by the server; closing its connection")
				b.net.closeAll()
				for i := 0; ; i++ {
					select {
					case <-b.bgDone:
					case <-time.After(time.Second):
						if i < 10 {
							b.net.closeAll() // it may have dialed again
							continue
						}
						b.log.Error("the ZooKeeper client did not stop; leaving it")
					}
					break
				}
			}
		}
		b.wg.Wait()
	})
	return nil
}

// spawn runs fn in a goroutine that Close waits for; it reports false after Close.
func (b *Backend) spawn(fn func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
	return true
}

// zkLogger passes go-zookeeper's messages to zap and learns the negotiated
// session timeout from its "authenticated" message, the only place the client
// exposes it. The message is logged before any request of the session is sent.
type zkLogger struct{ b *Backend }

const authenticatedMsg = "authenticated: id=%d, timeout=%d"

func (l zkLogger) Printf(format string, args ...any) {
	if format == authenticatedMsg && len(args) == 2 {
		sid, ok1 := args[0].(int64)
		ms, ok2 := args[1].(int32)
		if ok1 && ok2 && ms > 0 {
			l.b.mu.Lock()
			l.b.timeouts[sid] = time.Duration(ms) * time.Millisecond
			l.b.mu.Unlock()
		}
	}
	if l.b.log.Core().Enabled(zap.DebugLevel) {
		l.b.log.Debug("zk: " + fmt.Sprintf(format, args...))
	}
}

// sessionTimeout returns the negotiated timeout of session sid.
func (b *Backend) sessionTimeout(sid int64) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.timeouts[sid]
	return t, ok && sid != 0
}

// SessionTimeout returns the session timeout the server negotiated for the
// current session, or 0 while there is none. Lease TTLs may not exceed it.
func (b *Backend) SessionTimeout() time.Duration {
	t, _ := b.sessionTimeout(b.conn.SessionID())
	return t
}

// checkSessions ends everything tied to a session that is no longer current:
// go-zookeeper only leaves a session id when the server reported it expired, and
// session ids are never reused, so such a session is gone for good.
func (b *Backend) checkSessions() {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.conn.SessionID()
	for sid, ch := range b.lost {
		if sid != cur {
			close(ch)
			delete(b.lost, sid)
			b.log.Warn("zookeeper session expired; its leases are lost", zap.String("session", fmt.Sprintf("%#x", sid)))
		}
	}
	for sid := range b.timeouts {
		if sid != cur {
			delete(b.timeouts, sid)
		}
	}
	for owner, h := range b.grants {
		if h.sid != cur {
			delete(b.grants, owner)
		}
	}
	for p, sid := range b.orphans { // ephemeral: gone with their session
		if sid != cur {
			delete(b.orphans, p)
		}
	}
	for dir, owners := range b.pending {
		for o, sid := range owners {
			if sid != cur {
				delete(owners, o)
			}
		}
		if len(owners) == 0 {
			delete(b.pending, dir)
		}
	}
}

// lostChan returns the loss channel of session sid (closed if sid is not current).
func (b *Backend) lostChan(sid int64) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ch, ok := b.lost[sid]; ok {
		return ch
	}
	ch := make(chan struct{})
	if b.closed || sid != b.conn.SessionID() {
		close(ch)
		return ch
	}
	b.lost[sid] = ch
	return ch
}

// noteContact records that a request sent at sent was answered on session sid.
func (b *Backend) noteContact(sid int64, sent time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if sid != b.conn.SessionID() {
		return
	}
	if b.contact.sid != sid || sent.After(b.contact.at) {
		b.contact = contact{sid, sent}
	}
}

// exec runs one request of the client and notes the server contact it proves.
// It returns the session the request ran on, or 0 if the session changed while
// it ran (so it is unknown).
func (b *Backend) exec(fn func() error) (int64, time.Time, error) {
	sid := b.conn.SessionID()
	sent := b.clock.Now()
	err := fn()
	if b.conn.SessionID() != sid {
		sid = 0
	}
	if sid != 0 && answered(err) {
		b.noteContact(sid, sent)
	}
	return sid, sent, err
}

// answered reports whether err (or success) came from the server.
func answered(err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, zk.ErrNoNode), errors.Is(err, zk.ErrNodeExists), errors.Is(err, zk.ErrBadVersion),
		errors.Is(err, zk.ErrNotEmpty), errors.Is(err, zk.ErrNoAuth), errors.Is(err, zk.ErrInvalidACL),
		errors.Is(err, zk.ErrNoChildrenForEphemerals):
		return true
	}
	return false
}

// do runs fn (requests of the client, which take no context) in a goroutine and
// waits for it, for ctx or for Close. An abandoned fn runs on: the client fails
// its requests when the connection drops or closes, and Close waits for it.
// Requests the client failed without sending them (zk.ErrNoServer: no server
// reachable yet, as during a reconnect) are retried until ctx ends.
func (b *Backend) do(ctx context.Context, fn func() error) error {
	for {
		if err := ctx.Err(); err != nil {
			return errors.Join(locking.ErrUnavailable, err)
		}
		done := make(chan error, 1)
		if !b.spawn(func() { done <- fn() }) {
			return locking.ErrClosed
		}
		var err error
		select {
		case err = <-done:
		case <-ctx.Done():
			return errors.Join(locking.ErrUnavailable, ctx.Err())
		case <-b.closing:
			return locking.ErrClosed
		}
		if !errors.Is(err, zk.ErrNoServer) {
			return err
		}
		if serr := sleep(ctx, b.closing, 50*time.Millisecond); serr != nil {
			return errors.Join(err, serr)
		}
	}
}

// ambiguous reports whether err is a connection failure after which a request's
// outcome is unknown; idempotent operations retry such requests within ctx.
func ambiguous(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrSessionExpired) ||
		errors.Is(err, zk.ErrSessionMoved)
}

// again waits a moment before an idempotent request is retried after an
// ambiguous failure; it reports false (and the error to return) when ctx or the
// backend has ended.
func (b *Backend) again(ctx context.Context, err error) (bool, error) {
	if serr := sleep(ctx, b.closing, 50*time.Millisecond); serr != nil {
		return false, errors.Join(err, serr)
	}
	return true, nil
}

// idem runs an idempotent request with do, retrying ambiguous failures.
func (b *Backend) idem(ctx context.Context, fn func() error) error {
	for {
		err := b.do(ctx, fn)
		if !ambiguous(err) {
			return err
		}
		if ok, aerr := b.again(ctx, err); !ok {
			return aerr
		}
	}
}

// retryable reports whether err is a connection-level failure.
func retryable(err error) bool {
	return errors.Is(err, locking.ErrUnavailable) || errors.Is(err, zk.ErrConnectionClosed) ||
		errors.Is(err, zk.ErrNoServer) || errors.Is(err, zk.ErrSessionExpired) ||
		errors.Is(err, zk.ErrSessionMoved) || errors.Is(err, zk.ErrClosing)
}

// wrap translates err into the locking sentinels.
func (b *Backend) wrap(op, what string, err error) error {
	if what != "" {
		op += " " + what
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, locking.ErrClosed):
		return fmt.Errorf("zklock: %s: %w", op, locking.ErrClosed)
	case errors.Is(err, locking.ErrUnavailable), errors.Is(err, locking.ErrInvalid),
		errors.Is(err, locking.ErrHeld), errors.Is(err, locking.ErrDone), errors.Is(err, locking.ErrNotHeld):
		return fmt.Errorf("zklock: %s: %w", op, err)
	case retryable(err):
		return fmt.Errorf("zklock: %s: %w: %w", op, locking.ErrUnavailable, err)
	case errors.Is(err, zk.ErrNoAuth):
		return fmt.Errorf("zklock: %s: %w", op, &ACLError{Path: b.root, Below: true, User: b.user, Err: err})
	case errors.Is(err, zk.ErrInvalidPath), errors.Is(err, zk.ErrBadArguments):
		return fmt.Errorf("zklock: %s: %w: %w", op, locking.ErrInvalid, err)
	default:
		return fmt.Errorf("zklock: %s: %w", op, err)
	}
}

// sleep waits d, or until ctx or the backend ends.
func sleep(ctx context.Context, closing <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return errors.Join(locking.ErrUnavailable, ctx.Err())
	case <-closing:
		return locking.ErrClosed
	}
}

// Paths.

func (b *Backend) scopePath(scope string) string { return b.root + "/" + scope }
func (b *Backend) lockPath(k locking.Key) string { return b.scopePath(k.Scope) + "/lock/" + k.Name }
func (b *Backend) ownPath(k locking.Key, owner string) string {
	return b.scopePath(k.Scope) + "/own/" + k.Name + "~" + owner
}

// heldPath is the node that exists exactly while some owner holds k (claimed by
// this version: see the package documentation). Names and owners never contain
// '~', so it cannot collide with an ownPath.
func (b *Backend) heldPath(k locking.Key) string { return b.scopePath(k.Scope) + "/own/" + k.Name }
func (b *Backend) fencePath(scope string) string { return b.scopePath(scope) + "/fence" }
func (b *Backend) recDir(scope string) string    { return b.scopePath(scope) + "/rec" }
func (b *Backend) waitDir(k locking.Key) string  { return b.scopePath(k.Scope) + "/wait/" + k.Name }
func (b *Backend) waitRoot(scope string) string  { return b.scopePath(scope) + "/wait" }
func (b *Backend) lockDir(scope string) string   { return b.scopePath(scope) + "/lock" }

// ensureScope creates the scope's nodes once per process.
func (b *Backend) ensureScope(ctx context.Context, scope string) error {
	b.mu.Lock()
	ok := b.scopes[scope]
	b.mu.Unlock()
	if ok {
		return nil
	}
	sp := b.scopePath(scope)
	var exists bool
	err := b.idem(ctx, func() error {
		var err error
		_, _, err = b.exec(func() error {
			exists, _, err = b.conn.Exists(b.fencePath(scope)) // created last
			return err
		})
		return err
	})
	if err != nil {
		return err
	}
	if !exists {
		for _, p := range []string{b.root, sp, sp + "/lock", sp + "/own", sp + "/rec", sp + "/wait", b.fencePath(scope)} {
			err := b.idem(ctx, func() error {
				_, _, err := b.exec(func() error {
					_, err := b.conn.Create(p, nil, zk.FlagPersistent, b.acl)
					return err
				})
				return err
			})
			if err != nil && !errors.Is(err, zk.ErrNodeExists) {
				return err
			}
		}
	}
	b.mu.Lock()
	if len(b.scopes) > 100000 {
		clear(b.scopes)
	}
	b.scopes[scope] = true
	b.mu.Unlock()
	return nil
}

// forgetScope drops scope from the cache after its nodes turned out missing.
func (b *Backend) forgetScope(scope string) {
	b.mu.Lock()
	delete(b.scopes, scope)
	b.mu.Unlock()
}

func validOwner(owner string) error {
	if owner == "" || len(owner) > 128 || owner == "." || owner == ".." {
		return fmt.Errorf("%w: owner id must be 1 to 128 bytes", locking.ErrInvalid)
	}
	for i := 0; i < len(owner); i++ {
		c := owner[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-:@+=", c) >= 0) {
			return fmt.Errorf("%w: owner id %q has %q at byte %d", locking.ErrInvalid, owner, c, i)
		}
	}
	return nil
}

var (
	_ locking.Backend  = (*Backend)(nil)
	_ locking.Acquirer = (*Backend)(nil)
)
