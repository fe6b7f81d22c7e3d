package payments

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"
)

// Errors of Ledger.Commit. They are wrapped: test with errors.Is.
var (
	// ErrStaleToken is returned when a write carries a lower token than one
	// the ledger has already accepted for the job: its runner has lost its
	// lease to a newer one.
	ErrStaleToken = errors.New("payments: stale fencing token")
	// ErrConflict is returned when some of the entries a Settlement was
	// drafted from have been settled by another runner since: draft it again.
	ErrConflict = errors.New("payments: settlement drafted from stale data")
)

// Entry is one booked payment, the input that reconciliation sums.
type Entry struct {
	// Account is the account the money moved on.
	Account string
	// Currency is an ISO 4217 code such as "EUR".
	Currency string
	// Amount is in minor units (cents); negative for debits.
	Amount int64
	// At is when the payment was booked.
	At time.Time
}

// Settlement is what one reconciliation run posts: the sums per account of
// the entries booked before Scheduled that no earlier settlement covered.
type Settlement struct {
	// Job and Scheduled are the idempotency key: one settlement per tick.
	Job       string
	Scheduled time.Time
	// Token is the fencing token of the run that posted it.
	Token uint64
	// Currency is the currency settled.
	Currency string
	// EntryIDs are the IDs (see Ledger.Book) of the entries summed: what the
	// draft was based on.
	EntryIDs []int
	// Totals holds the sum per account, in minor units.
	Totals map[string]int64
	// Total is the sum of Totals.
	Total int64
}

func (s Settlement) clone() Settlement {
	s.EntryIDs = slices.Clone(s.EntryIDs)
	s.Totals = maps.Clone(s.Totals)
	return s
}

type tickKey struct {
	job  string
	unix int64
	nano int
}

func keyOf(job string, at time.Time) tickKey {
	return tickKey{job: job, unix: at.Unix(), nano: at.Nanosecond()}
}

// Ledger is an in-memory store of entries and settlements. Each method is one
// transaction, under one mutex; Commit is where the fencing token and the
// idempotency key are checked, in the same critical section as the write.
// The zero value is not usable; call NewLedger.
type Ledger struct {
	mu          sync.Mutex
	entries     []Entry
	settled     []bool                 // settled[id]: entry id is covered by a settlement
	fences      map[string]uint64      // job -> highest token accepted
	settlements map[tickKey]Settlement // (job, scheduled) -> settlement
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{
		fences:      map[string]uint64{},
		settlements: map[tickKey]Settlement{},
	}
}

// Book records a payment entry and returns its ID.
func (l *Ledger) Book(e Entry) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
	l.settled = append(l.settled, false)
	return len(l.entries) - 1
}

// Draft reads the ledger and returns the settlement of currency for the
// given accounts (all accounts with entries in currency if none are given):
// the entries booked before scheduled that no settlement covers yet. It
// writes nothing. Job and Token are left for the caller to fill in before
// Commit.
func (l *Ledger) Draft(currency string, accounts []string, scheduled time.Time) Settlement {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Settlement{Scheduled: scheduled.UTC(), Currency: currency, Totals: map[string]int64{}}
	for _, a := range accounts {
		s.Totals[a] = 0
	}
	for id, e := range l.entries {
		if e.Currency != currency || l.settled[id] || !e.At.Before(scheduled) {
			continue
		}
		if _, listed := s.Totals[e.Account]; len(accounts) > 0 && !listed {
			continue
		}
		s.Totals[e.Account] += e.Amount
		s.Total += e.Amount
		s.EntryIDs = append(s.EntryIDs, id)
	}
	return s
}

// Commit posts s in one transaction:
//
//  1. the fence: if s.Token is lower than the highest token accepted for
//     s.Job, nothing is written and the error wraps ErrStaleToken;
//  2. the idempotency key: if (s.Job, s.Scheduled) is already settled,
//     nothing is written and the stored settlement is returned with
//     created=false;
//  3. the draft's basis: if any of s.EntryIDs has been settled since s was
//     drafted, nothing is written and the error wraps ErrConflict;
//  4. the write: the settlement is stored, its entries are marked settled,
//     and s.Token becomes the job's fence.
func (l *Ledger) Commit(s Settlement) (stored Settlement, created bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if hi, ok := l.fences[s.Job]; ok && s.Token < hi {
		return Settlement{}, false, fmt.Errorf("%w: job %q token %d, ledger has accepted %d", ErrStaleToken, s.Job, s.Token, hi)
	}
	k := keyOf(s.Job, s.Scheduled)
	if prev, ok := l.settlements[k]; ok {
		l.fences[s.Job] = s.Token
		return prev.clone(), false, nil
	}
	for _, id := range s.EntryIDs {
		if id < 0 || id >= len(l.entries) {
			return Settlement{}, false, fmt.Errorf("payments: settlement of job %q: no entry %d", s.Job, id)
		}
		if l.settled[id] {
			return Settlement{}, false, fmt.Errorf("%w: entry %d has been settled since the draft", ErrConflict, id)
		}
	}
	s = s.clone()
	s.Scheduled = s.Scheduled.UTC()
	for _, id := range s.EntryIDs {
		l.settled[id] = true
	}
	l.settlements[k] = s
	l.fences[s.Job] = s.Token
	return s.clone(), true, nil
}

// Settlement returns the settlement of the tick (job, scheduled), if any.
func (l *Ledger) Settlement(job string, scheduled time.Time) (Settlement, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.settlements[keyOf(job, scheduled)]
	return s.clone(), ok
}

// Settlements returns every settlement, ordered by job and scheduled instant.
func (l *Ledger) Settlements() []Settlement {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Settlement, 0, len(l.settlements))
	for _, s := range l.settlements {
		out = append(out, s.clone())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Job != out[j].Job {
			return out[i].Job < out[j].Job
		}
		return out[i].Scheduled.Before(out[j].Scheduled)
	})
	return out
}

// Fence returns the highest token the ledger has accepted for job (0 if
// none).
func (l *Ledger) Fence(job string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fences[job]
}

// accounts returns the sorted keys of m, for stable log output.
func accounts[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
