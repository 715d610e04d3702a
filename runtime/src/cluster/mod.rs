//! A cluster: every node of a deployment runs as its own OS process (`compart node`). Locally the
//! launcher (`compart run`) starts them, drives a workload through them, and stops them; across
//! machines a supervisor starts each node and `compart load` drives the workload
//! (docs/deploying.md).
//!
//! The client (launcher or load client) is itself a network peer, with the address one past the
//! last node: it sends client inputs and control messages to nodes, and nodes send it their
//! outputs and statistics.

pub mod cgroup;
pub mod driver;
pub mod health;
pub mod launcher;
pub mod load;
pub mod node;
pub mod process;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use compart_analysis::Analysis;
use serde::{Deserialize, Serialize};

use crate::deploy::Deployment;
use crate::engine::CompiledProgram;
use crate::net::NetStatsSnapshot;
use crate::value::Tuple;

/// Environment variable holding the shared cluster secret (never passed on the command line,
/// where `ps` would show it).
pub const SECRET_ENV: &str = "COMPART_CLUSTER_SECRET";
/// Environment variable naming a file that holds the cluster secret (its content, less a
/// trailing newline): a mounted Kubernetes Secret, a systemd credential.
pub const SECRET_FILE_ENV: &str = "COMPART_CLUSTER_SECRET_FILE";

/// The cluster secret from the environment: [`SECRET_ENV`], else the file [`SECRET_FILE_ENV`]
/// names. None when neither is set (or the variable is empty).
pub fn secret_from_env() -> Result<Option<Vec<u8>>, String> {
    if let Some(s) = std::env::var_os(SECRET_ENV).filter(|s| !s.is_empty()) {
        return Ok(Some(s.into_encoded_bytes()));
    }
    let Some(path) = std::env::var_os(SECRET_FILE_ENV).filter(|s| !s.is_empty()) else { return Ok(None) };
    let path = std::path::PathBuf::from(path);
    let mut bytes =
        std::fs::read(&path).map_err(|e| format!("{SECRET_FILE_ENV}: cannot read {}: {e}", path.display()))?;
    while bytes.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(format!("{SECRET_FILE_ENV}: {} is empty", path.display()));
    }
    Ok(Some(bytes))
}

/// The secret a node or client of `deployment` uses: the environment's; none only when every
/// address is loopback (then the local launcher makes one per run).
pub fn required_secret(deployment: &Deployment) -> Result<Option<Vec<u8>>, String> {
    let secret = secret_from_env()?;
    if secret.is_none() && deployment.needs_secret() {
        let away = deployment
            .nodes
            .iter()
            .map(|n| &n.address)
            .chain(std::iter::once(&deployment.client_address()))
            .find(|a| !a.is_loopback())
            .map(|a| a.to_string())
            .unwrap_or_default();
        return Err(format!(
            "the deployment has addresses beyond loopback ({away}), so the cluster secret is required: set \
             {SECRET_FILE_ENV} to a file holding it, or {SECRET_ENV} to the secret itself (never on the \
             command line; see docs/deploying.md)"
        ));
    }
    Ok(secret)
}

/// A new cluster secret as nodes take it in [`SECRET_ENV`]: 32 random bytes in hex.
pub fn random_secret_hex() -> Result<String, String> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).map_err(|e| format!("no randomness for the cluster secret: {e}"))?;
    Ok(crate::hex(&s))
}

/// What travels between cluster processes: facts, and the launcher's control protocol.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Envelope {
    /// A fact of a channel (node to node), an input (launcher to node) or an output (node to
    /// launcher). `relation` is the program's `RelationId`.
    Fact {
        relation: u32,
        tuple: Tuple,
    },
    Control(Control),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Control {
    /// Node -> launcher: connected to every peer.
    Ready,
    /// Launcher -> node: send your statistics.
    CollectStats,
    /// Node -> launcher: a JSON [`NodeStats`] (JSON because the profile schema evolves faster
    /// than the wire version).
    Stats(String),
    /// Launcher -> node: finish the current tick and exit.
    Stop,
    /// Client -> node: answer [`Control::Pong`] with this number once connected to every other
    /// node. A load client attaching to running nodes takes nothing from a node before its pong
    /// (what comes earlier was owed to an earlier client).
    Ping(u64),
    /// Node -> client: the answer to [`Control::Ping`].
    Pong(u64),
}

