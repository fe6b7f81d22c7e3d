package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oncecron/oncecron/jobs"
	"gopkg.in/yaml.v3"
)

type item struct {
	Name string `yaml:"name"`
}

type Common struct {
	Dry bool `yaml:"dry"`
}

type recArgs struct {
	Currency string   `yaml:"currency"`
	Accounts []string `yaml:"accounts"`
	Limits   struct {
		Max int `yaml:"max"`
	} `yaml:"limits"`
	Items   []item           `yaml:"items"`
	ByName  map[string]item  `yaml:"by_name"`
	Timeout time.Duration    `yaml:"timeout"`
	Raw     yaml.Node        `yaml:"raw"`
	Skipped string           `yaml:"-"`
	Common  `yaml:",inline"` // dry
}

func (a recArgs) Validate() error {
	if a.Currency == "" {
		return errors.New("currency is required")
	}
	return nil
}

type plainArgs struct {
	N int
}

type extraArgs struct {
	Name  string         `yaml:"name"`
	Extra map[string]int `yaml:",inline"`
}

func nop[A any](context.Context, jobs.Run, A) error { return nil }

func TestDecode(t *testing.T) {
	strict := jobs.NewPlugin(nop[recArgs])
	plain := jobs.NewPlugin(nop[plainArgs])
	ptr := jobs.NewPlugin(nop[*plainArgs])
	mapped := jobs.NewPlugin(nop[map[string]int])
	extra := jobs.NewPlugin(nop[extraArgs])
	empty := jobs.NewPlugin(nop[struct{}])
	none := jobs.NoArgs(func(context.Context, jobs.Run) error { return nil })

	var ok recArgs
	ok.Currency, ok.Accounts, ok.Limits.Max, ok.Dry = "EUR", []string{"a", "b"}, 3, true
	ok.Items, ok.Timeout = []item{{"x"}}, 90*time.Second

	const noNode = "\x00" // stands for a nil *yaml.Node
	tests := []struct {
		name     string
		plugin   jobs.Plugin
		src      string
		want     any // checked when wantErr is empty
		wantErr  string
		wantLine int
	}{
		{name: "full", plugin: strict,
			src:  "currency: EUR\naccounts: [a, b]\nlimits: {max: 3}\nitems:\n  - name: x\ntimeout: 90s\ndry: true\n",
			want: ok},
		{name: "unknown field", plugin: strict, src: "currency: EUR\ncurency: USD\n",
			wantErr: "field curency not found in type jobs_test.recArgs", wantLine: 2},
		{name: "unknown nested field", plugin: strict, src: "currency: EUR\nlimits:\n  max: 3\n  min: 1\n",
			wantErr: "field min not found", wantLine: 4},
		{name: "unknown field in list item", plugin: strict, src: "currency: EUR\nitems:\n  - name: a\n  - nme: b\n",
			wantErr: "field nme not found in type jobs_test.item", wantLine: 4},
		{name: "unknown field in map value", plugin: strict, src: "currency: EUR\nby_name:\n  a: {name: a, size: 1}\n",
			wantErr: "field size not found", wantLine: 3},
		{name: "skipped field is unknown", plugin: strict, src: "currency: EUR\nskipped: x\n",
			wantErr: "field skipped not found", wantLine: 2},
		{name: "merge key", plugin: strict, src: "currency: EUR\nitems:\n  - <<: {name: a}\n",
			want: recArgs{Currency: "EUR", Items: []item{{"a"}}}},
		{name: "unknown field through merge", plugin: strict, src: "currency: EUR\nitems:\n  - <<: {nme: a}\n",
			wantErr: "field nme not found", wantLine: 3},
		{name: "unknown field through merged list", plugin: strict, src: "currency: EUR\nitems:\n  - <<: [{name: a}, {nme: b}]\n",
			wantErr: "field nme not found", wantLine: 3},
		{name: "unknown field through alias", plugin: strict, src: "currency: EUR\nraw: &x {nme: a}\nitems: [*x]\n",
			wantErr: "field nme not found", wantLine: 2},
		{name: "type error", plugin: strict, src: "currency: EUR\nlimits:\n  max: lots\n",
			wantErr: "cannot unmarshal !!str `lots` into int", wantLine: 3},
		{name: "not a mapping", plugin: strict, src: "- EUR\n",
			wantErr: "cannot unmarshal !!seq into jobs_test.recArgs", wantLine: 1},
		{name: "validator", plugin: strict, src: "\naccounts: [a]\n",
			wantErr: "currency is required", wantLine: 2},
		{name: "validator on nil args", plugin: strict, src: noNode,
			wantErr: "currency is required", wantLine: 0},
		{name: "default field name", plugin: plain, src: "n: 3\n", want: plainArgs{N: 3}},
		{name: "nil node", plugin: plain, src: noNode, want: plainArgs{}},
		{name: "empty document", plugin: plain, src: "", want: plainArgs{}},
		{name: "null", plugin: plain, src: "~\n", want: plainArgs{}},
		{name: "pointer args", plugin: ptr, src: "n: 4\n", want: &plainArgs{N: 4}},
		{name: "pointer args unknown field", plugin: ptr, src: "m: 4\n", wantErr: "field m not found", wantLine: 1},
		{name: "map args", plugin: mapped, src: "a: 1\nb: 2\n", want: map[string]int{"a": 1, "b": 2}},
		{name: "map args type error", plugin: mapped, src: "a: 1\nb: two\n", wantErr: "cannot unmarshal", wantLine: 2},
		{name: "inline map", plugin: extra, src: "name: n\nx: 1\n", want: extraArgs{Name: "n", Extra: map[string]int{"x": 1}}},
		{name: "struct{} nil", plugin: empty, src: noNode, want: struct{}{}},
		{name: "struct{} empty mapping", plugin: empty, src: "{}\n", want: struct{}{}},
		{name: "struct{} with args", plugin: empty, src: "\nx: 1\n", wantErr: "takes no args", wantLine: 2},
		{name: "no args null", plugin: none, src: "~\n", want: struct{}{}},
		{name: "no args scalar", plugin: none, src: "5\n", wantErr: "takes no args", wantLine: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n *yaml.Node
			if tt.src != noNode {
				n = doc(t, tt.src)
			}
			got, err := tt.plugin.Decode(n)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("Decode = %#v, want %#v", got, tt.want)
				}
				return
			}
			var ae *jobs.ArgsError
			if !errors.As(err, &ae) {
				t.Fatalf("Decode error = %v (%T), want *ArgsError", err, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || ae.Line != tt.wantLine {
				t.Fatalf("Decode error = %q (line %d), want %q at line %d", err, ae.Line, tt.wantErr, tt.wantLine)
			}
		})
	}
}

