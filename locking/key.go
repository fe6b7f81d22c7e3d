package locking

import (
	"fmt"
	"strings"
)

// Limits on the parts of a Key. They keep every key storable on every backend: Redis
// hash tags, etcd key paths and ZooKeeper node names.
const (
	MaxScopeLen = 128
	MaxNameLen  = 200
)

// Key names one lockable thing: Name within a fence Scope. Fencing tokens rise
// strictly within a scope, across all of its names; the scheduler uses one scope per
// job and one name per tick (the scheduled instant), so tokens rise across the ticks
// of a job.
//
// Scope and Name are 1 to MaxScopeLen / MaxNameLen bytes of ASCII letters, digits and
// the characters . _ - : @ + =.
type Key struct {
	Scope string `json:"scope"`
	Name  string `json:"name"`
}

// String returns "scope/name".
func (k Key) String() string { return k.Scope + "/" + k.Name }

// Validate reports whether k can be stored by every backend. The error wraps
// ErrInvalid and says which part is wrong and why.
func (k Key) Validate() error {
	if err := ValidateScope(k.Scope); err != nil {
		return err
	}
	return validatePart("name", k.Name, MaxNameLen)
}

// ValidateScope reports whether scope is a valid fence scope (see Key).
func ValidateScope(scope string) error {
	return validatePart("scope", scope, MaxScopeLen)
}

func validatePart(what, s string, maxLen int) error {
	if s == "" {
		return fmt.Errorf("%w: empty key %s", ErrInvalid, what)
	}
	if len(s) > maxLen {
		return fmt.Errorf("%w: key %s is %d bytes, longer than %d", ErrInvalid, what, len(s), maxLen)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%w: key %s %q is reserved", ErrInvalid, what, s)
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return !validKeyRune(r) }); i >= 0 {
		return fmt.Errorf("%w: key %s %q has %q at byte %d; allowed are letters, digits and . _ - : @ + =", ErrInvalid, what, s, s[i], i)
	}
	return nil
}

func validKeyRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("._-:@+=", r)
}

// ValidateNamespace reports whether ns can prefix every key of a deployment: 1 to 64
// bytes of letters, digits, '.', '_' and '-'.
func ValidateNamespace(ns string) error {
	if ns == "" {
		return fmt.Errorf("%w: empty namespace", ErrInvalid)
	}
	if len(ns) > 64 {
		return fmt.Errorf("%w: namespace is %d bytes, longer than 64", ErrInvalid, len(ns))
	}
	for i, r := range ns {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%w: namespace %q has %q at byte %d; allowed are letters, digits and . _ -", ErrInvalid, ns, r, i)
		}
	}
	return nil
}
