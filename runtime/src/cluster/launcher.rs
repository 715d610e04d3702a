//! `compart run`: start every node as a process, wait until all are connected, drive the
//! workload (`driver.rs`, shared with `compart load`) with faults injected, stop everything.

use std::collections::{HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use indicatif::ProgressBar;

use super::cgroup::CpuQuota;
use super::driver::{signals, Driver, NodeExtra, Supervisor};
use super::node::FAILPOINT_EXIT;
use super::process::Children;
use super::{free_ports, random_secret_hex, Cluster, Control, Envelope, SECRET_ENV, SECRET_FILE_ENV};
use crate::loadgen::WorkloadChoice;
use crate::net::{Endpoint, NetConfig, Secret, DEFAULT_MAX_FRAME_BYTES};
use crate::report::{FaultEvent, RunReport};

/// Kill a node at `at` (seconds after the workload starts) and restart it `down` seconds later.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub node: String,
    pub at: Duration,
    pub down: Duration,
}

impl std::str::FromStr for Fault {
    type Err = String;
    /// `acceptor/1@1.5` (restart 0.5 s later) or `acceptor/1@1.5+2` (restart 2 s later).
    fn from_str(s: &str) -> Result<Fault, String> {
        let bad = || format!("`{s}`: expected component/instance@seconds[+down_seconds]");
        let (node, when) = s.split_once('@').ok_or_else(bad)?;
        let (at, down) = match when.split_once('+') {
            Some((a, d)) => (a, d),
            None => (when, "0.5"),
        };
        let secs = |x: &str| crate::options::parse_seconds(x).map_err(|e| format!("`{s}`: {e}"));
        Ok(Fault { node: node.to_string(), at: secs(at)?, down: secs(down)? })
    }
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub program: PathBuf,
    pub deploy: PathBuf,
    /// Closed loop with this many clients (the default, with 16 clients, when `rate` is None).
    pub clients: Option<usize>,
    /// Open loop at this many requests per second.
    pub rate: Option<f64>,
    pub requests: u64,
    pub choice: WorkloadChoice,
    pub durable: Option<PathBuf>,
    /// Nodes start from the intact prefix of a damaged durability log instead of refusing.
    pub accept_log_loss: bool,
    /// Pick free ports instead of the deployment file's (tests, parallel runs).
    pub auto_ports: bool,
    pub faults: Vec<Fault>,
    /// End the run when no reply arrived for this long.
    pub reply_timeout: Duration,
    pub progress: bool,
    /// Progress as lines on stderr (`progress: N/M replies`, about once a second) instead of a
    /// bar: for an editor or a log reading the output as it comes (a bar draws nothing there).
    pub progress_lines: bool,
    /// Shared cluster secret; a random one per run when None.
    pub secret: Option<Vec<u8>>,
    pub max_frame_bytes: usize,
    /// The `compart` binary to start nodes with (`std::env::current_exe()`).
    pub exe: PathBuf,
    /// Timeline sampling interval.
    pub interval: Duration,
    /// The emulated cluster: every node process in its own cgroup with this fraction of a core.
    pub cpu_per_node: Option<f64>,
}

impl RunOptions {
    pub fn new(program: PathBuf, deploy: PathBuf, exe: PathBuf) -> Self {
        RunOptions {
            program,
            deploy,
            clients: None,
            rate: None,
            requests: 10_000,
            choice: WorkloadChoice::default(),
            durable: None,
            accept_log_loss: false,
            auto_ports: false,
            faults: Vec::new(),
            reply_timeout: Duration::from_secs(10),
            progress: true,
            progress_lines: false,
            secret: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            exe,
            interval: Duration::from_millis(250),
            cpu_per_node: None,
        }
    }
}

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the whole cluster; returns the report (also when requests failed: look at its summary).
pub fn run(opts: &RunOptions) -> Result<RunReport, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // Everything, including spawning children, happens on this thread (see process.rs).
    runtime.block_on(run_async(opts))
}

/// The launcher's node processes: faults on schedule, failpoint crashes restarted.
struct LocalNodes<'a, F: Fn(usize) -> Command> {
    cluster: &'a Cluster,
    opts: &'a RunOptions,
    node_command: F,
    /// Before the quota: fields drop in order, and the groups are removed once the nodes are gone.
    children: Children,
    quota: Option<CpuQuota>,
    restarts: Vec<u32>,
    /// (when, node index, restart?)
    schedule: VecDeque<(Duration, usize, bool)>,
    dead: HashSet<usize>,
}

impl<F: Fn(usize) -> Command> LocalNodes<'_, F> {
    fn start(&mut self, i: usize) -> Result<(), String> {
        start_node(&mut self.children, &mut self.quota, i, (self.node_command)(i))
    }
}

