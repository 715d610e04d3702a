//! `compart run`: start every node as a process, wait until all are connected, drive the
//! workload, inject faults, collect statistics, stop everything, and build the [`RunReport`].

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compart_analysis::model::RuleKind;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use super::cgroup::CpuQuota;
use super::node::FAILPOINT_EXIT;
use super::process::Children;
use super::{free_ports, Cluster, Control, Envelope, NodeStats, SECRET_ENV};
use crate::engine::route;
use crate::loadgen::{Checker, ReplyError, Workload, WorkloadChoice};
use crate::net::{Endpoint, NetConfig, Secret, DEFAULT_MAX_FRAME_BYTES};
use crate::report::{
    FaultEvent, KeysReport, Latency, NodeReport, OpReport, RuleReport, RunReport, Sample, Summary, WorkloadReport,
    SCHEMA,
};
use crate::value::NodeAddr;

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
            secret: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            exe,
            interval: Duration::from_millis(250),
            cpu_per_node: None,
        }
    }
}

const DEFAULT_CLIENTS: usize = 16;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the whole cluster; returns the report (also when requests failed: look at its summary).
pub fn run(opts: &RunOptions) -> Result<RunReport, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // Everything, including spawning children, happens on this thread (see process.rs).
    runtime.block_on(run_async(opts))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

