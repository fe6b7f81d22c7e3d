package chaos

import "syscall"

// sysProcAttr makes the kernel kill a process this package started when
// the program that started it dies without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
