//go:build !unix

package jobs

import (
	"context"
	"errors"
)

// Run is not supported on this platform: it needs Unix process groups.
func (c Command) Run(ctx context.Context, run Run) error {
	return c.errorf("%w: programs need Unix process groups", errors.ErrUnsupported)
}
