package testenv

import "syscall"

// sysProcAttr makes the kernel kill a server when the test binary dies
// without running its cleanups (a test timeout, a crash).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
