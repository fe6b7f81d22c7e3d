package payments

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oncecron/oncecron/jobs"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"gopkg.in/yaml.v3"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	t0 = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Hour) // a tick
	t2 = t1.Add(time.Hour) // the next tick
)

func newLogger(t *testing.T) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core)), logs
}

func seeded() *Ledger {
	l := NewLedger()
	l.Book(Entry{Account: "acme", Currency: "EUR", Amount: 1000, At: t0.Add(10 * time.Minute)})
	l.Book(Entry{Account: "acme", Currency: "EUR", Amount: -250, At: t0.Add(20 * time.Minute)})
	l.Book(Entry{Account: "zeta", Currency: "EUR", Amount: 500, At: t0.Add(30 * time.Minute)})
	l.Book(Entry{Account: "zeta", Currency: "USD", Amount: 999, At: t0.Add(30 * time.Minute)})
	return l
}

func run(t *testing.T, log *zap.Logger, token uint64, at time.Time) jobs.Run {
	t.Helper()
	return jobs.Run{Job: "settle-eur", Scheduled: at, Token: token, Attempt: 1, Replica: "r"}.WithLogger(log)
}

// TestStaleRunnerRefused is the scenario fencing exists for: runner 5 drafts
// its settlement and stalls; its lease expires; runner 6 takes over and
// commits; runner 5 wakes up and tries to commit. Its write must be refused
// and the ledger must hold exactly what runner 6 wrote.
func TestStaleRunnerRefused(t *testing.T) {
	tests := []struct {
		name        string
		staleTick   time.Time
		newerTick   time.Time
		lateBooking bool // a payment is booked while runner 5 is stalled
	}{
		{name: "takeover of the same tick", staleTick: t1, newerTick: t1},
		{name: "takeover of the same tick, ledger moved on", staleTick: t1, newerTick: t1, lateBooking: true},
		{name: "next tick", staleTick: t1, newerTick: t2, lateBooking: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := seeded()
			log, logs := newLogger(t)
			stalled, resume := make(chan struct{}), make(chan struct{})
			stale := &Reconciler{Ledger: l, beforeCommit: func(context.Context) {
				close(stalled)
				<-resume // the "GC pause"
			}}
			newer := &Reconciler{Ledger: l}
			args := Args{Currency: "EUR"}

			var staleErr error
			var wg sync.WaitGroup
			wg.Go(func() { staleErr = stale.Reconcile(context.Background(), run(t, log, 5, tt.staleTick), args) })
			<-stalled
			if tt.lateBooking {
				l.Book(Entry{Account: "acme", Currency: "EUR", Amount: 40, At: t0.Add(50 * time.Minute)})
			}
			if err := newer.Reconcile(context.Background(), run(t, log, 6, tt.newerTick), args); err != nil {
				t.Fatalf("runner 6: %v", err)
			}
			want := l.Settlements()
			close(resume)
			wg.Wait()

			if !errors.Is(staleErr, ErrStaleToken) {
				t.Fatalf("runner 5: %v, want ErrStaleToken", staleErr)
			}
			if got := l.Settlements(); !reflect.DeepEqual(got, want) || len(got) != 1 || got[0].Token != 6 {
				t.Fatalf("settlements after runner 5 = %+v, want runner 6's %+v", got, want)
			}
			wantTotal := int64(1250)
			if tt.lateBooking {
				wantTotal += 40
			}
			if got := want[0].Total; got != wantTotal {
				t.Fatalf("total = %d, want %d", got, wantTotal)
			}
			if l.Fence("settle-eur") != 6 {
				t.Fatalf("fence = %d, want 6", l.Fence("settle-eur"))
			}
			if logs.FilterMessage("settlement refused: a newer runner has taken over").FilterField(zap.Uint64("token", 5)).Len() != 1 {
				t.Fatal("runner 5 did not log the refusal with its token")
			}
		})
	}
}

func TestSameTokenIdempotent(t *testing.T) {
	l := seeded()
	log, logs := newLogger(t)
	rc := &Reconciler{Ledger: l}
	args := Args{Currency: "EUR", Accounts: []string{"acme", "zeta"}}
	for i := range 3 {
		if i == 1 {
			// Booked between the posts: a re-post must not pick it up.
			l.Book(Entry{Account: "acme", Currency: "EUR", Amount: 7, At: t0.Add(59 * time.Minute)})
		}
		if err := rc.Reconcile(context.Background(), run(t, log, 9, t1), args); err != nil {
			t.Fatalf("post %d: %v", i+1, err)
		}
	}
	got := l.Settlements()
	if len(got) != 1 {
		t.Fatalf("%d settlements, want 1: %+v", len(got), got)
	}
	want := map[string]int64{"acme": 750, "zeta": 500}
	if !reflect.DeepEqual(got[0].Totals, want) || got[0].Total != 1250 || len(got[0].EntryIDs) != 3 {
		t.Fatalf("settlement = %+v, want totals %v", got[0], want)
	}
	if n := logs.FilterMessage("tick already settled").Len(); n != 2 {
		t.Fatalf("%d re-posts logged, want 2", n)
	}
	// The next tick settles what came after, once.
	if err := rc.Reconcile(context.Background(), run(t, log, 10, t2), args); err != nil {
		t.Fatal(err)
	}
	if s, ok := l.Settlement("settle-eur", t2); !ok || s.Total != 7 {
		t.Fatalf("next tick = %+v, %v, want total 7", s, ok)
	}
}