func TestDecodeRawNode(t *testing.T) {
	got, err := jobs.NewPlugin(nop[recArgs]).Decode(doc(t, "currency: EUR\nraw: {any: [thing]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	raw := got.(recArgs).Raw
	if raw.Kind != yaml.MappingNode || raw.Content[0].Value != "any" || raw.Line != 2 {
		t.Fatalf("Raw = %+v", raw)
	}
}

// TestDecodeLineInConfig checks that lines count from the top of the whole
// config file, not from the args node.
func TestDecodeLineInConfig(t *testing.T) {
	cfg := doc(t, `jobs:
  - name: settle
    func: test.reconcile
    args:
      currency: EUR
      acounts: [a]
`)
	args := cfg.Content[0].Content[1].Content[0].Content[5]
	r := jobs.NewRegistry()
	if err := jobs.RegisterTo(r, "test.reconcile", nop[recArgs]); err != nil {
		t.Fatal(err)
	}
	err := r.CheckFunc("test.reconcile", args)
	want := `jobs: func "test.reconcile": args: line 6: field acounts not found in type jobs_test.recArgs`
	if err == nil || err.Error() != want {
		t.Fatalf("CheckFunc = %v, want %s", err, want)
	}
}

func TestRegistryAdd(t *testing.T) {
	p := jobs.NoArgs(func(context.Context, jobs.Run) error { return nil })
	tests := []struct {
		name    string
		plugin  jobs.Plugin
		wantErr error
	}{
		{"payments.reconcile", p, nil},
		{"A-z_0.9", p, nil},
		{"", p, jobs.ErrInvalidName},
		{"has space", p, jobs.ErrInvalidName},
		{"slash/name", p, jobs.ErrInvalidName},
		{"ünï", p, jobs.ErrInvalidName},
		{"nil.plugin", nil, nil},
		{"typed.nil.plugin", (*nilPlugin)(nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r jobs.Registry // the zero value is ready to use
			err := r.Add(tt.name, tt.plugin)
			switch {
			case tt.plugin == nil || strings.HasPrefix(tt.name, "typed"):
				if err == nil {
					t.Fatal("Add(nil plugin) succeeded")
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Add = %v, want %v", err, tt.wantErr)
				}
			default:
				if err != nil {
					t.Fatalf("Add = %v", err)
				}
				if err := r.Add(tt.name, tt.plugin); !errors.Is(err, jobs.ErrDuplicate) {
					t.Fatalf("second Add = %v, want ErrDuplicate", err)
				}
				if got, ok := r.Lookup(tt.name); !ok || got != tt.plugin {
					t.Fatalf("Lookup = %v, %v", got, ok)
				}
			}
		})
	}
}

type nilPlugin struct{}

func (*nilPlugin) Decode(*yaml.Node) (any, error)       { return nil, nil }
func (*nilPlugin) Call(context.Context, jobs.Run) error { return nil }

func TestCheckFunc(t *testing.T) {
	r := jobs.NewRegistry()
	if err := r.CheckFunc("a", nil); !errors.Is(err, jobs.ErrUnknownFunc) ||
		!strings.Contains(err.Error(), "(registered: none)") {
		t.Fatalf("CheckFunc on empty registry = %v", err)
	}
	for _, name := range []string{"b.two", "a.one"} {
		if err := jobs.RegisterTo(r, name, nop[plainArgs]); err != nil {
			t.Fatal(err)
		}
	}
	if err := jobs.RegisterTo[plainArgs](r, "nil.fn", nil); err == nil {
		t.Fatal("RegisterTo(nil) succeeded")
	}
	tests := []struct {
		name, fn, args string
		wantErr        string
	}{
		{"ok", "a.one", "n: 1", ""},
		{"ok nil args", "b.two", "", ""},
		{"unknown", "c.three", "", `jobs: unknown func "c.three" (registered: a.one, b.two)`},
		{"bad args", "a.one", "m: 1", `jobs: func "a.one": args: line 1: field m not found in type jobs_test.plainArgs`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.CheckFunc(tt.fn, doc(t, tt.args))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckFunc = %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("CheckFunc = %v, want %s", err, tt.wantErr)
			}
		})
	}
	if got := r.Names(); !reflect.DeepEqual(got, []string{"a.one", "b.two"}) {
		t.Fatalf("Names = %v", got)
	}
}

