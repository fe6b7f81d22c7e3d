package jobs

import (
	"os/exec"
	"syscall"
	"unsafe"
)

const pPID = 1 // P_PID for waitid(2)

// waitExit blocks until cmd's process has exited without reaping it
// (waitid with WNOWAIT), so that its pid, which is also its process group's id,
// stays reserved until the caller has signalled the group and called
// cmd.Wait. It reports reaped=true if it had to fall back to cmd.Wait.
func waitExit(cmd *exec.Cmd) (reaped bool, err error) {
	var siginfo [16]uint64 // siginfo_t is 128 bytes on Linux
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(cmd.Process.Pid),
			uintptr(unsafe.Pointer(&siginfo[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		switch e {
		case 0:
			return false, nil
		case syscall.EINTR:
			continue
		default:
			return true, cmd.Wait()
		}
	}
}