func TestLedgerCommit(t *testing.T) {
	l := seeded()
	draft := func(job string, token uint64, at time.Time) Settlement {
		s := l.Draft("EUR", nil, at)
		s.Job, s.Token = job, token
		return s
	}
	steps := []struct {
		name        string
		job         string
		token       uint64
		at          time.Time
		wantErr     error
		wantCreated bool
	}{
		{"first post", "a", 5, t1, nil, true},
		{"lower token refused", "a", 4, t2, ErrStaleToken, false},
		{"equal token accepted", "a", 5, t2, nil, true},
		{"replay of a settled tick", "a", 7, t1, nil, false},
		{"fence raised by the replay", "a", 6, t2.Add(time.Hour), ErrStaleToken, false},
		{"tokens are per job", "b", 1, t1, nil, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			_, created, err := l.Commit(draft(st.job, st.token, st.at))
			if !errors.Is(err, st.wantErr) || (st.wantErr == nil && err != nil) || created != st.wantCreated {
				t.Fatalf("Commit = created %v, %v; want created %v, %v", created, err, st.wantCreated, st.wantErr)
			}
		})
	}
}

// TestConflict: the older runner commits between the newer runner's draft and
// commit (the fence allows it: it was first). The newer draft is then based on
// stale data and must not double-count.
func TestConflict(t *testing.T) {
	l := seeded()
	newer := l.Draft("EUR", nil, t2)
	newer.Job, newer.Token = "settle-eur", 6
	older := l.Draft("EUR", nil, t1)
	older.Job, older.Token = "settle-eur", 5
	if _, _, err := l.Commit(older); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Commit(newer); !errors.Is(err, ErrConflict) {
		t.Fatalf("Commit = %v, want ErrConflict", err)
	}
	// A retry drafts again and settles nothing twice.
	log, _ := newLogger(t)
	l.Book(Entry{Account: "zeta", Currency: "EUR", Amount: 3, At: t1.Add(time.Minute)})
	rc := &Reconciler{Ledger: l}
	if err := rc.Reconcile(context.Background(), run(t, log, 6, t2), Args{Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if s, _ := l.Settlement("settle-eur", t2); s.Total != 3 {
		t.Fatalf("retried settlement total = %d, want 3", s.Total)
	}
}

func TestReconcileCancelled(t *testing.T) {
	l := seeded()
	log, _ := newLogger(t)
	lost := errors.New("lease lost")
	ctx, cancel := context.WithCancelCause(context.Background())
	rc := &Reconciler{Ledger: l, beforeCommit: func(context.Context) { cancel(lost) }}
	if err := rc.Reconcile(ctx, run(t, log, 1, t1), Args{Currency: "EUR"}); !errors.Is(err, lost) {
		t.Fatalf("Reconcile = %v, want the cause", err)
	}
	if len(l.Settlements()) != 0 {
		t.Fatal("a cancelled run posted a settlement")
	}
}

func TestRegister(t *testing.T) {
	r := jobs.NewRegistry()
	l := seeded()
	if err := Register(r, l); err != nil {
		t.Fatal(err)
	}
	if err := Register(r, l); !errors.Is(err, jobs.ErrDuplicate) {
		t.Fatalf("second Register = %v", err)
	}
	if err := Register(jobs.NewRegistry(), nil); err == nil {
		t.Fatal("Register(nil ledger) succeeded")
	}
	tests := []struct {
		name, args, wantErr string
	}{
		{"ok", "currency: EUR\naccounts: [acme]\n", ""},
		{"missing currency", "accounts: [acme]\n", `line 1: currency "": want a 3-letter`},
		{"lower-case currency", "currency: eur\n", `line 1: currency "eur"`},
		{"repeated account", "currency: EUR\naccounts: [a, a]\n", "repeated account"},
		{"unknown field", "currency: EUR\naccount: [a]\n", "line 2: field account not found"},
		{"no args", "", `currency ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(tt.args), &n); err != nil {
				t.Fatal(err)
			}
			err := r.CheckFunc(FuncName, &n)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckFunc = %v, want %q", err, tt.wantErr)
			}
		})
	}

	// End to end through the registry, as the scheduler calls it.
	var n yaml.Node
	_ = yaml.Unmarshal([]byte("currency: EUR\naccounts: [zeta]\n"), &n)
	p, args, err := r.Decode(FuncName, &n)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := newLogger(t)
	rn := run(t, log, 3, t1)
	rn.Args = args
	if err := jobs.SafeCall(context.Background(), p, rn); err != nil {
		t.Fatal(err)
	}
	if s, ok := l.Settlement("settle-eur", t1); !ok || !reflect.DeepEqual(s.Totals, map[string]int64{"zeta": 500}) {
		t.Fatalf("settlement = %+v, %v", s, ok)
	}
}
