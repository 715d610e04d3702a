//! The workload half of a run, the same for the local launcher (`compart run`) and for a client
//! attached to running nodes (`compart load`): drive the requests, check every reply, sample the
//! timeline, collect the nodes' statistics, and build the [`RunReport`]. What differs, starting
//! and killing node processes, is the caller's [`Supervisor`].

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use compart_analysis::model::RuleKind;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::signal::unix::Signal;
use tokio::sync::mpsc::UnboundedReceiver;

use super::launcher::RunOptions;
use super::{Cluster, Control, Envelope, NodeStats};
use crate::engine::route;
use crate::loadgen::{Checker, ReplyError, Workload};
use crate::net::{Delivery, Endpoint};
use crate::report::{
    FaultEvent, KeysReport, Latency, NodeReport, OpReport, RuleReport, RunReport, Sample, Summary, WorkloadReport,
    SCHEMA,
};
use crate::value::NodeAddr;

pub const DEFAULT_CLIENTS: usize = 16;
const STATS_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `RunOptions::progress_lines` prints a line.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(1);

/// What starts, kills and watches the node processes during a run.
pub trait Supervisor {
    /// Called every sampling interval, `elapsed` after the workload started: apply the faults
    /// due, notice nodes that exited (recording events and errors). Returns whether anything
    /// happened that restarts the reply timeout.
    fn poll(
        &mut self,
        elapsed: Duration,
        faults: &mut Vec<FaultEvent>,
        errors: &mut Vec<String>,
        pb: &ProgressBar,
    ) -> Result<bool, String>;
    /// Whether faults are still scheduled (the run does not end before them).
    fn pending(&self) -> bool;
    /// Nodes known to be down (not asked for statistics).
    fn down(&self) -> &HashSet<usize>;
    /// Node `i`'s process id, restarts, CPU seconds of its killed processes, and throttling.
    fn node_extra(&self, i: usize) -> NodeExtra;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct NodeExtra {
    pub pid: Option<u32>,
    pub restarts: u32,
    pub cpu_of_killed: f64,
    pub throttled: Option<(u64, u64)>,
}

/// Nodes someone else runs (`compart load`): nothing to start or watch.
pub struct Attached {
    pub none_down: HashSet<usize>,
}

impl Supervisor for Attached {
    fn poll(
        &mut self,
        _: Duration,
        _: &mut Vec<FaultEvent>,
        _: &mut Vec<String>,
        _: &ProgressBar,
    ) -> Result<bool, String> {
        Ok(false)
    }
    fn pending(&self) -> bool {
        false
    }
    fn down(&self) -> &HashSet<usize> {
        &self.none_down
    }
    fn node_extra(&self, _: usize) -> NodeExtra {
        NodeExtra::default()
    }
}

/// A workload ready to run against connected nodes.
pub struct Driver<'a> {
    pub cluster: &'a Cluster,
    pub opts: &'a RunOptions,
    pub workload: Workload,
    /// Per op: the logical nodes of its input's component.
    pub targets: Vec<Vec<NodeAddr>>,
    pub endpoint: &'a Endpoint<Envelope>,
    /// The first request id (ids go up from it): 1 for a fresh cluster; an attached client
    /// starts above every earlier client's, so that a node's lingering answers to those are
    /// told apart.
    pub first_id: i64,
    /// Per node, its statistics before the workload (an attached client's nodes ran earlier
    /// workloads): the report shows what they did since.
    pub baseline: BTreeMap<usize, NodeStats>,
}

/// A first request id above every earlier client's (the clock's milliseconds x 1000): for a
/// client whose nodes may still hold answers to an earlier one's requests, an attached client's,
/// or a launcher whose durable nodes resend what they logged for the last run's launcher.
pub fn first_id_after_earlier_clients() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (now.as_millis() as i64).saturating_mul(1000).max(1)
}

/// What the workload loop measured.
pub struct Driven {
    pub summary: Summary,
    pub timeline: Vec<Sample>,
    pub checker: Checker,
    pub errors: Vec<String>,
    pub faults: Vec<FaultEvent>,
    pub stats: BTreeMap<usize, NodeStats>,
    pub closed: bool,
    pub clients: usize,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

impl<'a> Driver<'a> {
    /// The detected (or chosen) workload of the cluster's program, and where each op goes.
    pub fn new(cluster: &'a Cluster, opts: &'a RunOptions, endpoint: &'a Endpoint<Envelope>) -> Result<Self, String> {
        let program = &cluster.analysis.program;
        let mut choice = opts.choice.clone();
        if let Some(t) = &cluster.workload {
            choice = choice.merge_toml(t)?;
        }
        let workload = Workload::detect(program, &choice)?;
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
        Ok(Driver { cluster, opts, workload, targets, endpoint, first_id: 1, baseline: BTreeMap::new() })
    }