impl<F: Fn(usize) -> Command> Supervisor for LocalNodes<'_, F> {
    fn poll(
        &mut self,
        elapsed: Duration,
        faults: &mut Vec<FaultEvent>,
        errors: &mut Vec<String>,
        pb: &ProgressBar,
    ) -> Result<bool, String> {
        let mut progress = false;
        while self.schedule.front().is_some_and(|s| elapsed >= s.0) {
            let Some((_, i, restart)) = self.schedule.pop_front() else { break };
            let name = self.cluster.deployment.nodes[i].name.clone();
            if restart {
                self.start(i).map_err(|e| format!("cannot restart {name}: {e}"))?;
                self.restarts[i] += 1;
                self.dead.remove(&i);
            } else {
                self.children.kill_node(i);
                self.dead.insert(i);
            }
            pb.set_message(format!("{} {name}", if restart { "restarted" } else { "killed" }));
            faults.push(FaultEvent {
                t_s: elapsed.as_secs_f64(),
                node: name,
                action: if restart { "restart" } else { "kill" }.into(),
            });
            progress = true;
        }
        for (i, status) in self.children.exited() {
            let name = self.cluster.deployment.nodes[i].name.clone();
            if status.code() == Some(FAILPOINT_EXIT) && self.opts.durable.is_some() {
                // The test hook stopped it (see `node::FAILPOINT_ENV`): back at once, as a
                // supervisor would bring back a crashed durable node.
                self.start(i).map_err(|e| format!("cannot restart {name}: {e}"))?;
                self.restarts[i] += 1;
                let t_s = elapsed.as_secs_f64();
                faults.push(FaultEvent { t_s, node: name.clone(), action: "crash".into() });
                faults.push(FaultEvent { t_s, node: name, action: "restart".into() });
                progress = true;
                continue;
            }
            errors.push(format!("node {name} exited unexpectedly ({status})"));
            self.dead.insert(i);
        }
        Ok(progress)
    }

    fn pending(&self) -> bool {
        !self.schedule.is_empty()
    }

    fn down(&self) -> &HashSet<usize> {
        &self.dead
    }

    fn node_extra(&self, i: usize) -> NodeExtra {
        NodeExtra {
            pid: self.children.pid(i),
            restarts: self.restarts[i],
            cpu_of_killed: self.children.cpu_of_killed[i],
            throttled: self.quota.as_ref().and_then(|q| q.throttled(i)),
        }
    }
}