/// Statistics one node process reports at the end of a run.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct NodeStats {
    pub name: String,
    pub pid: u32,
    /// CPU time of the process (user + system), seconds.
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub ticks: u64,
    /// Time spent inside ticks, seconds.
    pub tick_s: f64,
    pub facts_in: u64,
    pub facts_sent: u64,
    pub facts_out: u64,
    pub rejected_inputs: u64,
    pub net: NetStatsSnapshot,
    /// Facts derived (or sent) per rule, indexed by rule id.
    pub rule_facts: Vec<u64>,
    pub rule_nanos: Vec<u64>,
    /// Size of each table of the node's component at the end.
    pub tables: Vec<(String, usize)>,
    /// Changes replayed from the durability log at start (0 without --durable).
    pub recovered_changes: usize,
}

impl NodeStats {
    /// What the node did since `earlier` (statistics of the same process): counters and times
    /// less the earlier ones; table sizes and recovery as now. A process that restarted in
    /// between (a lower pid or fewer ticks) is reported whole.
    pub fn since(&self, earlier: &NodeStats) -> NodeStats {
        if earlier.pid != self.pid || earlier.ticks > self.ticks {
            return self.clone();
        }
        let minus = |a: &[u64], b: &[u64]| -> Vec<u64> {
            a.iter().enumerate().map(|(i, x)| x.saturating_sub(b.get(i).copied().unwrap_or(0))).collect()
        };
        NodeStats {
            name: self.name.clone(),
            pid: self.pid,
            cpu_user_s: (self.cpu_user_s - earlier.cpu_user_s).max(0.0),
            cpu_sys_s: (self.cpu_sys_s - earlier.cpu_sys_s).max(0.0),
            ticks: self.ticks - earlier.ticks,
            tick_s: (self.tick_s - earlier.tick_s).max(0.0),
            facts_in: self.facts_in.saturating_sub(earlier.facts_in),
            facts_sent: self.facts_sent.saturating_sub(earlier.facts_sent),
            facts_out: self.facts_out.saturating_sub(earlier.facts_out),
            rejected_inputs: self.rejected_inputs.saturating_sub(earlier.rejected_inputs),
            net: self.net.since(&earlier.net),
            rule_facts: minus(&self.rule_facts, &earlier.rule_facts),
            rule_nanos: minus(&self.rule_nanos, &earlier.rule_nanos),
            tables: self.tables.clone(),
            recovered_changes: self.recovered_changes,
        }
    }
}

/// A program with its deployment, as both the launcher and the nodes load it.
pub struct Cluster {
    pub analysis: Analysis,
    pub program: Arc<CompiledProgram>,
    pub deployment: Arc<Deployment>,
    /// The `[workload]` table of the deployment file, if any.
    pub workload: Option<toml::Table>,
    /// The `[timers]` of the deployment file: inputs each node of their component injects.
    pub timers: Vec<(compart_analysis::model::RelationId, std::time::Duration)>,
}

impl Cluster {
    /// Parse and compile `program_path` and its deployment. `ports`, when given, replaces the
    /// file's ports (one per node, in address order).
    pub fn load(program_path: &Path, deploy_path: &Path, ports: Option<&[u16]>) -> Result<Cluster, String> {
        let text = crate::options::read_text(program_path)?;
        let analysis = compart_analysis::analyze(&text);
        if analysis.has_errors() {
            let first = analysis
                .diagnostics
                .iter()
                .find(|d| d.severity == compart_analysis::Severity::Error)
                .map(|d| d.message.clone())
                .unwrap_or_default();
            return Err(format!("{} has errors (run `compart check`): {first}", program_path.display()));
        }
        let program = CompiledProgram::new(&analysis).map_err(|ds| {
            let msgs: Vec<String> = ds.iter().map(|d| d.message.clone()).collect();
            format!("{} cannot run: {}", program_path.display(), msgs.join("; "))
        })?;
        let deploy_text = crate::options::read_text(deploy_path)?;
        let (deployment, workload) =
            parse_deployment(&deploy_text, &analysis).map_err(|e| format!("{}: {e}", deploy_path.display()))?;
        let mut deployment = deployment;
        if let Some(ports) = ports {
            if ports.len() != deployment.nodes.len() {
                return Err(format!("{} ports given for {} nodes", ports.len(), deployment.nodes.len()));
            }
            for (n, &p) in deployment.nodes.iter_mut().zip(ports) {
                n.address = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), p).into();
            }
        }
        let timers = crate::deploy::timers(&deploy_text, &analysis.program)
            .map_err(|e| format!("{}: {e}", deploy_path.display()))?;
        Ok(Cluster { analysis, program: Arc::new(program), deployment: Arc::new(deployment), workload, timers })
    }

    /// The client's (launcher's or load client's) peer id.
    pub fn launcher_id(&self) -> u32 {
        self.deployment.nodes.len() as u32
    }
}

