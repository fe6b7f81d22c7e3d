//go:build unix && !linux

package jobs

import "syscall"

// sysProcAttr puts the program in a process group of its own, so cancellation
// reaches its children too.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