var defaultRuns atomic.Int64 // Default is process-wide: -count=N must not collide

func TestRegisterDefault(t *testing.T) {
	name := fmt.Sprintf("jobs_test.default-%d", defaultRuns.Add(1))
	var got plainArgs
	jobs.Register(name, func(_ context.Context, _ jobs.Run, a plainArgs) error { got = a; return nil })
	p, ok := jobs.Default().Lookup(name)
	if !ok {
		t.Fatal("Register did not add to Default")
	}
	if err := p.Call(context.Background(), jobs.Run{Args: plainArgs{N: 7}}); err != nil || got.N != 7 {
		t.Fatalf("Call = %v, got %+v", err, got)
	}
	for _, bad := range []string{name, "bad name"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", bad)
				}
			}()
			jobs.Register(bad, nop[plainArgs])
		}()
	}
}

func TestCall(t *testing.T) {
	boom := errors.New("boom")
	var seen plainArgs
	tests := []struct {
		name    string
		fn      func(context.Context, jobs.Run, plainArgs) error
		args    any
		check   func(t *testing.T, err error)
		wantArg plainArgs
	}{
		{name: "args passed", args: plainArgs{N: 2}, wantArg: plainArgs{N: 2},
			fn: func(_ context.Context, _ jobs.Run, a plainArgs) error { seen = a; return nil }},
		{name: "nil args are zero", args: nil,
			fn: func(_ context.Context, _ jobs.Run, a plainArgs) error { seen = a; return nil }},
		{name: "error returned", fn: func(context.Context, jobs.Run, plainArgs) error { return boom },
			check: func(t *testing.T, err error) {
				if !errors.Is(err, boom) {
					t.Fatalf("err = %v", err)
				}
			}},
		{name: "wrong args type", args: "n: 2", fn: nop[plainArgs],
			check: func(t *testing.T, err error) {
				if err == nil || !strings.Contains(err.Error(), "args are string, want jobs_test.plainArgs") {
					t.Fatalf("err = %v", err)
				}
			}},
		{name: "panic value", fn: func(context.Context, jobs.Run, plainArgs) error { panic("oops") },
			check: func(t *testing.T, err error) {
				var pe *jobs.PanicError
				if !errors.As(err, &pe) || pe.Value != "oops" || pe.Job != "j" {
					t.Fatalf("err = %#v", err)
				}
				if !strings.Contains(string(pe.Stack), "registry_test.go") {
					t.Fatalf("stack does not show the panicking function:\n%s", pe.Stack)
				}
				if err.Error() != `jobs: job "j" panicked: oops` {
					t.Fatalf("Error() = %q", err)
				}
			}},
		{name: "panic error", fn: func(context.Context, jobs.Run, plainArgs) error { panic(boom) },
			check: func(t *testing.T, err error) {
				if !errors.Is(err, boom) {
					t.Fatalf("err = %v, want it to wrap the panic's error", err)
				}
			}},
		{name: "panic nil", fn: func(context.Context, jobs.Run, plainArgs) error { panic(nil) },
			check: func(t *testing.T, err error) {
				var pe *jobs.PanicError
				if !errors.As(err, &pe) {
					t.Fatalf("err = %v", err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen = plainArgs{}
			err := jobs.NewPlugin(tt.fn).Call(context.Background(), jobs.Run{Job: "j", Args: tt.args})
			if tt.check != nil {
				tt.check(t, err)
				return
			}
			if err != nil || seen != tt.wantArg {
				t.Fatalf("Call = %v, saw %+v, want %+v", err, seen, tt.wantArg)
			}
		})
	}
}

type panicky struct{ *nilPlugin }

func (panicky) Call(context.Context, jobs.Run) error { panic(fmt.Sprint("bug")) }

func TestSafeCall(t *testing.T) {
	err := jobs.SafeCall(context.Background(), panicky{}, jobs.Run{Job: "j"})
	var pe *jobs.PanicError
	if !errors.As(err, &pe) || pe.Value != "bug" {
		t.Fatalf("SafeCall = %v", err)
	}
	ok := jobs.NoArgs(func(context.Context, jobs.Run) error { return nil })
	if err := jobs.SafeCall(context.Background(), ok, jobs.Run{}); err != nil {
		t.Fatalf("SafeCall = %v", err)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	r := jobs.NewRegistry()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			name := fmt.Sprintf("f.%d", i)
			if err := jobs.RegisterTo(r, name, nop[plainArgs]); err != nil {
				t.Error(err)
			}
			if _, ok := r.Lookup(name); !ok {
				t.Errorf("%s not found", name)
			}
			_ = r.Names()
			_ = r.CheckFunc(name, nil)
		})
	}
	wg.Wait()
	if n := len(r.Names()); n != 8 {
		t.Fatalf("%d names, want 8", n)
	}
}
