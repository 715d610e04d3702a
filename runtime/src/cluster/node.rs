//! One node process (`compart node`): an engine [`Node`] driven by network deliveries.
//!
//! The loop: wait for a delivery (unless the engine wants a tick anyway), take everything that
//! is queued, run one tick, route its sends (one frame per destination per tick), send outputs
//! to the launcher, and only then acknowledge the deliveries: a crash before the ack makes the
//! senders retransmit, and with `--durable` the tick's table changes are on disk by then.
//!
//! With `--durable` a tick is atomic with what it sends: its record holds its table changes,
//! the frames it sends (numbered before they leave) and the last frame it processed from each
//! sender, and is on disk before any frame leaves. A node killed after the write restarts with
//! the same network incarnation, sends the logged frames again (receivers drop those they
//! processed) and drops the retransmitted inputs it had processed; killed before it, nothing of
//! the tick happened. The log is compacted (every table fact, every mark, the frames not yet
//! acknowledged) when it has doubled since the last compaction.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use compart_analysis::model::{RelationId, RelationKind};

use super::{own_cpu_seconds, Cluster, Control, Envelope, NodeStats};
use crate::durability::{self, NetRecord};
use crate::engine::{route_into, Node, NodeOptions};
use crate::net::{Endpoint, NetConfig, OutFrame, Resume, Secret};
use crate::value::NodeAddr;

/// At most this many facts enter one tick; the rest wait for the next (bounded tick latency).
const MAX_FACTS_PER_TICK: usize = 20_000;
/// Acknowledgements are cumulative and sent at most this often per peer: an ack frame per tick
/// would double the frames (and system calls) of a node that gets one small message per tick.
/// Senders keep unacknowledged frames for retransmission, so this only delays their release.
const ACK_INTERVAL: Duration = Duration::from_millis(5);
/// A durable log is compacted once it is this long and twice its length after the last
/// compaction (`COMPART_LOG_COMPACT_BYTES` overrides the minimum, for tests).
const COMPACT_MIN_BYTES: u64 = 8 << 20;

/// Test hook, read by node processes only: `COMPART_FAILPOINT=<point>:<probability>[,...]`
/// makes the process exit at once (`_exit`, as a kill would: nothing flushed, no destructor
/// run) at that point of a tick, with the given probability per tick, and exit status
/// [`FAILPOINT_EXIT`], which the launcher answers by restarting the node. Points:
/// `before-log` (the tick computed, nothing written), `after-log-before-send` (its record on
/// disk, nothing sent), `after-send` (sent, its inputs not acknowledged).
pub const FAILPOINT_ENV: &str = "COMPART_FAILPOINT";
/// The exit status of a node stopped by a failpoint.
pub const FAILPOINT_EXIT: i32 = 86;

#[derive(Default)]
struct Failpoints {
    before_log: f64,
    after_log: f64,
    after_send: f64,
    rng: u64,
}

impl Failpoints {
    fn from_env() -> Result<Failpoints, String> {
        let mut f = Failpoints { rng: crate::net::fresh_incarnation() | 1, ..Failpoints::default() };
        let Ok(spec) = std::env::var(FAILPOINT_ENV) else { return Ok(f) };
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let (point, p) =
                item.split_once(':').ok_or_else(|| format!("{FAILPOINT_ENV}: `{item}` is not point:probability"))?;
            let p: f64 = p
                .parse()
                .ok()
                .filter(|p: &f64| (0.0..=1.0).contains(p))
                .ok_or_else(|| format!("{FAILPOINT_ENV}: `{p}` is not a probability"))?;
            match point {
                "before-log" => f.before_log = p,
                "after-log-before-send" => f.after_log = p,
                "after-send" => f.after_send = p,
                _ => return Err(format!("{FAILPOINT_ENV}: unknown point `{point}`")),
            }
        }
        Ok(f)
    }

    fn hit(&mut self, p: f64, point: &str, name: &str) {
        if p <= 0.0 {
            return;
        }
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        if ((z >> 11) as f64 / (1u64 << 53) as f64) < p {
            eprintln!("compart node {name}: failpoint {point}: exiting");
            // SAFETY: _exit has no preconditions; it ends the process without running anything.
            unsafe { libc::_exit(FAILPOINT_EXIT) }
        }
    }
}

