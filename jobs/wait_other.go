//go:build unix && !linux

package jobs

import "os/exec"

// waitExit waits for and reaps cmd's process. Outside Linux there is no
// portable way to wait without reaping, so the group is signalled after the
// leader's pid has been released; the window for pid reuse is tiny.
func waitExit(cmd *exec.Cmd) (reaped bool, err error) {
	return true, cmd.Wait()
}
