//! One node process (`compart node`): an engine [`Node`] driven by network deliveries.
//!
//! The loop: wait for a delivery (unless the engine wants a tick anyway), take everything that
//! is queued, run one tick, route its sends (one frame per destination per tick), send outputs
//! to the launcher, and only then acknowledge the deliveries: a crash before the ack makes the
//! senders retransmit, and with `--durable` the tick's table changes are on disk by then.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use compart_analysis::model::{RelationId, RelationKind};

use super::{own_cpu_seconds, Cluster, Control, Envelope, NodeStats};
use crate::durability;
use crate::engine::{route_into, Node, NodeOptions};
use crate::net::{Endpoint, NetConfig, Secret};
use crate::value::NodeAddr;

/// At most this many facts enter one tick; the rest wait for the next (bounded tick latency).
const MAX_FACTS_PER_TICK: usize = 20_000;
/// Acknowledgements are cumulative and sent at most this often per peer: an ack frame per tick
/// would double the frames (and system calls) of a node that gets one small message per tick.
/// Senders keep unacknowledged frames for retransmission, so this only delays their release.
const ACK_INTERVAL: Duration = Duration::from_millis(5);

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
    let mut recovered = 0;
    if let Some(dir) = &args.durable {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = durability::log_path(dir, &spec.name);
        let hash = durability::program_hash(cluster.analysis.text());
        // Refuses (the node does not start) rather than lose intact records; see durability.rs.
        recovered = node.recover(&path, &hash, args.accept_log_loss).map_err(|e| e.to_string())?.changes;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(node_loop(&cluster, node, &args, spec.name, recovered))
}

async fn node_loop(
    cluster: &Cluster,
    mut node: Node,
    args: &NodeArgs,
    name: String,
    recovered: usize,
) -> Result<(), String> {
    let launcher = cluster.launcher_id();
    let mut peers: Vec<(u32, SocketAddr)> = cluster.deployment.nodes.iter().map(|n| (n.addr.0, n.socket)).collect();
    peers.push((launcher, args.launcher));
    let me = args.index;
    let listen = cluster.deployment.nodes[me as usize].socket;
    let mut config = NetConfig::new(me, listen, peers);
    config.secret = args.secret.clone();
    config.max_frame_bytes = args.max_frame_bytes;
    let (endpoint, mut rx) =
        Endpoint::<Envelope>::start(config).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let endpoint = Arc::new(endpoint);
    {
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            endpoint.wait_connected().await;
            endpoint.send(launcher, vec![Envelope::Control(Control::Ready)]);
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
        let mut take = |d: crate::net::Delivery<Envelope>, inputs: &mut Vec<_>| {
            let e = acks.entry(d.from).or_insert(0);
            *e = (*e).max(d.seq);
            for env in d.batch {
                match env {
                    Envelope::Fact { relation, tuple } => inputs.push((RelationId(relation), tuple)),
                    Envelope::Control(Control::Stop) => stop = true,
                    Envelope::Control(Control::CollectStats) => stats_wanted = true,
                    Envelope::Control(_) => {}
                }
            }
        };
        if !node.wants_tick() {
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
                () = flush_acks => {}
            }
        }
        while inputs.len() < MAX_FACTS_PER_TICK {
            match rx.try_recv() {
                Ok(d) => take(d, &mut inputs),
                Err(_) => break,
            }
        }
        if !inputs.is_empty() || node.wants_tick() {
            let out = node.tick(inputs);
            for w in out.warnings {
                if warned < 20 {
                    eprintln!("compart node {name}: {w}");
                    warned += 1;
                }
            }
            let mut per_dest: BTreeMap<u32, Vec<Envelope>> = BTreeMap::new();
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
            for (to, batch) in per_dest {
                endpoint.send(to, batch);
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
        if stats_wanted {
            let stats = collect_stats(&node, &name, &endpoint, recovered);
            let json = serde_json::to_string(&stats).unwrap_or_default();
            endpoint.send(launcher, vec![Envelope::Control(Control::Stats(json))]);
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