/// The network state a durable node logs with its ticks.
struct DurableNet {
    /// Per sender: (its incarnation, the last of its frames processed).
    marks: HashMap<u32, (u64, u64)>,
    /// Senders whose mark moved since the last record.
    moved: Vec<u32>,
    /// Frames logged and not known to be acknowledged, per destination.
    unacked: HashMap<u32, VecDeque<OutFrame>>,
    /// Per destination: one past the last logged frame.
    next_seq: HashMap<u32, u64>,
    compact_min: u64,
    compact_at: u64,
    incarnation: u64,
}

impl DurableNet {
    fn new(resume: &Resume, incarnation: u64, log_len: u64) -> DurableNet {
        let compact_min =
            std::env::var("COMPART_LOG_COMPACT_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(COMPACT_MIN_BYTES);
        DurableNet {
            marks: resume.inbound.iter().map(|&(from, inc, seq)| (from, (inc, seq))).collect(),
            moved: Vec::new(),
            unacked: resume.outbox.iter().map(|(to, _, frames)| (*to, frames.iter().cloned().collect())).collect(),
            next_seq: resume.outbox.iter().map(|(to, next, _)| (*to, *next)).collect(),
            compact_min,
            compact_at: compact_min.max(2 * log_len),
            incarnation,
        }
    }

    fn processed(&mut self, from: u32, incarnation: u64, seq: u64) {
        let mark = self.marks.entry(from).or_insert((incarnation, 0));
        if mark.0 != incarnation {
            *mark = (incarnation, 0); // a sender that restarted without its log numbers afresh
        }
        if seq > mark.1 {
            mark.1 = seq;
            self.moved.push(from);
        }
    }

    /// Forgets the frames their receivers acknowledged (frames to oneself: processed).
    fn trim(&mut self, me: u32, endpoint: &Endpoint<Envelope>) {
        for (&to, frames) in &mut self.unacked {
            let acked = if to == me { self.marks.get(&me).map_or(0, |m| m.1) } else { endpoint.acked(to) };
            while frames.front().is_some_and(|f| f.seq <= acked) {
                frames.pop_front();
            }
        }
    }

    /// Logs the last tick with `per_dest` (numbered now), then sends: the tick and its sends are
    /// one record. Compacts the log when it is due.
    fn commit_and_send(
        &mut self,
        node: &mut Node,
        endpoint: &Endpoint<Envelope>,
        per_dest: BTreeMap<u32, Vec<Envelope>>,
        failpoints: &mut Failpoints,
        name: &str,
    ) -> Result<(), String> {
        let mut net = NetRecord::default();
        let mut prepared = Vec::with_capacity(per_dest.len());
        for (to, batch) in per_dest {
            let Some(frames) = endpoint.prepare(to, batch) else { continue };
            if let Some(last) = frames.last() {
                self.next_seq.insert(to, last.seq + 1);
            }
            net.frames.extend(frames.iter().map(|f| (to, f.clone())));
            prepared.push((to, frames));
        }
        failpoints.hit(failpoints.before_log, "before-log", name);
        // Marks alone are not worth a record (and an fsync): inputs that changed no table and
        // sent nothing are harmless to process again. They go with the next record.
        self.moved.sort_unstable();
        self.moved.dedup();
        net.inbound = self.moved.iter().map(|from| (*from, self.marks[from].0, self.marks[from].1)).collect();
        let wrote = if net.frames.is_empty() && !node.journal_pending() {
            false
        } else {
            node.commit_tick(&net).map_err(|e| format!("durability log: {e}"))?
        };
        if wrote {
            self.moved.clear();
        }
        failpoints.hit(failpoints.after_log, "after-log-before-send", name);
        for (to, frames) in prepared {
            self.unacked.entry(to).or_default().extend(frames.iter().cloned());
            endpoint.send_prepared(to, frames);
        }
        failpoints.hit(failpoints.after_send, "after-send", name);
        if wrote && node.log_len().is_some_and(|l| l > self.compact_at) {
            self.trim(endpoint.me(), endpoint);
            let net = NetRecord {
                inbound: self.marks.iter().map(|(&from, &(inc, seq))| (from, inc, seq)).collect(),
                next_seq: self.next_seq.iter().map(|(&to, &next)| (to, next)).collect(),
                frames: self.unacked.iter().flat_map(|(&to, fs)| fs.iter().map(move |f| (to, f.clone()))).collect(),
            };
            node.compact_log(&net, self.incarnation).map_err(|e| format!("durability log compaction: {e}"))?;
            self.moved.clear();
            self.compact_at = self.compact_min.max(2 * node.log_len().unwrap_or(0));
        } else if !prepared_is_empty(&self.unacked) {
            self.trim(endpoint.me(), endpoint);
        }
        Ok(())
    }
}

fn prepared_is_empty(unacked: &HashMap<u32, VecDeque<OutFrame>>) -> bool {
    unacked.values().all(VecDeque::is_empty)
}

pub struct NodeArgs {
    pub program: PathBuf,
    pub deploy: PathBuf,
    pub index: u32,
    pub launcher: SocketAddr,
    pub ports: Option<Vec<u16>>,
    pub durable: Option<PathBuf>,
    /// Start from the intact prefix of a damaged durability log (the rest is kept aside)
    /// instead of refusing to start.
    pub accept_log_loss: bool,
    pub secret: Secret,
    pub max_frame_bytes: usize,
}

/// Runs the node until the launcher says stop (or the launcher's connection is gone for good).
pub fn run_node(args: NodeArgs) -> Result<(), String> {
    let cluster = Cluster::load(&args.program, &args.deploy, args.ports.as_deref())?;
    let me = NodeAddr(args.index);
    let spec = cluster
        .deployment
        .node(me)
        .ok_or_else(|| format!("node index {} is not in the deployment", args.index))?
        .clone();
    let mut node = Node::with_options(
        cluster.program.clone(),
        me,
        cluster.deployment.clone(),
        NodeOptions { check_invariants: false },
    );
    let failpoints = Failpoints::from_env()?;
    let mut recovered = 0;
    let mut durable = None;
    if let Some(dir) = &args.durable {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = durability::log_path(dir, &spec.name);
        let hash = durability::program_hash(cluster.analysis.text());
        // Refuses (the node does not start) rather than lose intact records; see durability.rs.
        let report = node.recover(&path, &hash, args.accept_log_loss).map_err(|e| e.to_string())?;
        recovered = report.changes;
        node.defer_log(true);
        let mut resume = report.net;
        let mut incarnation = report.incarnation;
        if report.lost_records {
            // Records are missing (the loss was accepted): sequence numbers this node used may
            // be numbered again, so it starts a new incarnation, whose frames peers never saw,
            // and forgets the frames of the old one.
            incarnation = crate::net::fresh_incarnation();
            resume.outbox.clear();
            let net = NetRecord { inbound: resume.inbound.clone(), next_seq: Vec::new(), frames: Vec::new() };
            node.compact_log(&net, incarnation).map_err(|e| format!("durability log compaction: {e}"))?;
        }
        let len = node.log_len().unwrap_or(0);
        durable = Some((DurableNet::new(&resume, incarnation, len), resume, incarnation));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(node_loop(&cluster, node, &args, spec.name, recovered, durable, failpoints))
}

async fn node_loop(
    cluster: &Cluster,
    mut node: Node,
    args: &NodeArgs,
    name: String,
    recovered: usize,
    durable: Option<(DurableNet, Resume, u64)>,
    mut failpoints: Failpoints,
) -> Result<(), String> {
    let launcher = cluster.launcher_id();
    let mut peers: Vec<(u32, SocketAddr)> = cluster.deployment.nodes.iter().map(|n| (n.addr.0, n.socket)).collect();
    peers.push((launcher, args.launcher));
    let me = args.index;
    let listen = cluster.deployment.nodes[me as usize].socket;
    let mut config = NetConfig::new(me, listen, peers);
    config.secret = args.secret.clone();
    config.max_frame_bytes = args.max_frame_bytes;
    let mut durable = durable.map(|(net, resume, incarnation)| {
        config.resume = resume;
        config.incarnation = incarnation;
        net
    });
    let (endpoint, mut rx) =
        Endpoint::<Envelope>::start(config).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let endpoint = Arc::new(endpoint);
    // `Ready` goes out from the loop, like every other frame (a durable node logs it).
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    {
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            endpoint.wait_connected().await;
            let _ = ready_tx.send(());
        });
    }
    let program = cluster.program.clone();
    let deployment = cluster.deployment.clone();
    let mut routed = Vec::new();
    let mut warned = 0usize;
    // Deliveries processed but not yet acknowledged: sender -> highest sequence number.
    let mut acks: HashMap<u32, u64> = HashMap::new();
    let mut ack_due: Option<tokio::time::Instant> = None;
    loop {
        let mut inputs = Vec::new();
        let mut stop = false;
        let mut stats_wanted = false;
        let mut ready = ready_rx.try_recv().is_ok();
        let mut take = |d: crate::net::Delivery<Envelope>, inputs: &mut Vec<_>| {
            let e = acks.entry(d.from).or_insert(0);
            *e = (*e).max(d.seq);
            if let Some(net) = &mut durable {
                net.processed(d.from, d.incarnation, d.seq);
            }
            for env in d.batch {
                match env {
                    Envelope::Fact { relation, tuple } => inputs.push((RelationId(relation), tuple)),
                    Envelope::Control(Control::Stop) => stop = true,
                    Envelope::Control(Control::CollectStats) => stats_wanted = true,
                    Envelope::Control(_) => {}
                }
            }
        };
        if !node.wants_tick() && !ready {
            let flush_acks = async {
                match ack_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => take(d, &mut inputs),
                    None => return Ok(()),
                },
                Some(()) = ready_rx.recv() => ready = true,
                () = flush_acks => {}
            }
        }
        while inputs.len() < MAX_FACTS_PER_TICK {
            match rx.try_recv() {
                Ok(d) => take(d, &mut inputs),
                Err(_) => break,
            }
        }
        let mut per_dest: BTreeMap<u32, Vec<Envelope>> = BTreeMap::new();
        if !inputs.is_empty() || node.wants_tick() {
            let out = node.tick(inputs);
            for w in out.warnings {
                if warned < 20 {
                    eprintln!("compart node {name}: {w}");
                    warned += 1;
                }
            }
            for (dest, relation, tuple) in out.sends {
                route_into(&program, &deployment, dest, relation, &tuple, &mut routed);
                for &to in &routed {
                    per_dest
                        .entry(to.0)
                        .or_default()
                        .push(Envelope::Fact { relation: relation.0, tuple: tuple.clone() });
                }
            }
            if !out.outputs.is_empty() {
                let outputs = out.outputs.into_iter().map(|(r, tuple)| Envelope::Fact { relation: r.0, tuple });
                per_dest.entry(launcher).or_default().extend(outputs);
            }
        }
        if ready {
            per_dest.entry(launcher).or_default().push(Envelope::Control(Control::Ready));
        }
        if stats_wanted {
            let stats = collect_stats(&node, &name, &endpoint, recovered);
            let json = serde_json::to_string(&stats).unwrap_or_default();
            per_dest.entry(launcher).or_default().push(Envelope::Control(Control::Stats(json)));
        }
        let ticked = !per_dest.is_empty() || node.journal_pending();
        match &mut durable {
            _ if !ticked => {}
            Some(net) => net.commit_and_send(&mut node, &endpoint, per_dest, &mut failpoints, &name)?,
            None => {
                failpoints.hit(failpoints.after_log, "after-log-before-send", &name);
                for (to, batch) in per_dest {
                    endpoint.send(to, batch);
                }
                failpoints.hit(failpoints.after_send, "after-send", &name);
            }
        }
        // Acks only after the tick that processed the deliveries (and, with --durable, after its
        // log write): a crash before makes the senders retransmit.
        let now = tokio::time::Instant::now();
        if !acks.is_empty() && ack_due.is_none() {
            ack_due = Some(now + ACK_INTERVAL);
        }
        if ack_due.is_some_and(|at| at <= now) || stop {
            for (from, seq) in acks.drain() {
                endpoint.ack(from, seq);
            }
            ack_due = None;
        }
        if stop {
            endpoint.drain(Duration::from_secs(2)).await;
            return Ok(());
        }
        // Let the network tasks run between ticks.
        tokio::task::yield_now().await;
    }
}

fn collect_stats(node: &Node, name: &str, endpoint: &Endpoint<Envelope>, recovered: usize) -> NodeStats {
    let profile = node.profile();
    let (cpu_user_s, cpu_sys_s) = own_cpu_seconds();
    let program = &node.program().program;
    let tables = program
        .component(node.component())
        .relations
        .iter()
        .filter(|&&r| program.relation(r).kind == RelationKind::Table)
        .map(|&r| (program.relation(r).name.clone(), node.facts(r).len()))
        .collect();
    NodeStats {
        name: name.to_string(),
        pid: std::process::id(),
        cpu_user_s,
        cpu_sys_s,
        ticks: profile.ticks,
        tick_s: profile.tick_nanos as f64 / 1e9,
        facts_in: profile.facts_in,
        facts_sent: profile.facts_sent,
        facts_out: profile.facts_out,
        rejected_inputs: profile.rejected_inputs,
        net: endpoint.stats(),
        rule_facts: profile.rule_facts.clone(),
        rule_nanos: profile.rule_nanos.clone(),
        tables,
        recovered_changes: recovered,
    }
}
