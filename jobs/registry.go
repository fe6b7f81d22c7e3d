package jobs

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Errors returned by the registry. They are wrapped: test with errors.Is.
var (
	// ErrInvalidName reports a func name outside [A-Za-z0-9._-]+.
	ErrInvalidName = errors.New("jobs: invalid func name")
	// ErrDuplicate reports a second registration of a func name.
	ErrDuplicate = errors.New("jobs: func already registered")
	// ErrUnknownFunc reports a func name nobody registered.
	ErrUnknownFunc = errors.New("jobs: unknown func")
)

// Plugin is a job function as the scheduler sees it: a YAML args decoder and a
// call. NewPlugin and NoArgs build one from an ordinary Go function; most code
// never implements Plugin itself.
type Plugin interface {
	// Decode decodes a job's args strictly: unknown fields, wrong types and
	// values rejected by a Validator are errors (*ArgsError) that carry the YAML
	// line of the offending arg. A nil args node decodes to the zero value.
	// Decode is called when the config is checked and again before each run;
	// it must not have side effects.
	Decode(args *yaml.Node) (any, error)
	// Call runs the function once; run.Args holds the value Decode returned.
	Call(ctx context.Context, run Run) error
}

// Validator may be implemented by an args type A (or *A). Decode calls
// Validate after a successful decode, so that config checks catch bad values
// (a missing currency, a negative count) before any tick fires.
type Validator interface {
	Validate() error
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// ValidateName reports whether name is a valid func name: one or more of
// A-Z, a-z, 0-9, '.', '_' and '-', e.g. "payments.reconcile".
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w %q: want [A-Za-z0-9._-]+", ErrInvalidName, name)
	}
	return nil
}

// Registry maps func names to plugins. It is safe for concurrent use, and its
// zero value is an empty registry ready to use. Embedders and tests build their
// own with NewRegistry; the process-wide one is Default.
type Registry struct {
	mu      sync.RWMutex
	plugins map[string]Plugin
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{plugins: map[string]Plugin{}} }

// defaultRegistry is the only package-level state of oncecron: like
// http.DefaultServeMux it lets a user's main (or an imported package's init)
// register funcs that the shared entry point then finds.
var defaultRegistry = NewRegistry()

// Default returns the process-wide registry that Register fills and that the
// scheduler's entry point uses unless it is given another one.
func Default() *Registry { return defaultRegistry }

// Add registers p under name. It fails with ErrInvalidName, ErrDuplicate, or
// an error for a nil plugin.
func (r *Registry) Add(name string, p Plugin) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if p == nil || (reflect.ValueOf(p).Kind() == reflect.Pointer && reflect.ValueOf(p).IsNil()) {
		return fmt.Errorf("jobs: func %q: nil plugin", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.plugins[name]; ok {
		return fmt.Errorf("%w: %q", ErrDuplicate, name)
	}
	if r.plugins == nil {
		r.plugins = map[string]Plugin{}
	}
	r.plugins[name] = p
	return nil
}

// Lookup returns the plugin registered under name.
func (r *Registry) Lookup(name string) (Plugin, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.plugins[name]
	return p, ok
}

// Names returns the registered func names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	names := make([]string, 0, len(r.plugins))
	for n := range r.plugins {
		names = append(names, n)
	}
	r.mu.RUnlock()
	sort.Strings(names)
	return names
}

// Decode looks name up and decodes args with its plugin. An unknown name gives
// an error wrapping ErrUnknownFunc that lists the registered names; bad args
// give an *ArgsError whose Func is name.
func (r *Registry) Decode(name string, args *yaml.Node) (Plugin, any, error) {
	p, ok := r.Lookup(name)
	if !ok {
		known := r.Names()
		list := "none"
		if len(known) > 0 {
			list = strings.Join(known, ", ")
		}
		return nil, nil, fmt.Errorf("%w %q (registered: %s)", ErrUnknownFunc, name, list)
	}
	v, err := p.Decode(args)
	if err != nil {
		var ae *ArgsError
		if errors.As(err, &ae) && ae.Func == "" {
			cp := *ae
			cp.Func = name
			return nil, nil, &cp
		}
		return nil, nil, fmt.Errorf("jobs: func %q: args: %w", name, err)
	}
	return p, v, nil
}

// CheckFunc reports whether name is registered and args decode for it. It
// implements config's FuncChecker interface, so a config can be checked
// against the funcs this binary actually has.
func (r *Registry) CheckFunc(name string, args *yaml.Node) error {
	_, _, err := r.Decode(name, args)
	return err
}

