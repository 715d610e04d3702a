//! One node process (`compart node`): an engine [`Node`] driven by network deliveries. Started by
//! the local launcher, or standalone by any supervisor (docs/deploying.md): it finds its peers in
//! the deployment file, sends outputs to the deployment's client, answers a client's `Ping` once
//! connected to every other node, and stops on a client's `Stop` or on SIGTERM/SIGINT.
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
use crate::net::{Endpoint, HostPort, NetConfig, OutFrame, Resume, Secret};
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
            crate::log::line(
                crate::log::Level::Warn,
                &format!("compart node {name}: "),
                &format!("failpoint {point}: exiting"),
            );
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

/// Which node of the deployment a process is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Which {
    /// Its address (index in the deployment): how `compart run` starts nodes.
    Index(u32),
    /// Its name as in run reports: `acceptor/1`, `acceptor/1.0`.
    Name(String),
    /// The `ordinal`-th process of `component`, in deployment order.
    Ordinal { component: String, ordinal: Ordinal },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ordinal {
    Number(u32),
    /// The trailing `-N` of the host name (a StatefulSet pod `paxos-acceptor-2`).
    Hostname,
}

impl std::str::FromStr for Ordinal {
    type Err = String;
    fn from_str(s: &str) -> Result<Ordinal, String> {
        if s == "hostname" {
            return Ok(Ordinal::Hostname);
        }
        s.parse().map(Ordinal::Number).map_err(|_| format!("`{s}`: expected a number or `hostname`"))
    }
}

/// The ordinal a host name ends with (`paxos-acceptor-2` -> 2).
pub fn ordinal_of_hostname(host: &str) -> Result<u32, String> {
    let short = host.split('.').next().unwrap_or(host);
    short
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .ok_or_else(|| format!("host name `{host}` does not end with `-N` (a StatefulSet pod's ordinal)"))
}

fn hostname() -> Result<String, String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(format!("cannot read the host name: {}", std::io::Error::last_os_error()));
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

pub struct NodeArgs {
    pub program: PathBuf,
    pub deploy: PathBuf,
    pub which: Which,
    /// The client to send outputs to: `compart run` gives its own address; by default the
    /// deployment's client address.
    pub client: Option<SocketAddr>,
    pub ports: Option<Vec<u16>>,
    /// Where to bind: by default the node's own address if it is an IP literal, else 0.0.0.0 on
    /// its port.
    pub listen: Option<SocketAddr>,
    /// Serve `/healthz` and `/readyz` here (see `health.rs`).
    pub health: Option<SocketAddr>,
    pub durable: Option<PathBuf>,
    /// Start from the intact prefix of a damaged durability log (the rest is kept aside)
    /// instead of refusing to start.
    pub accept_log_loss: bool,
    pub max_frame_bytes: usize,
    pub log_format: crate::log::LogFormat,
}

/// Why a node process ends with an error: `code` 2 when it could not start (configuration,
/// its address, its durability log), 1 when it failed while running.
#[derive(Debug)]
pub struct NodeFailure {
    pub code: u8,
    pub message: String,
}

fn config_error(message: impl Into<String>) -> NodeFailure {
    NodeFailure { code: 2, message: message.into() }
}

/// Finds the node `which` names in the deployment.
fn resolve(cluster: &Cluster, which: &Which) -> Result<NodeAddr, String> {
    let d = &cluster.deployment;
    match which {
        Which::Index(i) => {
            d.node(NodeAddr(*i)).map(|n| n.addr).ok_or_else(|| format!("node index {i} is not in the deployment"))
        }
        Which::Name(name) => d.by_name(name).ok_or_else(|| {
            let names: Vec<&str> = d.nodes.iter().take(12).map(|n| n.name.as_str()).collect();
            format!(
                "no node `{name}` in the deployment (nodes: {}{})",
                names.join(", "),
                if d.nodes.len() > 12 { ", ..." } else { "" }
            )
        }),
        Which::Ordinal { component, ordinal } => {
            let program = &cluster.analysis.program;
            let id = program
                .component_by_name(component)
                .ok_or_else(|| format!("`{component}` is not a component of the program"))?;
            let ordinal = match ordinal {
                Ordinal::Number(n) => *n,
                Ordinal::Hostname => ordinal_of_hostname(&hostname()?)?,
            };
            let count = d.nodes.iter().filter(|n| n.component == id).count();
            d.by_ordinal(id, ordinal).ok_or_else(|| {
                format!("component `{component}` has {count} processes in the deployment, so no ordinal {ordinal}")
            })
        }
    }
}

