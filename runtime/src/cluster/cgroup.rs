//! The emulated cluster: every node process in its own cgroup with the same CPU quota, so that a
//! 2-core machine behaves like one small machine per node (`compart run --cpu-per-node F`).
//!
//! Whichever hierarchy this machine mounts with the `cpu` controller is used: cgroup v2
//! (`cpu.max` under `/sys/fs/cgroup`) or v1 (`cpu.cfs_quota_us` under `/sys/fs/cgroup/cpu`). The
//! launcher and load generator stay outside, unconstrained, so that they never limit a run. Groups
//! are removed when the run ends (after the nodes exited), and left-overs of a killed launcher are
//! reclaimed by the next run.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The CFS period: short, so that a node over its quota waits at most a few milliseconds, as a
/// slower machine would, rather than sitting out most of the kernel's default 100 ms period
/// (which adds up to 90 ms to every request that meets a throttled node).
const PERIOD_US: u64 = 10_000;
/// The smallest quota the kernel accepts is 1 ms per period; smaller shares get a longer period.
const MIN_QUOTA_US: u64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// One run's cgroups: a parent group `compart-<launcher pid>` with one child per node.
pub struct CpuQuota {
    version: Version,
    parent: PathBuf,
    quota_us: u64,
    period_us: u64,
    created: Vec<PathBuf>,
}

/// Where the `cpu` controller is mounted, and which version: None if it is not.
fn find_root() -> Option<(Version, PathBuf)> {
    let v2 = Path::new("/sys/fs/cgroup");
    if fs::read_to_string(v2.join("cgroup.controllers")).is_ok_and(|c| c.split_whitespace().any(|x| x == "cpu")) {
        return Some((Version::V2, v2.to_path_buf()));
    }
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    if v1.join("cpu.cfs_quota_us").exists() {
        return Some((Version::V1, v1.to_path_buf()));
    }
    None
}

impl CpuQuota {
    /// Validate `cpus` and create the run's parent group; a clear error where cgroups are not
    /// writable (not root, a read-only mount, or no `cpu` controller).
    pub fn new(cpus: f64) -> Result<CpuQuota, String> {
        if !cpus.is_finite() || cpus <= 0.0 || cpus > 1024.0 {
            return Err(format!("--cpu-per-node must be a fraction of a core in (0, 1024], not {cpus}"));
        }
        let period_us = PERIOD_US.max((MIN_QUOTA_US as f64 / cpus).ceil() as u64);
        let quota_us = (cpus * period_us as f64).round() as u64;
        let (version, root) = find_root().ok_or_else(|| {
            "--cpu-per-node needs the cgroup `cpu` controller (cgroup v2 `cpu.max` or v1 `cpu.cfs_quota_us`), \
             and this machine mounts neither"
                .to_string()
        })?;
        reclaim_stale(&root);
        let parent = root.join(format!("compart-{}", std::process::id()));
        fs::create_dir_all(&parent).map_err(|e| {
            format!(
                "--cpu-per-node: cannot create the cgroup {} ({e}); the emulated cluster needs write access to \
                 the cgroup hierarchy (run as root, or delegate a cgroup to this user)",
                parent.display()
            )
        })?;
        if version == Version::V2 {
            // Children of the parent can only use `cpu` if the parent delegates it.
            let _ = fs::write(parent.join("cgroup.subtree_control"), "+cpu");
        }
        Ok(CpuQuota { version, parent: parent.clone(), quota_us, period_us, created: vec![parent] })
    }

    /// Put process `pid` (node `index`) in its own group with the quota. A restarted node gets
    /// the same group again.
    pub fn place(&mut self, index: usize, pid: u32) -> Result<(), String> {
        let group = self.group(index);
        let fail = |what: &str, e: io::Error| format!("--cpu-per-node: cannot {what} {}: {e}", group.display());
        if !group.exists() {
            fs::create_dir(&group).map_err(|e| fail("create", e))?;
            self.created.push(group.clone());
            match self.version {
                Version::V2 => fs::write(group.join("cpu.max"), format!("{} {}", self.quota_us, self.period_us))
                    .map_err(|e| fail("set cpu.max of", e))?,
                Version::V1 => {
                    fs::write(group.join("cpu.cfs_period_us"), self.period_us.to_string())
                        .map_err(|e| fail("set cpu.cfs_period_us of", e))?;
                    fs::write(group.join("cpu.cfs_quota_us"), self.quota_us.to_string())
                        .map_err(|e| fail("set cpu.cfs_quota_us of", e))?;
                }
            }
        }
        fs::write(group.join("cgroup.procs"), pid.to_string()).map_err(|e| fail("move the node into", e))
    }

    fn group(&self, index: usize) -> PathBuf {
        self.parent.join(format!("node{index}"))
    }

    /// Throttling counters of node `index`'s group: (periods throttled, total periods).
    pub fn throttled(&self, index: usize) -> Option<(u64, u64)> {
        let stat = fs::read_to_string(self.group(index).join("cpu.stat")).ok()?;
        let field =
            |name: &str| stat.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<u64>().ok()));
        Some((field("nr_throttled")?, field("nr_periods")?))
    }
}

impl Drop for CpuQuota {
    /// Remove the groups, children first. A group still holding a process cannot be removed;
    /// that only happens if a node outlived the launcher's kill, and the next run reclaims it.
    fn drop(&mut self) {
        for group in self.created.iter().rev() {
            let _ = fs::remove_dir(group);
        }
    }
}

/// Remove the groups of earlier runs whose launcher is gone (killed before it could clean up).
fn reclaim_stale(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("compart-")).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(children) = fs::read_dir(e.path()) {
            for c in children.flatten() {
                if c.path().is_dir() {
                    let _ = fs::remove_dir(c.path());
                }
            }
        }
        let _ = fs::remove_dir(e.path());
    }
}

#[cfg(test)]
mod tests {
    use super::CpuQuota;

    #[test]
    fn refuses_quotas_that_are_not_a_positive_fraction() {
        for bad in [0.0, -0.1, f64::NAN, f64::INFINITY, 1e9] {
            let err = CpuQuota::new(bad).err().expect("refused");
            assert!(err.contains("--cpu-per-node must be"), "{err}");
        }
    }

    /// Where the machine lets us (root with the cpu controller: this machine and CI), a process
    /// placed in a group runs at the quota: a busy loop gets about 10% of a core.
    #[test]
    fn a_placed_process_is_limited_to_its_quota() {
        let mut quota = match CpuQuota::new(0.1) {
            Ok(q) => q,
            // SAFETY: geteuid has no preconditions.
            Err(e) if unsafe { libc::geteuid() } != 0 => {
                println!("not run: {e} (not root)");
                return;
            }
            Err(e) => panic!("root should be able to create a cgroup: {e}"),
        };
        let mut child =
            std::process::Command::new("sh").arg("-c").arg("while :; do :; done").spawn().expect("sh starts");
        quota.place(0, child.id()).expect("placed");
        let start = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let cpu = super::super::process::cpu_seconds(child.id()).unwrap_or(0.0);
        let wall = start.elapsed().as_secs_f64();
        let (throttled, periods) = quota.throttled(0).unwrap_or((0, 0));
        let _ = child.kill();
        let _ = child.wait();
        // 10% of 1.5 s is 0.15 s; allow the kernel's slack and a loaded machine.
        assert!(cpu < 0.35 * wall, "a 10% group used {cpu:.3} s of CPU in {wall:.2} s");
        assert!(throttled > 0 && periods > 0, "the group was never throttled ({throttled}/{periods})");
    }
}
