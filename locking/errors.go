package locking

import "errors"

// Sentinel errors. Backends translate their native conditions into these, and callers
// compare with errors.Is; the messages all start with "locking: ".
var (
	// ErrHeld reports that another owner holds the key now. Claim returns it; the key
	// may be claimable later.
	ErrHeld = errors.New("locking: key is held by another owner")

	// ErrDone reports that the key was completed and its retention has not run out:
	// the work it stands for has happened and must not happen again.
	ErrDone = errors.New("locking: key is already completed")

	// ErrLost reports that a lease was lost: renewal failed for long enough that the
	// backend may have handed the key to someone else, the backend said the key is no
	// longer ours, or the session it lived on expired. It is terminal: a lost lease is
	// never renewed or re-acquired; new work needs a new claim and a new token.
	ErrLost = errors.New("locking: lease lost")

	// ErrNotHeld reports an operation on a lease that the caller does not hold (any
	// more): releasing twice, or renewing, completing or releasing after the key
	// expired or passed to another owner.
	ErrNotHeld = errors.New("locking: lease not held")

	// ErrReleased is the Err of a lease that ended normally, by Release or Complete.
	ErrReleased = errors.New("locking: lease released")

	// ErrUnavailable reports that the backend could not be reached or did not answer in
	// time; the outcome of the operation may be unknown.
	ErrUnavailable = errors.New("locking: backend unavailable")

	// ErrInvalid reports an invalid argument: a malformed key or scope, a TTL out of
	// range, a bad option.
	ErrInvalid = errors.New("locking: invalid argument")

	// ErrClosed reports use of a Locker or backend after Close.
	ErrClosed = errors.New("locking: closed")

	// ErrUnsafe reports a backend configuration under which fencing tokens could
	// repeat or a completed key be forgotten (see FencingChecker).
	ErrUnsafe = errors.New("locking: backend configuration cannot guarantee fencing")
)