/// Runs the node until a client says stop, or SIGTERM or SIGINT.
pub fn run_node(args: NodeArgs) -> Result<(), NodeFailure> {
    let cluster = Cluster::load(&args.program, &args.deploy, args.ports.as_deref()).map_err(config_error)?;
    let me = resolve(&cluster, &args.which).map_err(|e| config_error(format!("{}: {e}", args.deploy.display())))?;
    let spec = cluster.deployment.node(me).cloned().ok_or_else(|| config_error("node vanished"))?;
    crate::log::init(args.log_format, &spec.name);
    let secret = super::required_secret(&cluster.deployment).map_err(config_error)?;
    let mut node = Node::with_options(
        cluster.program.clone(),
        me,
        cluster.deployment.clone(),
        NodeOptions { check_invariants: false },
    );
    let failpoints = Failpoints::from_env().map_err(config_error)?;
    let mut recovered = 0;
    let mut durable = None;
    if let Some(dir) = &args.durable {
        std::fs::create_dir_all(dir).map_err(|e| config_error(format!("cannot create {}: {e}", dir.display())))?;
        let path = durability::log_path(dir, &spec.name);
        let hash = durability::program_hash(cluster.analysis.text());
        // Refuses (the node does not start) rather than lose intact records; see durability.rs.
        let report = node.recover(&path, &hash, args.accept_log_loss).map_err(|e| config_error(e.to_string()))?;
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
            node.compact_log(&net, incarnation).map_err(|e| config_error(format!("durability log compaction: {e}")))?;
        }
        let len = node.log_len().unwrap_or(0);
        durable = Some((DurableNet::new(&resume, incarnation, len), resume, incarnation));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| config_error(format!("cannot start the async runtime: {e}")))?;
    let setup = Setup { cluster: &cluster, args: &args, spec, secret, recovered };
    runtime.block_on(node_loop(setup, node, durable, failpoints))
}

/// What the node loop starts from.
struct Setup<'a> {
    cluster: &'a Cluster,
    args: &'a NodeArgs,
    spec: crate::deploy::NodeSpec,
    secret: Option<Vec<u8>>,
    recovered: usize,
}

fn info(name: &str, msg: &str) {
    crate::log::line(crate::log::Level::Info, &format!("compart node {name}: "), msg);
}

fn warn(name: &str, msg: &str) {
    crate::log::line(crate::log::Level::Warn, &format!("compart node {name}: "), msg);
}

