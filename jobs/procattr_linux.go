package jobs

import "syscall"

// sysProcAttr puts the program in a process group of its own (so cancellation
// reaches its children too) and, on Linux, has the kernel kill it if the replica
// dies (kill -9, OOM): a run must not outlive the lease of a replica that is gone,
// or it would overlap the takeover run on another replica.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