/// Splits the `[workload]` table (read by the launcher) from the rest (read by
/// [`Deployment::from_toml`]).
pub fn parse_deployment(text: &str, analysis: &Analysis) -> Result<(Deployment, Option<toml::Table>), String> {
    let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("invalid TOML: {e}"))?;
    let workload = match doc.remove("workload") {
        None => None,
        Some(toml::Value::Table(t)) => Some(t),
        Some(_) => return Err("`workload` must be a table".into()),
    };
    let rest = toml::to_string(&doc).map_err(|e| e.to_string())?;
    let deployment = Deployment::from_toml(&rest, &analysis.program).map_err(|e| e.to_string())?;
    Ok((deployment, workload))
}

/// Free TCP ports on 127.0.0.1, found by binding port 0 (another process could take one before
/// we use it; the node then fails to bind and the launcher reports it).
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))).collect::<Result<_, _>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

/// CPU time (user, system) of this process, in seconds.
pub fn own_cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_through_the_codec() {
        use crate::net::codec::{decode, encode, Frame};
        use crate::value::Value;
        let f = Frame::Data {
            from: 2,
            seq: 5,
            batch: vec![
                Envelope::Fact { relation: 3, tuple: vec![Value::Int(-4), Value::str("x"), Value::Bool(true)] },
                Envelope::Control(Control::Stats("{}".into())),
            ],
        };
        assert_eq!(decode::<Envelope>(&encode(&f)).unwrap(), f);
    }

    #[test]
    fn stats_since_an_earlier_snapshot() {
        let earlier = NodeStats {
            pid: 7,
            ticks: 10,
            cpu_user_s: 1.0,
            facts_in: 5,
            rule_facts: vec![1, 2],
            tables: vec![("t".into(), 3)],
            ..NodeStats::default()
        };
        let mut now = earlier.clone();
        now.ticks = 25;
        now.cpu_user_s = 1.5;
        now.facts_in = 9;
        now.rule_facts = vec![4, 2, 6];
        now.tables = vec![("t".into(), 8)];
        now.net.frames_sent = 3;
        let d = now.since(&earlier);
        assert_eq!((d.ticks, d.facts_in, d.rule_facts.clone(), d.net.frames_sent), (15, 4, vec![3, 0, 6], 3));
        assert!((d.cpu_user_s - 0.5).abs() < 1e-9);
        assert_eq!(d.tables, vec![("t".to_string(), 8)]);
        // Another process (restarted in between): whole.
        let restarted = NodeStats { pid: 8, ticks: 4, ..now.clone() };
        assert_eq!(restarted.since(&earlier), restarted);
    }

    #[test]
    fn workload_table_is_split_from_the_deployment() {
        let a = compart_analysis::analyze("component c { input req(id: int) output rep(id: int) rep(i) :- req(i). }");
        let (d, w) =
            parse_deployment("base_port = 9000\n[components]\nc = 2\n[workload]\nentry = \"c\"\ninput = \"req\"\n", &a)
                .unwrap();
        assert_eq!(d.nodes.len(), 2);
        assert_eq!(w.unwrap().get("input").and_then(|v| v.as_str()), Some("req"));
        assert!(parse_deployment("[components]\nc = 1\nworkload = 3\n", &a).is_err());
    }
}