async fn node_loop(
    setup: Setup<'_>,
    mut node: Node,
    durable: Option<(DurableNet, Resume, u64)>,
    mut failpoints: Failpoints,
) -> Result<(), NodeFailure> {
    let Setup { cluster, args, spec, secret, recovered } = setup;
    let name = spec.name.clone();
    let launcher = cluster.launcher_id();
    let client = match args.client {
        Some(a) => a.into(),
        None => cluster.deployment.client_address(),
    };
    let mut peers: Vec<(u32, HostPort)> =
        cluster.deployment.nodes.iter().map(|n| (n.addr.0, n.address.clone())).collect();
    peers.push((launcher, client.clone()));
    let me = spec.addr.0;
    let others: Vec<u32> = cluster.deployment.nodes.iter().map(|n| n.addr.0).filter(|&a| a != me).collect();
    let listen = match args.listen {
        Some(l) => l,
        None => spec
            .address
            .socket()
            .unwrap_or_else(|| SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), spec.address.port)),
    };
    let mut config = NetConfig::with_peers(me, listen, peers);
    config.name = Some(spec.address.clone());
    config.secret = secret.as_deref().map(Secret::new).unwrap_or_else(Secret::none);
    config.max_frame_bytes = args.max_frame_bytes;
    let mut durable = durable.map(|(net, resume, incarnation)| {
        config.resume = resume;
        config.incarnation = incarnation;
        net
    });
    let (endpoint, mut rx) = Endpoint::<Envelope>::start(config)
        .await
        .map_err(|e| config_error(format!("cannot listen on {listen} (as {}): {e}", spec.address)))?;
    let endpoint = Arc::new(endpoint);
    let is_ready = endpoint.connected_check(others.clone());
    if let Some(addr) = args.health {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| config_error(format!("--health {addr}: cannot listen: {e}")))?;
        tokio::spawn(super::health::serve(listener, Arc::new(endpoint.connected_check(others.clone()))));
    }
    info(
        &name,
        &format!(
            "listening on {listen} as {}, {} other nodes, client at {client}{}",
            spec.address,
            others.len(),
            if durable.is_some() { format!(", recovered {recovered} changes") } else { String::new() }
        ),
    );
    // SIGTERM (a supervisor's stop) and SIGINT end the node like a client's Stop.
    let (signal_tx, mut signal_rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    for (kind, what) in [
        (tokio::signal::unix::SignalKind::terminate(), "SIGTERM"),
        (tokio::signal::unix::SignalKind::interrupt(), "SIGINT"),
    ] {
        let mut signal = tokio::signal::unix::signal(kind)
            .map_err(|e| config_error(format!("cannot install a signal handler: {e}")))?;
        let tx = signal_tx.clone();
        tokio::spawn(async move {
            if signal.recv().await.is_some() {
                let _ = tx.send(what);
            }
        });
    }
    // `Ready` goes out from the loop, like every other frame (a durable node logs it).
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    {
        let endpoint = endpoint.clone();
        let others = others.clone();
        tokio::spawn(async move {
            endpoint.wait_connected_to(&others).await;
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
    // Pings to answer once connected to every other node: (client, number).
    let mut pings: Vec<(u32, u64)> = Vec::new();
    // The deployment's [timers] of this node's component: (input, period, next due).
    let start = tokio::time::Instant::now();
    let mut timers: Vec<(RelationId, Duration, tokio::time::Instant)> = cluster
        .timers
        .iter()
        .filter(|(r, _)| cluster.analysis.program.relation(*r).component == Some(spec.component))
        .map(|&(r, period)| (r, period, start + period))
        .collect();
    loop {
        let mut inputs = Vec::new();
        let now = tokio::time::Instant::now();
        for (relation, period, due) in &mut timers {
            if now >= *due {
                inputs.push((*relation, Vec::new()));
                *due = now + *period;
            }
        }
        let next_timer = timers.iter().map(|t| t.2).min();
        let mut stop = false;
        let mut stats_wanted = false;
        let mut ready = ready_rx.try_recv().is_ok();
        let mut signalled = signal_rx.try_recv().ok();
        let mut take = |d: crate::net::Delivery<Envelope>, inputs: &mut Vec<_>, pings: &mut Vec<(u32, u64)>| {
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
                    Envelope::Control(Control::Ping(n)) => pings.push((d.from, n)),
                    Envelope::Control(_) => {}
                }
            }
        };
        if !node.wants_tick() && !ready && signalled.is_none() && inputs.is_empty() {
            let flush_acks = async {
                match ack_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            // Unanswered pings: look at the connections again shortly.
            let recheck = async {
                if pings.is_empty() {
                    std::future::pending::<()>().await
                }
                tokio::time::sleep(Duration::from_millis(20)).await
            };
            let timer = async {
                match next_timer {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => take(d, &mut inputs, &mut pings),
                    None => return Ok(()),
                },
                Some(()) = ready_rx.recv() => ready = true,
                Some(what) = signal_rx.recv() => signalled = Some(what),
                () = flush_acks => {}
                () = recheck => {}
                () = timer => {}
            }
        }
        while inputs.len() < MAX_FACTS_PER_TICK {
            match rx.try_recv() {
                Ok(d) => take(d, &mut inputs, &mut pings),
                Err(_) => break,
            }
        }
        if let Some(what) = signalled {
            info(&name, &format!("{what}: stopping"));
            stop = true;
        }
        let mut per_dest: BTreeMap<u32, Vec<Envelope>> = BTreeMap::new();
        if !inputs.is_empty() || node.wants_tick() {
            let out = node.tick(inputs);
            for w in out.warnings {
                if warned < 20 {
                    warn(&name, &w);
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
            info(&name, "connected to every other node");
            per_dest.entry(launcher).or_default().push(Envelope::Control(Control::Ready));
        }
        if !pings.is_empty() && is_ready() {
            for (from, n) in pings.drain(..) {
                per_dest.entry(from).or_default().push(Envelope::Control(Control::Pong(n)));
            }
        }
        if stats_wanted {
            let stats = collect_stats(&node, &name, &endpoint, recovered);
            let json = serde_json::to_string(&stats).unwrap_or_default();
            per_dest.entry(launcher).or_default().push(Envelope::Control(Control::Stats(json)));
        }
        let ticked = !per_dest.is_empty() || node.journal_pending();
        match &mut durable {
            _ if !ticked => {}
            Some(net) => net
                .commit_and_send(&mut node, &endpoint, per_dest, &mut failpoints, &name)
                .map_err(|message| NodeFailure { code: 1, message })?,
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
            info(&name, "stopped");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_from_host_names() {
        assert_eq!(ordinal_of_hostname("paxos-acceptor-2"), Ok(2));
        assert_eq!(ordinal_of_hostname("paxos-acceptor-12.paxos.default.svc.cluster.local"), Ok(12));
        for bad in ["paxos-acceptor", "acceptor-x", "node7", ""] {
            let e = ordinal_of_hostname(bad).unwrap_err();
            assert!(e.contains("does not end with `-N`"), "{bad}: {e}");
        }
        assert_eq!("hostname".parse::<Ordinal>(), Ok(Ordinal::Hostname));
        assert_eq!("3".parse::<Ordinal>(), Ok(Ordinal::Number(3)));
        assert!("-1".parse::<Ordinal>().is_err());
    }
}
