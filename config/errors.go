package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// FieldError is one problem in a configuration file, located by line and
// named by the field's path, such as "jobs[2].schedule".
type FieldError struct {
	File   string // the file name given to Load or Parse
	Line   int    // 1-based line; 0 if unknown
	Column int    // 1-based column; 0 if unknown
	Field  string // path of the field, e.g. "lock.ttl"; empty for file-level problems
	Msg    string // what is wrong
}

// Error formats e as "file:line: field: msg".
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Error is returned by Load and Parse for an invalid file. It holds every
// problem found, in file order, not only the first.
type Error struct {
	Errors []*FieldError
}

// Error returns one line per problem.
func (e *Error) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual problems, so that errors.As can extract a
// *FieldError too.
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, fe := range e.Errors {
		errs[i] = fe
	}
	return errs
}

// ErrUnknownFunc is what a FuncChecker returns (possibly wrapped) for a
// function name it does not know; Load then reports the error at the job's
// func field rather than at its args.
var ErrUnknownFunc = errors.New("unknown function")

func sortErrors(errs []*FieldError) {
	slices.SortStableFunc(errs, func(a, b *FieldError) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}