    /// Drives the workload until every request is answered, or no reply came for the reply
    /// timeout (and no fault is pending), or a signal; then collects every live node's statistics.
    pub async fn run(
        &self,
        rx: &mut UnboundedReceiver<Delivery<Envelope>>,
        sup: &mut dyn Supervisor,
        signals: &mut [Signal; 2],
    ) -> Result<Driven, String> {
        let opts = self.opts;
        let (workload, endpoint, cluster) = (&self.workload, self.endpoint, self.cluster);
        let n = cluster.deployment.nodes.len();
        let closed = opts.rate.is_none();
        let clients = opts.clients.unwrap_or(DEFAULT_CLIENTS).max(1);
        let total = opts.requests;
        let lines = opts.progress && opts.progress_lines;
        let pb = if opts.progress && !lines { ProgressBar::new(total) } else { ProgressBar::hidden() };
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
        let mut faults: Vec<FaultEvent> = Vec::new();

        let start = Instant::now();
        let us = |t: Instant| t.duration_since(start).as_micros() as u64;
        let mut next_id: i64 = self.first_id;
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
                for &t in workload.targets(id, &self.targets[op]) {
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
        let mut last_line = start;
        if lines {
            eprintln!("progress: 0/{total} replies");
        }
        if closed {
            send_requests(clients as u64, &mut sent, &mut checker);
        }
        let mut ticker = tokio::time::interval(Duration::from_millis(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sampler = tokio::time::interval(opts.interval);
        sampler.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let [sigint, sigterm] = signals;
        loop {
            if sent >= total && checker.outstanding() == 0 {
                break;
            }
            if last_progress.elapsed() > opts.reply_timeout && !sup.pending() {
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
                        // An answer to an earlier client's request (a lagging replica's).
                        if tuple.first().and_then(crate::value::Value::as_int).is_some_and(|id| id < self.first_id) {
                            summary.earlier_replies += 1;
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
                    if lines && now.duration_since(last_line) >= PROGRESS_LINE_EVERY {
                        eprintln!("progress: {}/{total} replies", summary.ok);
                        last_line = now;
                    }
                    if sup.poll(start.elapsed(), &mut faults, &mut errors, &pb)? {
                        last_progress = Instant::now();
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

        // ---- Statistics from every live node.
        // Messages still in flight (a lagging replica's answers that no reply waited for) land
        // first, so that the counters of sender and receiver agree.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let alive: Vec<usize> = (0..n).filter(|i| !sup.down().contains(i)).collect();
        let mut stats = collect_stats(endpoint, rx, &alive, &mut errors).await;
        for (i, s) in stats.iter_mut() {
            if let Some(before) = self.baseline.get(i) {
                *s = s.since(before);
            }
        }
        Ok(Driven { summary, timeline, checker, errors, faults, stats, closed, clients })
    }

    /// The report of a finished run.
    pub fn report(&self, driven: Driven, sup: &dyn Supervisor) -> RunReport {
        let Driven { mut summary, timeline, checker, errors, faults, stats, closed, clients } = driven;
        let (cluster, opts, workload) = (self.cluster, self.opts, &self.workload);
        let program = &cluster.analysis.program;
        let extra: Vec<NodeExtra> = (0..cluster.deployment.nodes.len()).map(|i| sup.node_extra(i)).collect();
        let total_cpu: f64 = stats.values().map(|s| s.cpu_user_s + s.cpu_sys_s).sum::<f64>()
            + extra.iter().map(|e| e.cpu_of_killed).sum::<f64>();
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
                let e = extra[i];
                let cpu = s.cpu_user_s + s.cpu_sys_s + e.cpu_of_killed;
                let per = |x: u64| if x > 0 { cpu * 1e6 / x as f64 } else { 0.0 };
                NodeReport {
                    name: spec.name.clone(),
                    component: program.component(spec.component).name.clone(),
                    addr: spec.addr.0,
                    pid: if s.pid != 0 { s.pid } else { e.pid.unwrap_or(0) },
                    restarts: e.restarts,
                    reported: stats.contains_key(&i),
                    cpu_s: cpu,
                    cpu_us_per_request: per_req(cpu * 1e6),
                    ticks: s.ticks,
                    tick_s: s.tick_s,
                    cpu_us_per_tick: per(s.ticks),
                    cpu_us_per_frame: per(s.net.frames_recv + s.net.frames_sent),
                    throttled: e.throttled,
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
                    number: program.rule_number(r) as u32,
                    line: cluster.analysis.line_index.line_col(rule.range.start as usize).line + 1,
                    text: src.split_whitespace().collect::<Vec<_>>().join(" "),
                    facts,
                    eval_s: nanos as f64 / 1e9,
                    facts_per_request: per_req(facts as f64),
                }
            })
            .collect();
        let first = &workload.ops[0];
        RunReport {
            schema: SCHEMA.into(),
            program: opts.program.display().to_string(),
            deployment: opts.deploy.display().to_string(),
            workload: WorkloadReport {
                mode: if closed { "closed" } else { "open" }.into(),
                clients: closed.then_some(clients),
                rate: opts.rate,
                requests: opts.requests,
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
            faults,
            errors,
        }
    }
}

/// Asks the nodes `alive` for their statistics and waits for them (a few seconds at most).
pub async fn collect_stats(
    endpoint: &Endpoint<Envelope>,
    rx: &mut UnboundedReceiver<Delivery<Envelope>>,
    alive: &[usize],
    errors: &mut Vec<String>,
) -> BTreeMap<usize, NodeStats> {
    for &i in alive {
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
    stats
}

/// SIGINT and SIGTERM, registered first so that a signal at any point ends the run in order.
pub fn signals() -> Result<[Signal; 2], String> {
    let signal = |kind| tokio::signal::unix::signal(kind).map_err(|e| format!("cannot install a signal handler: {e}"));
    Ok([signal(tokio::signal::unix::SignalKind::interrupt())?, signal(tokio::signal::unix::SignalKind::terminate())?])
}
