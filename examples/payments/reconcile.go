package payments

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/oncecron/oncecron/jobs"
	"go.uber.org/zap"
)

// FuncName is the name under which Register adds the reconciliation.
const FuncName = "payments.reconcile"

// Args are the YAML args of "payments.reconcile".
type Args struct {
	// Currency is the ISO 4217 code to settle, e.g. "EUR". Required.
	Currency string `yaml:"currency"`
	// Accounts limits the settlement to these accounts; empty means every
	// account with entries in Currency.
	Accounts []string `yaml:"accounts"`
}

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

// Validate checks the args when the config is loaded.
func (a Args) Validate() error {
	if !currencyRE.MatchString(a.Currency) {
		return fmt.Errorf("currency %q: want a 3-letter ISO 4217 code such as EUR", a.Currency)
	}
	seen := map[string]bool{}
	for _, acct := range a.Accounts {
		if acct == "" || seen[acct] {
			return fmt.Errorf("accounts: empty or repeated account %q", acct)
		}
		seen[acct] = true
	}
	return nil
}

// Reconciler is the "payments.reconcile" job bound to a Ledger.
type Reconciler struct {
	// Ledger is the store settlements are posted to.
	Ledger *Ledger

	// beforeCommit, if set, runs between the draft and the commit. Tests use
	// it to stand for a runner that stalls (a GC pause) at the worst moment.
	beforeCommit func(ctx context.Context)
}

// Reconcile settles args.Currency up to run.Scheduled: it drafts the
// settlement from the ledger, then commits it keyed by (run.Job,
// run.Scheduled) and fenced by run.Token. A tick already settled is not
// settled twice; a runner whose token has been superseded gets an error
// wrapping ErrStaleToken and writes nothing.
func (rc *Reconciler) Reconcile(ctx context.Context, run jobs.Run, args Args) error {
	log := run.Log()
	draft := rc.Ledger.Draft(args.Currency, args.Accounts, run.Scheduled)
	draft.Job, draft.Token = run.Job, run.Token

	if rc.beforeCommit != nil {
		rc.beforeCommit(ctx)
	}
	// Checking ctx here is cheap and polite, but it cannot replace the fence:
	// a runner can stall right after this check.
	if ctx.Err() != nil {
		return fmt.Errorf("payments: reconcile: %w", context.Cause(ctx))
	}

	s, created, err := rc.Ledger.Commit(draft)
	switch {
	case errors.Is(err, ErrStaleToken):
		log.Warn("settlement refused: a newer runner has taken over", zap.Error(err))
		return err
	case err != nil:
		return err
	case !created:
		log.Info("tick already settled", zap.Uint64("settled_by_token", s.Token), zap.Int64("total", s.Total))
		return nil
	}
	log.Info("settlement posted",
		zap.String("currency", s.Currency),
		zap.Strings("accounts", accounts(s.Totals)),
		zap.Int("entries", len(s.EntryIDs)),
		zap.Int64("total", s.Total))
	return nil
}

// Register adds "payments.reconcile", posting to l, to r. Nothing is
// registered globally: call it from main (with jobs.Default() to use it with
// the scheduler's entry point) or from a test with a registry of its own.
func Register(r *jobs.Registry, l *Ledger) error {
	if l == nil {
		return errors.New("payments: Register: nil ledger")
	}
	rc := &Reconciler{Ledger: l}
	return jobs.RegisterTo(r, FuncName, rc.Reconcile)
}