async fn run_async(opts: &RunOptions) -> Result<RunReport, String> {
    // Registered first, so that Ctrl-C (or SIGTERM) at any point stops the nodes in order.
    let signal = |kind| tokio::signal::unix::signal(kind).map_err(|e| format!("cannot install a signal handler: {e}"));
    let mut sigint = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut sigterm = signal(tokio::signal::unix::SignalKind::terminate())?;
    let probe = Cluster::load(&opts.program, &opts.deploy, None)?;
    let n = probe.deployment.nodes.len();
    let ports =
        if opts.auto_ports { Some(free_ports(n + 1).map_err(|e| format!("no free ports: {e}"))?) } else { None };
    let cluster = match &ports {
        Some(p) => Cluster::load(&opts.program, &opts.deploy, Some(&p[..n]))?,
        None => probe,
    };
    let program = &cluster.analysis.program;
    let mut choice = opts.choice.clone();
    if let Some(t) = &cluster.workload {
        choice = choice.merge_toml(t)?;
    }
    let workload = Workload::detect(program, &choice)?;
    // Per op: the logical nodes of its input's component.
    let mut targets: Vec<Vec<NodeAddr>> = Vec::new();
    for op in &workload.ops {
        let t: Vec<NodeAddr> =
            cluster.deployment.logical_nodes().filter(|s| s.component == op.entry).map(|s| s.addr).collect();
        if t.is_empty() {
            return Err(format!(
                "the deployment runs no `{}` node to send `{}` requests to",
                program.component(op.entry).name,
                op.input_name
            ));
        }
        targets.push(t);
    }
    let secret_bytes = match &opts.secret {
        Some(s) => s.clone(),
        None => {
            let mut s = vec![0u8; 32];
            getrandom::fill(&mut s).map_err(|e| format!("no randomness for the cluster secret: {e}"))?;
            s
        }
    };
    // Children get the secret as text (environment variables are strings).
    let secret_text = hex(&secret_bytes);
    let launcher_id = cluster.launcher_id();
    let listen = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), ports.as_ref().map(|p| p[n]).unwrap_or(0));
    let mut config =
        NetConfig::new(launcher_id, listen, cluster.deployment.nodes.iter().map(|s| (s.addr.0, s.socket)).collect());
    config.secret = Secret::new(secret_text.as_bytes());
    config.max_frame_bytes = opts.max_frame_bytes;
    let (endpoint, mut rx) =
        Endpoint::<Envelope>::start(config).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let launcher_addr = endpoint.local_addr();

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
    // Declared before `children`, so the groups are removed after the nodes are gone.
    let mut quota = opts.cpu_per_node.map(CpuQuota::new).transpose()?;
    let mut children = Children::new(n);
    for i in 0..n {
        start_node(&mut children, &mut quota, i, node_command(i))
            .map_err(|e| format!("cannot start {}: {e}", opts.exe.display()))?;
    }
    if quota.is_some() {
        // The load generator must never be what limits an emulated run: favour it over the
        // nodes' groups (children started later inherit this, but their quota bounds them).
        // SAFETY: setpriority has no memory-safety preconditions; failure only loses the favour.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, -5);
        }
    }

    let mut restarts = vec![0u32; n];
    // ---- Wait until every node is connected to every peer.
    let mut ready = HashSet::new();
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    while ready.len() < n {
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
                for (i, status) in children.exited() {
                    let name = &cluster.deployment.nodes[i].name;
                    if status.code() != Some(FAILPOINT_EXIT) || opts.durable.is_none() {
                        return Err(format!("node {name} exited during start-up ({status})"));
                    }
                    start_node(&mut children, &mut quota, i, node_command(i))
                        .map_err(|e| format!("cannot restart {name}: {e}"))?;
                    restarts[i] += 1;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("only {} of {n} nodes connected within {READY_TIMEOUT:?}", ready.len()));
                }
            }
        }
    }

    // ---- The workload.
    let closed = opts.rate.is_none();
    let clients = opts.clients.unwrap_or(DEFAULT_CLIENTS).max(1);
    let total = opts.requests;
    let pb = if opts.progress { ProgressBar::new(total) } else { ProgressBar::hidden() };
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} replies  {per_sec}  {elapsed_precise}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut checker = Checker::new(workload.clone());
    let mut hist = histogram();
    let mut interval_hist = histogram();
    let mut timeline = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut summary = Summary::default();
    let mut faults_done: Vec<FaultEvent> = Vec::new();
    // (when, node index, restart?)
    let mut schedule: Vec<(Duration, usize, bool)> = Vec::new();
    for f in &opts.faults {
        let i =
            cluster.deployment.by_name(&f.node).ok_or_else(|| format!("--kill-and-restart: no node `{}`", f.node))?;
        schedule.push((f.at, i.index(), false));
        schedule.push((f.at + f.down, i.index(), true));
    }
    schedule.sort_by_key(|s| s.0);
    let mut schedule = std::collections::VecDeque::from(schedule);

    let start = Instant::now();
    let us = |t: Instant| t.duration_since(start).as_micros() as u64;
    let mut next_id: i64 = 1;
    let mut last_reply = start;
    let mut last_progress = Instant::now();
    let mut interval_ok = 0u64;
    let mut last_sample = start;
    let mut routed = Vec::new();
    let mut send_requests = |k: u64, sent: &mut u64, checker: &mut Checker| {
        let mut per_dest: BTreeMap<u32, Vec<Envelope>> = BTreeMap::new();
        let now = us(Instant::now());
        for _ in 0..k {
            if *sent >= total {
                break;
            }
            let id = next_id;
            next_id += 1;
            let (op, tuple) = workload.request(id);
            let input = workload.ops[op].input;
            for &t in workload.targets(id, &targets[op]) {
                routed = route(&cluster.program, &cluster.deployment, t, input, &tuple);
                for inst in &routed {
                    per_dest
                        .entry(inst.0)
                        .or_default()
                        .push(Envelope::Fact { relation: input.0, tuple: tuple.clone() });
                }
            }
            checker.sent(id, op, tuple, now);
            *sent += 1;
        }
        for (to, batch) in per_dest {
            endpoint.send(to, batch);
        }
    };
    let mut sent = 0u64;
    if closed {
        send_requests(clients as u64, &mut sent, &mut checker);
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sampler = tokio::time::interval(opts.interval);
    sampler.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dead = HashSet::new();
    loop {
        if sent >= total && checker.outstanding() == 0 {
            break;
        }
        if last_progress.elapsed() > opts.reply_timeout && schedule.is_empty() {
            break;
        }
        tokio::select! {
            d = rx.recv() => {
                let Some(d) = d else { break };
                endpoint.ack(d.from, d.seq);
                let mut next = 0u64;
                for env in d.batch {
                    let Envelope::Fact { relation, tuple } = env else { continue };
                    let relation = compart_analysis::model::RelationId(relation);
                    if !workload.is_output(relation) {
                        continue;
                    }
                    let now = Instant::now();
                    match checker.reply(relation, &tuple) {
                        Ok((_, at)) => {
                            let lat = us(now).saturating_sub(at).max(1);
                            let _ = hist.record(lat);
                            let _ = interval_hist.record(lat);
                            summary.ok += 1;
                            interval_ok += 1;
                            last_reply = now;
                            next += 1;
                        }
                        Err(e) => {
                            match &e {
                                ReplyError::Duplicate(_) => summary.duplicates += 1,
                                ReplyError::Mismatch { .. } => { summary.mismatched += 1; next += 1; }
                                ReplyError::Unexpected(_) => summary.unexpected += 1,
                            }
                            if errors.len() < 20 {
                                errors.push(e.to_string());
                            }
                        }
                    }
                    last_progress = now;
                }
                if closed && next > 0 {
                    send_requests(next, &mut sent, &mut checker);
                }
            }
            _ = ticker.tick(), if !closed && sent < total => {
                let rate = opts.rate.unwrap_or(1.0);
                let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
                if due > sent {
                    send_requests(due - sent, &mut sent, &mut checker);
                    // Checked: a long timeout may reach back before the clock's origin.
                    if let Some(t) = Instant::now().checked_sub(opts.reply_timeout / 2) {
                        last_progress = last_progress.max(t);
                    }
                }
            }
            _ = sampler.tick() => {
                let now = Instant::now();
                let dt = now.duration_since(last_sample).as_secs_f64().max(1e-9);
                if now > start + opts.interval / 2 {
                    timeline.push(Sample {
                        t_s: now.duration_since(start).as_secs_f64(),
                        throughput_rps: interval_ok as f64 / dt,
                        p50_us: if interval_hist.is_empty() { 0 } else { interval_hist.value_at_quantile(0.5) },
                        p99_us: if interval_hist.is_empty() { 0 } else { interval_hist.value_at_quantile(0.99) },
                    });
                }
                interval_hist.reset();
                interval_ok = 0;
                last_sample = now;
                pb.set_position(summary.ok);
                while schedule.front().is_some_and(|s| start.elapsed() >= s.0) {
                    let Some((_, i, restart)) = schedule.pop_front() else { break };
                    let name = cluster.deployment.nodes[i].name.clone();
                    if restart {
                        start_node(&mut children, &mut quota, i, node_command(i))
                            .map_err(|e| format!("cannot restart {name}: {e}"))?;
                        restarts[i] += 1;
                        dead.remove(&i);
                    } else {
                        children.kill_node(i);
                        dead.insert(i);
                    }
                    pb.set_message(format!("{} {name}", if restart { "restarted" } else { "killed" }));
                    faults_done.push(FaultEvent {
                        t_s: start.elapsed().as_secs_f64(),
                        node: name,
                        action: if restart { "restart" } else { "kill" }.into(),
                    });
                    last_progress = Instant::now();
                }
                for (i, status) in children.exited() {
                    let name = cluster.deployment.nodes[i].name.clone();
                    if status.code() == Some(FAILPOINT_EXIT) && opts.durable.is_some() {
                        // The test hook stopped it (see `node::FAILPOINT_ENV`): back at once, as
                        // a supervisor would bring back a crashed durable node.
                        start_node(&mut children, &mut quota, i, node_command(i))
                            .map_err(|e| format!("cannot restart {name}: {e}"))?;
                        restarts[i] += 1;
                        let t_s = start.elapsed().as_secs_f64();
                        faults_done.push(FaultEvent { t_s, node: name.clone(), action: "crash".into() });
                        faults_done.push(FaultEvent { t_s, node: name, action: "restart".into() });
                        last_progress = Instant::now();
                        continue;
                    }
                    errors.push(format!("node {name} exited unexpectedly ({status})"));
                    dead.insert(i);
                }
            }
            _ = sigint.recv() => {
                summary.interrupted = true;
                break;
            }
            _ = sigterm.recv() => {
                summary.interrupted = true;
                break;
            }
        }
    }
    pb.finish_and_clear();
    summary.sent = sent;
    summary.missing = checker.outstanding() as u64;
    summary.duration_s = last_reply.duration_since(start).as_secs_f64();
    summary.throughput_rps = if summary.duration_s > 0.0 { summary.ok as f64 / summary.duration_s } else { 0.0 };
    summary.latency_us = Latency::of(&hist);

    // ---- Statistics from every live node, then stop.
    // Messages still in flight (a lagging replica's answers that no reply waited for) land first,
    // so that the counters of sender and receiver agree.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let alive: Vec<usize> = (0..n).filter(|i| !dead.contains(i)).collect();
    for &i in &alive {
        endpoint.send(i as u32, vec![Envelope::Control(Control::CollectStats)]);
    }
    let mut stats: BTreeMap<usize, NodeStats> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + STATS_TIMEOUT;
    while stats.len() < alive.len() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(d)) => {
                endpoint.ack(d.from, d.seq);
                for env in d.batch {
                    if let Envelope::Control(Control::Stats(json)) = env {
                        match serde_json::from_str::<NodeStats>(&json) {
                            Ok(s) => {
                                stats.insert(d.from as usize, s);
                            }
                            Err(e) => errors.push(format!("node {} sent unreadable statistics: {e}", d.from)),
                        }
                    }
                }
            }
            _ => break,
        }
    }
    for &i in &alive {
        endpoint.send(i as u32, vec![Envelope::Control(Control::Stop)]);
    }
    endpoint.drain(Duration::from_secs(1)).await;
    children.wait_all(Duration::from_secs(3));

    // ---- The report.
    let total_cpu: f64 =
        stats.values().map(|s| s.cpu_user_s + s.cpu_sys_s).sum::<f64>() + children.cpu_of_killed.iter().sum::<f64>();
    let per_req = |x: f64| if summary.ok > 0 { x / summary.ok as f64 } else { 0.0 };
    summary.cpu_us_per_request = per_req(total_cpu * 1e6);
    let (user, sys) = super::own_cpu_seconds();
    summary.launcher_cpu_s = user + sys;
    let nodes = cluster
        .deployment
        .nodes
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let s = stats.get(&i).cloned().unwrap_or_default();
            let cpu = s.cpu_user_s + s.cpu_sys_s + children.cpu_of_killed[i];
            let per = |x: u64| if x > 0 { cpu * 1e6 / x as f64 } else { 0.0 };
            NodeReport {
                name: spec.name.clone(),
                component: program.component(spec.component).name.clone(),
                addr: spec.addr.0,
                pid: if s.pid != 0 { s.pid } else { children.pid(i).unwrap_or(0) },
                restarts: restarts[i],
                reported: stats.contains_key(&i),
                cpu_s: cpu,
                cpu_us_per_request: per_req(cpu * 1e6),
                ticks: s.ticks,
                tick_s: s.tick_s,
                cpu_us_per_tick: per(s.ticks),
                cpu_us_per_frame: per(s.net.frames_recv + s.net.frames_sent),
                throttled: quota.as_ref().and_then(|q| q.throttled(i)),
                facts_in: s.facts_in,
                facts_sent: s.facts_sent,
                facts_out: s.facts_out,
                net: s.net,
                tables: s.tables,
                recovered_changes: s.recovered_changes,
            }
        })
        .collect();
    let text = cluster.analysis.text();
    let rules = program
        .rule_ids()
        .filter(|&r| program.rule(r).kind != RuleKind::Fact)
        .map(|r| {
            let rule = program.rule(r);
            let facts: u64 = stats.values().filter_map(|s| s.rule_facts.get(r.index())).sum();
            let nanos: u64 = stats.values().filter_map(|s| s.rule_nanos.get(r.index())).sum();
            let src = text.get(rule.range.as_range()).unwrap_or("");
            RuleReport {
                rule: r.0,
                component: program.component(rule.component).name.clone(),
                head: rule.head.relation.clone(),
                line: cluster.analysis.line_index.line_col(rule.range.start as usize).line + 1,
                text: src.split_whitespace().collect::<Vec<_>>().join(" "),
                facts,
                eval_s: nanos as f64 / 1e9,
                facts_per_request: per_req(facts as f64),
            }
        })
        .collect();
    let first = &workload.ops[0];
    Ok(RunReport {
        schema: SCHEMA.into(),
        program: opts.program.display().to_string(),
        deployment: opts.deploy.display().to_string(),
        workload: WorkloadReport {
            mode: if closed { "closed" } else { "open" }.into(),
            clients: closed.then_some(clients),
            rate: opts.rate,
            requests: total,
            entry: program.component(first.entry).name.clone(),
            input: first.input_name.clone(),
            output: first.output_name.clone(),
            send_to: format!("{:?}", workload.send_to).to_lowercase(),
            mix: workload
                .ops
                .iter()
                .enumerate()
                .map(|(i, o)| OpReport {
                    entry: program.component(o.entry).name.clone(),
                    input: o.input_name.clone(),
                    output: o.output_name.clone(),
                    weight: o.weight,
                    sent: checker.sent_per_op[i],
                    ok: checker.ok_per_op[i],
                })
                .collect(),
            keys: workload.keys.as_ref().map(|k| KeysReport {
                column: k.column.clone(),
                count: k.count,
                distribution: k.distribution.to_string(),
            }),
            seed: workload.seed,
        },
        cpu_per_node: opts.cpu_per_node,
        summary,
        timeline,
        nodes,
        rules,
        faults: faults_done,
        errors,
    })
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