async fn run_async(opts: &RunOptions) -> Result<RunReport, String> {
    // Registered first, so that Ctrl-C (or SIGTERM) at any point stops the nodes in order.
    let mut signals = signals()?;
    let probe = Cluster::load(&opts.program, &opts.deploy, None)?;
    let n = probe.deployment.nodes.len();
    let ports =
        if opts.auto_ports { Some(free_ports(n + 1).map_err(|e| format!("no free ports: {e}"))?) } else { None };
    let cluster = match &ports {
        Some(p) => Cluster::load(&opts.program, &opts.deploy, Some(&p[..n]))?,
        None => probe,
    };
    // Children get the secret as text (environment variables are strings).
    let secret_text = match &opts.secret {
        Some(s) => crate::hex(s),
        None => random_secret_hex()?,
    };
    let launcher_id = cluster.launcher_id();
    let listen = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), ports.as_ref().map(|p| p[n]).unwrap_or(0));
    let mut config = NetConfig::with_peers(
        launcher_id,
        listen,
        cluster.deployment.nodes.iter().map(|s| (s.addr.0, s.address.clone())).collect(),
    );
    config.secret = Secret::new(secret_text.as_bytes());
    config.max_frame_bytes = opts.max_frame_bytes;
    let (endpoint, mut rx) =
        Endpoint::<Envelope>::start(config).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let launcher_addr = endpoint.local_addr();
    let mut driver = Driver::new(&cluster, opts, &endpoint)?;
    if opts.durable.is_some() {
        // Recovered nodes resend the frames they logged and the last run's launcher did not
        // acknowledge, answers to its requests among them: ids above its own tell them apart.
        driver.first_id = super::driver::first_id_after_earlier_clients();
    }

    let node_command = |i: usize| {
        let mut cmd = Command::new(&opts.exe);
        cmd.arg("node")
            .arg(&opts.program)
            .arg("--deploy")
            .arg(&opts.deploy)
            .arg("--index")
            .arg(i.to_string())
            .arg("--launcher")
            .arg(launcher_addr.to_string())
            .arg("--max-frame-bytes")
            .arg(opts.max_frame_bytes.to_string())
            .env(SECRET_ENV, &secret_text)
            .env_remove(SECRET_FILE_ENV)
            .stdin(Stdio::null());
        if let Some(p) = &ports {
            let list: Vec<String> = p[..n].iter().map(|p| p.to_string()).collect();
            cmd.arg("--ports").arg(list.join(","));
        }
        if let Some(d) = &opts.durable {
            cmd.arg("--durable").arg(d);
        }
        if opts.accept_log_loss {
            cmd.arg("--accept-log-loss");
        }
        cmd
    };
    let mut schedule: Vec<(Duration, usize, bool)> = Vec::new();
    for f in &opts.faults {
        let i =
            cluster.deployment.by_name(&f.node).ok_or_else(|| format!("--kill-and-restart: no node `{}`", f.node))?;
        schedule.push((f.at, i.index(), false));
        schedule.push((f.at + f.down, i.index(), true));
    }
    schedule.sort_by_key(|s| s.0);
    let mut nodes = LocalNodes {
        cluster: &cluster,
        opts,
        node_command,
        children: Children::new(n),
        quota: opts.cpu_per_node.map(CpuQuota::new).transpose()?,
        restarts: vec![0; n],
        schedule: schedule.into(),
        dead: HashSet::new(),
    };
    for i in 0..n {
        nodes.start(i).map_err(|e| format!("cannot start {}: {e}", opts.exe.display()))?;
    }
    if nodes.quota.is_some() {
        // The load generator must never be what limits an emulated run: favour it over the
        // nodes' groups (children started later inherit this, but their quota bounds them).
        // SAFETY: setpriority has no memory-safety preconditions; failure only loses the favour.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, -5);
        }
    }

    // ---- Wait until every node is connected to every peer.
    let mut ready = HashSet::new();
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    while ready.len() < n {
        let [sigint, sigterm] = &mut signals;
        tokio::select! {
            d = rx.recv() => {
                let Some(d) = d else { return Err("the launcher's network stopped".into()) };
                endpoint.ack(d.from, d.seq);
                if d.batch.contains(&Envelope::Control(Control::Ready)) {
                    ready.insert(d.from);
                }
            }
            _ = sigint.recv() => return Err("interrupted during start-up".into()),
            _ = sigterm.recv() => return Err("terminated during start-up".into()),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                for (i, status) in nodes.children.exited() {
                    let name = &cluster.deployment.nodes[i].name;
                    if status.code() != Some(FAILPOINT_EXIT) || opts.durable.is_none() {
                        return Err(format!("node {name} exited during start-up ({status})"));
                    }
                    nodes.start(i).map_err(|e| format!("cannot restart {name}: {e}"))?;
                    nodes.restarts[i] += 1;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("only {} of {n} nodes connected within {READY_TIMEOUT:?}", ready.len()));
                }
            }
        }
    }

    let driven = driver.run(&mut rx, &mut nodes, &mut signals).await?;
    let alive: Vec<usize> = (0..n).filter(|i| !nodes.dead.contains(i)).collect();
    for &i in &alive {
        endpoint.send(i as u32, vec![Envelope::Control(Control::Stop)]);
    }
    endpoint.drain(Duration::from_secs(1)).await;
    nodes.children.wait_all(Duration::from_secs(3));
    Ok(driver.report(driven, &nodes))
}

/// Start node `i`'s process and, on the emulated cluster, put it in its group (a restarted node
/// gets the same group).
fn start_node(children: &mut Children, quota: &mut Option<CpuQuota>, i: usize, cmd: Command) -> Result<(), String> {
    let pid = children.spawn(i, cmd).map_err(|e| e.to_string())?;
    match quota {
        Some(q) => q.place(i, pid),
        None => Ok(()),
    }
}

impl RunReport {
    /// Requests that failed a check, went unanswered, or nodes that died unexpectedly.
    pub fn failed(&self) -> bool {
        let s = &self.summary;
        s.missing + s.duplicates + s.mismatched + s.unexpected > 0 || !self.errors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_syntax() {
        assert_eq!(
            "acceptor/1@1.5".parse::<Fault>(),
            Ok(Fault { node: "acceptor/1".into(), at: Duration::from_millis(1500), down: Duration::from_millis(500) })
        );
        assert_eq!("a/0@2+3".parse::<Fault>().map(|f| f.down), Ok(Duration::from_secs(3)));
        assert!("a/0".parse::<Fault>().is_err());
        assert!("a/0@-1".parse::<Fault>().is_err());
        // Out of Duration's range, or summing past it: errors, not panics.
        for bad in ["a/0@1e20", "a/0@1e19+1e19", "a/0@inf", "a/0@1+NaN"] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }
}
