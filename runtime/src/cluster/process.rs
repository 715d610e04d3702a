//! Child processes of the launcher, and the guarantee that none outlives it.
//!
//! Three layers: children are killed by [`Children`]'s `Drop` (normal exit, error return, panic
//! unwinding); each child asks the kernel to SIGKILL it when the launcher dies
//! (`PR_SET_PDEATHSIG`, covers SIGKILL of the launcher); and each child runs in its own process
//! group so a terminal's Ctrl-C reaches only the launcher, which then stops them in order.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Children {
    /// One slot per node; None while a node is down (killed by a fault and not yet restarted).
    pub procs: Vec<Option<Child>>,
    /// CPU seconds of each node's earlier processes (killed by a fault), read just before the kill.
    pub cpu_of_killed: Vec<f64>,
}

/// CPU seconds (user + system) of a live process, from /proc/<pid>/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces): utime and stime are the 12th
    // and 13th of them.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks / if hz > 0 { hz as f64 } else { 100.0 })
}

impl Children {
    pub fn new(n: usize) -> Self {
        Children { procs: (0..n).map(|_| None).collect(), cpu_of_killed: vec![0.0; n] }
    }

    /// Spawn `cmd` as node `i`. Must be called from the thread that lives as long as the child
    /// should: PDEATHSIG fires when the spawning *thread* exits.
    pub fn spawn(&mut self, i: usize, mut cmd: Command) -> std::io::Result<u32> {
        cmd.process_group(0);
        // SAFETY: the closure only calls async-signal-safe functions (prctl, getppid, kill).
        unsafe {
            let parent = libc::getpid();
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The launcher may have died between fork and prctl.
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let pid = child.id();
        self.procs[i] = Some(child);
        Ok(pid)
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.procs[i].as_ref().map(|c| c.id())
    }

    /// SIGKILL node `i` (a fault) and reap it, remembering the CPU time it used.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(pid) = self.pid(i) {
            self.cpu_of_killed[i] += cpu_seconds(pid).unwrap_or(0.0);
        }
        self.kill(i);
    }

    /// SIGKILL node `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Nodes that exited on their own: (index, exit status description).
    pub fn exited(&mut self) -> Vec<(usize, std::process::ExitStatus)> {
        let mut out = Vec::new();
        for (i, slot) in self.procs.iter_mut().enumerate() {
            if let Some(c) = slot {
                if let Ok(Some(status)) = c.try_wait() {
                    out.push((i, status));
                    *slot = None;
                }
            }
        }
        out
    }

    /// Wait up to `timeout` for every child to exit, then SIGKILL the rest.
    pub fn wait_all(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let _ = self.exited();
            if self.procs.iter().all(Option::is_none) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill_all();
    }

    pub fn kill_all(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill_all();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_cpu_time() {
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let cpu = super::cpu_seconds(std::process::id()).unwrap();
        assert!((0.0..1e6).contains(&cpu));
        assert!(super::cpu_seconds(u32::MAX).is_none());
    }
}
