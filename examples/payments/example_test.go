package payments_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oncecron/oncecron/examples/payments"
	"github.com/oncecron/oncecron/jobs"
	"gopkg.in/yaml.v3"
)

// Two runners of the same tick: runner 6 took the tick over from runner 5,
// which was stalled. When runner 5 finally posts, the ledger refuses it.
func ExampleRegister() {
	ledger := payments.NewLedger()
	tick := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)
	ledger.Book(payments.Entry{Account: "acme", Currency: "EUR", Amount: 1250, At: tick.Add(-time.Hour)})

	r := jobs.NewRegistry()
	if err := payments.Register(r, ledger); err != nil {
		panic(err)
	}
	var node yaml.Node
	_ = yaml.Unmarshal([]byte("currency: EUR"), &node)
	p, args, err := r.Decode(payments.FuncName, &node)
	if err != nil {
		panic(err)
	}

	post := func(token uint64) error {
		run := jobs.Run{Job: "settle-eur", Scheduled: tick, Token: token, Attempt: 1, Args: args}
		return jobs.SafeCall(context.Background(), p, run)
	}
	fmt.Println("token 6:", post(6))
	fmt.Println("token 6 again:", post(6))
	err = post(5)
	fmt.Println("token 5 refused:", errors.Is(err, payments.ErrStaleToken))
	for _, s := range ledger.Settlements() {
		fmt.Printf("%s %s token %d total %d\n", s.Job, s.Scheduled.Format(time.RFC3339), s.Token, s.Total)
	}
	// Output:
	// token 6: <nil>
	// token 6 again: <nil>
	// token 5 refused: true
	// settle-eur 2026-11-25T02:00:00Z token 6 total 1250
}

func ExampleLedger_Commit() {
	ledger := payments.NewLedger()
	at := time.Date(2026, 11, 25, 2, 0, 0, 0, time.UTC)

	s := ledger.Draft("EUR", []string{"acme"}, at)
	s.Job, s.Token = "settle-eur", 8
	_, created, err := ledger.Commit(s)
	fmt.Println(created, err)

	s.Token = 7 // a runner that lost its lease
	_, _, err = ledger.Commit(s)
	fmt.Println(err)
	// Output:
	// true <nil>
	// payments: stale fencing token: job "settle-eur" token 7, ledger has accepted 8
}
