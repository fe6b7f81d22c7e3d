package locktest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/oncecron/oncecron/locking"
)

// The recorded operations of the race tests are checked for linearizability
// against a lock model with porcupine (the checker etcd's robustness tests use):
// a key is free, held by one owner, or done.

type opKind int

const (
	opClaim opKind = iota
	opComplete
	opRelease
)

type outcome int

const (
	outOK outcome = iota
	outHeld
	outDone
)

type lockInput struct {
	key   locking.Key
	op    opKind
	owner string // the winner's owner id; empty for a claim that lost
}

type lockState struct {
	holder string
	done   bool
}

var lockModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[locking.Key][]porcupine.Operation{}
		var order []locking.Key
		for _, op := range history {
			k := op.Input.(lockInput).key
			if _, ok := byKey[k]; !ok {
				order = append(order, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, k := range order {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return lockState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(lockState), input.(lockInput), output.(outcome)
		switch in.op {
		case opClaim:
			switch out {
			case outOK:
				return !s.done && s.holder == "", lockState{holder: in.owner}
			case outHeld:
				return !s.done && s.holder != "", s
			case outDone:
				return s.done, s
			}
		case opComplete:
			return out == outOK && s.holder == in.owner, lockState{done: true}
		case opRelease:
			return out == outOK && s.holder == in.owner, lockState{}
		}
		return false, s
	},
	Equal: func(a, b any) bool { return a.(lockState) == b.(lockState) },
	DescribeOperation: func(input, output any) string {
		in := input.(lockInput)
		return fmt.Sprintf("%v %s by %.8s -> %v", in.op, in.key, in.owner, output)
	},
}

func (k opKind) String() string { return [...]string{"claim", "complete", "release"}[k] }

func (o outcome) String() string { return [...]string{"ok", "held", "done"}[o] }

// recorder collects a history of operations with invoke and return times.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

// now returns the monotonic time since the recorder started, in nanoseconds.
func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) add(client int, key locking.Key, op opKind, owner string, call int64, out outcome) {
	ret := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{
		ClientId: client, Input: lockInput{key: key, op: op, owner: owner},
		Call: call, Output: out, Return: ret,
	})
}

func (r *recorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	res := porcupine.CheckOperationsTimeout(lockModel, r.ops, 30*time.Second)
	switch res {
	case porcupine.Ok:
		t.Logf("%d operations linearizable against the lock model", len(r.ops))
	case porcupine.Unknown:
		t.Errorf("linearizability check of %d operations timed out", len(r.ops))
	default:
		t.Errorf("history of %d operations is not linearizable against the lock model", len(r.ops))
	}
}