// Register adds fn to the Default registry under name. Like http.Handle it is
// meant for init functions and main, before the scheduler starts: it panics if
// name is invalid (see ValidateName), already registered, or fn is nil.
func Register[A any](name string, fn func(ctx context.Context, run Run, args A) error) {
	if err := RegisterTo(defaultRegistry, name, fn); err != nil {
		panic(err)
	}
}

// RegisterTo adds fn to r under name; see NewPlugin for how its args are
// decoded.
func RegisterTo[A any](r *Registry, name string, fn func(ctx context.Context, run Run, args A) error) error {
	if fn == nil {
		return fmt.Errorf("jobs: func %q: nil function", name)
	}
	return r.Add(name, NewPlugin(fn))
}

// NewPlugin adapts fn to a Plugin. Its Decode decodes YAML args strictly into
// a fresh A (see Plugin.Decode); when A is an empty struct (struct{}) any
// non-empty args are an error. Its Call passes run.Args (nil means the zero A)
// to fn and turns a panic in fn into a *PanicError. NewPlugin panics if fn is
// nil.
func NewPlugin[A any](fn func(ctx context.Context, run Run, args A) error) Plugin {
	if fn == nil {
		panic("jobs: NewPlugin: nil function")
	}
	t := reflect.TypeFor[A]()
	return &funcPlugin[A]{fn: fn, noArgs: t.Kind() == reflect.Struct && t.NumField() == 0}
}

// NoArgs adapts a function that takes no args to a Plugin: any non-empty args
// are an error. Use it with Registry.Add.
func NoArgs(fn func(ctx context.Context, run Run) error) Plugin {
	if fn == nil {
		panic("jobs: NoArgs: nil function")
	}
	return NewPlugin(func(ctx context.Context, run Run, _ struct{}) error { return fn(ctx, run) })
}

type funcPlugin[A any] struct {
	fn     func(context.Context, Run, A) error
	noArgs bool
}

func (p *funcPlugin[A]) Decode(args *yaml.Node) (any, error) {
	var a A
	n := content(args)
	switch {
	case n == nil:
		// No args: the zero A, which must still pass validation.
	case p.noArgs:
		if !(n.Kind == yaml.MappingNode && len(n.Content) == 0) {
			return nil, &ArgsError{Line: n.Line, Column: n.Column, Err: errors.New("this func takes no args")}
		}
	default:
		if err := checkKnownFields(n, reflect.TypeFor[A](), 0); err != nil {
			return nil, err
		}
		if err := n.Decode(&a); err != nil {
			return nil, typeError(err, n)
		}
	}
	if err := validate(&a); err != nil {
		line, col := 0, 0
		if args != nil {
			pos := args
			if n != nil {
				pos = n
			}
			line, col = pos.Line, pos.Column
		}
		return nil, &ArgsError{Line: line, Column: col, Err: err}
	}
	return a, nil
}

func (p *funcPlugin[A]) Call(ctx context.Context, run Run) (err error) {
	var a A
	if run.Args != nil {
		v, ok := run.Args.(A)
		if !ok {
			return fmt.Errorf("jobs: job %q: args are %T, want %T", run.Job, run.Args, a)
		}
		a = v
	}
	defer recoverTo(&err, run.Job)
	return p.fn(ctx, run, a)
}

func validate[A any](a *A) error {
	if v, ok := any(*a).(Validator); ok {
		return v.Validate()
	}
	if v, ok := any(a).(Validator); ok {
		return v.Validate()
	}
	return nil
}

// PanicError is returned when a job function panics: the panic is recovered so
// that a plugin bug fails one run instead of crashing the replica.
type PanicError struct {
	// Job is the run's job name.
	Job string
	// Value is the value passed to panic.
	Value any
	// Stack is the goroutine's stack at the time of the panic.
	Stack []byte
}

// Error describes the panic without the stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("jobs: job %q panicked: %v", e.Job, e.Value)
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// SafeCall calls p.Call and turns a panic into a *PanicError. Plugins built by
// NewPlugin already do this; SafeCall protects the caller from hand-written
// Plugin implementations too.
func SafeCall(ctx context.Context, p Plugin, run Run) (err error) {
	defer recoverTo(&err, run.Job)
	return p.Call(ctx, run)
}

// recoverTo must be deferred directly.
func recoverTo(err *error, job string) {
	if v := recover(); v != nil {
		*err = &PanicError{Job: job, Value: v, Stack: debug.Stack()}
	}
}
