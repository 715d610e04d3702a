//! Deployments: how many nodes of each component run, and where.
//!
//! A deployment file (TOML, beside the program) looks like
//!
//! ```toml
//! base_port = 7200
//! [components]
//! proposer = 2
//! acceptor = { instances = 3, partitions = 2 }   # or `acceptor = 3` plus a [partitions] table
//! [partitions]
//! acceptor = 2
//! ```
//!
//! Every process of the deployment is one [`NodeSpec`] with its own [`NodeAddr`] (its index in
//! [`Deployment::nodes`]) and network address. A logical node of a partitioned component runs as
//! several instances; its logical address (what `self` and `nodes` show) is the address of
//! instance 0.
//!
//! Where processes run (docs/deploying.md): by default on 127.0.0.1, port `base_port` + node
//! index. A component may name its processes' hosts, one entry per process (instances x
//! partitions, in deployment order), each `host` or `host:port`:
//!
//! ```toml
//! client = "198.18.0.100:7900"      # where the load client listens; nodes send outputs there
//! [components]
//! proposer = { instances = 2, hosts = ["198.18.0.10", "198.18.0.11:7300"] }
//! acceptor = { instances = 3, host = "paxos-acceptor-{n}.paxos", port = 7000 }  # {n}: ordinal
//! ```
//!
//! Timers ([`timers`]): a zero-column input injected periodically, in seconds, by every node of
//! its component (what the environment does for `timeout()`; thrifty broadcast's `m_widen()`):
//!
//! ```toml
//! [timers]
//! p2a_widen = 0.05
//! ```
//!
//! Batchings (`compart rewrite --batch`, `compart optimize`) record each batcher's batch channel
//! and size for the cost model (`compart calibrate --check`, `compart optimize` on the plan); the
//! runtime accepts and ignores them:
//!
//! ```toml
//! [batches]
//! proposer_batcher = { channel = "request_batch", size = 64 }
//! ```

use std::fmt;

use compart_analysis::model::{ComponentId, Program, RelationId, RelationKind};

use crate::net::HostPort;
use crate::value::NodeAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    pub component: ComponentId,
    /// `acceptor/1`, or `acceptor/1.0` for instance 0 of a partitioned logical node.
    pub name: String,
    pub addr: NodeAddr,
    /// Where the process listens and its peers dial it.
    pub address: HostPort,
    /// Its position among its component's processes (deployment order): `{n}` of a `host`
    /// template, a StatefulSet pod's ordinal.
    pub ordinal: u32,
    /// The logical node this instance belongs to (itself when the component is not partitioned).
    pub logical: NodeAddr,
    /// Which instance of the logical node this is, in `0..partitions`.
    pub partition: u32,
    pub partitions: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    pub nodes: Vec<NodeSpec>,
    /// The file's `client` address: where the load client listens and nodes send outputs.
    pub client: Option<HostPort>,
    pub base_port: u16,
}

/// Where one component's processes run, as its `[components]` entry says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Placement {
    /// One entry per process: `host` or `host:port`.
    hosts: Option<Vec<String>>,
    /// `{n}` replaced by the process's ordinal.
    host: Option<String>,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployError {
    pub message: String,
}

impl fmt::Display for DeployError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeployError {}

fn err(message: impl Into<String>) -> DeployError {
    DeployError { message: message.into() }
}

/// A deployment file for a rewriting of the program the file `original` deploys: `generated`
/// (the optimizer's `[components]` and `[partitions]`) with the original's `base_port`, `client`,
/// `[timers]`, `[batches]` and `[workload]` table, adapted to `program` (the rewritten one): a relation or entry component
/// it no longer has, or an entry that no longer owns the input (a decoupling moved it), is
/// dropped so that detection finds the request and reply where they are now.
pub fn carry_settings(original: &str, program: &Program, generated: &str) -> String {
    use compart_analysis::model::RelationKind;
    let Ok(doc) = original.parse::<toml::Table>() else { return generated.to_string() };
    let mut out = String::new();
    if let Some(p) = doc.get("base_port").and_then(|v| v.as_integer()) {
        out.push_str(&format!("base_port = {p}\n"));
    }
    // The client stays where it was; the nodes' hosts do not carry over (the plan's components
    // differ), so a plan for machines gets its hosts written by hand.
    if let Some(c) = doc.get("client").and_then(|v| v.as_str()) {
        out.push_str(&format!("client = {}\n", toml::Value::String(c.to_string())));
    }
    out.push_str(generated);
    // Timers of inputs the plan still has keep their periods.
    if let Some(toml::Value::Table(timers)) = doc.get("timers") {
        let mut kept = timers.clone();
        kept.retain(|name, _| program.relation_by_name(name).is_some());
        if !kept.is_empty() {
            let mut t = toml::Table::new();
            t.insert("timers".into(), toml::Value::Table(kept));
            out.push('\n');
            out.push_str(&toml::to_string(&t).unwrap_or_default());
        }
    }
    // Batchings whose batcher and channel the plan still has, unless the generated file records
    // batchings itself (the optimizer writes every one it knows, the original's among them).
    let generated_batches = generated.parse::<toml::Table>().is_ok_and(|g| g.contains_key("batches"));
    if let (Some(toml::Value::Table(batches)), false) = (doc.get("batches"), generated_batches) {
        let mut kept = batches.clone();
        kept.retain(|name, entry| {
            let channel = entry.get("channel").and_then(|c| c.as_str());
            program.component_by_name(name).is_some() && channel.is_some_and(|c| program.relation_by_name(c).is_some())
        });
        if !kept.is_empty() {
            // One line per batcher (component names are identifiers), as the optimizer writes them.
            out.push_str("\n[batches]\n");
            for (name, entry) in kept {
                out.push_str(&format!("{name} = {entry}\n"));
            }
        }
    }
    let Some(toml::Value::Table(workload)) = doc.get("workload") else { return out };
    let mut w = workload.clone();
    let is = |name: Option<&toml::Value>, kind: RelationKind| {
        name.and_then(|v| v.as_str())
            .and_then(|n| program.relation_by_name(n))
            .is_some_and(|r| program.relation(r).kind == kind)
    };
    for (key, kind) in [("input", RelationKind::Input), ("output", RelationKind::Output)] {
        if w.contains_key(key) && !is(w.get(key), kind) {
            w.remove(key);
        }
    }
    if let Some(toml::Value::Table(mix)) = w.get_mut("mix") {
        mix.retain(|name, _| is(Some(&toml::Value::String(name.to_string())), RelationKind::Input));
        if mix.is_empty() {
            w.remove("mix");
        }
    }
    let owner = |input: &str| program.relation_by_name(input).and_then(|r| program.relation(r).component);
    if let Some(entry) = w.get("entry").and_then(|v| v.as_str()).map(str::to_string) {
        let id = program.component_by_name(&entry);
        let inputs: Vec<String> = match (w.get("input"), w.get("mix")) {
            (Some(toml::Value::String(i)), _) => vec![i.clone()],
            (_, Some(toml::Value::Table(m))) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        if id.is_none() || inputs.iter().any(|i| owner(i) != id) {
            w.remove("entry");
        }
    }
    if !w.is_empty() {
        let mut t = toml::Table::new();
        t.insert("workload".into(), toml::Value::Table(w));
        out.push('\n');
        out.push_str(&toml::to_string(&t).unwrap_or_default());
    }
    out
}

/// Default first port when the file names none (and for [`Deployment::local`]).
pub const DEFAULT_BASE_PORT: u16 = 7000;

impl Placement {
    fn from_toml(name: &str, t: &toml::Table) -> Result<Placement, DeployError> {
        let text = |key: &str, v: &toml::Value| -> Result<String, DeployError> {
            v.as_str().map(str::to_string).ok_or_else(|| err(format!("component `{name}`: `{key}` must be a string")))
        };
        let hosts = match t.get("hosts") {
            None => None,
            Some(toml::Value::Array(a)) => Some(a.iter().map(|v| text("hosts", v)).collect::<Result<Vec<_>, _>>()?),
            Some(_) => {
                return Err(err(format!("component `{name}`: `hosts` must be a list of \"host\" or \"host:port\"")))
            }
        };
        let host = t.get("host").map(|v| text("host", v)).transpose()?;
        if hosts.is_some() && host.is_some() {
            return Err(err(format!(
                "component `{name}`: give `hosts` (one per process) or `host` (a template), not both"
            )));
        }
        let port = match t.get("port") {
            None => None,
            Some(toml::Value::Integer(p)) if (1..=65535).contains(p) => Some(*p as u16),
            Some(v) => return Err(err(format!("component `{name}`: `port` {v} is not a port number"))),
        };
        let placement = Placement { hosts, host, port };
        // Every entry parses now, so that errors name the file's text, not a process.
        if let Some(hosts) = &placement.hosts {
            for h in hosts {
                HostPort::parse(h, Some(1)).map_err(|e| err(format!("component `{name}`: `hosts`: {e}")))?;
            }
        }
        if let Some(h) = &placement.host {
            placement.address(0, 1).map_err(|e| err(format!("component `{name}`: `host` {h:?}: {e}")))?;
        }
        Ok(placement)
    }

    /// The address of the component's process `ordinal`, on `port` unless its entry names one.
    fn address(&self, ordinal: u32, port: u16) -> Result<HostPort, String> {
        if let Some(hosts) = &self.hosts {
            let entry = hosts.get(ordinal as usize).ok_or_else(|| format!("no `hosts` entry for process {ordinal}"))?;
            return HostPort::parse(entry, Some(port));
        }
        if let Some(template) = &self.host {
            return HostPort::parse(&template.replace("{n}", &ordinal.to_string()), Some(port));
        }
        Ok(HostPort::new("127.0.0.1", port))
    }
}

/// `[grids] c = { rows = R, columns = C }` (`compart rewrite --grid`): the program places c's
/// logical nodes in R rows by their position; a grid its nodes do not fill exactly leaves
/// places empty or nodes beyond it, so R x C must be c's logical node count.
fn check_grids(
    grids: &toml::Table,
    program: &Program,
    counts: &[(ComponentId, u32, u32, Placement)],
) -> Result<(), DeployError> {
    for (name, value) in grids {
        let Some(id) = program.component_by_name(name) else {
            return Err(err(format!("[grids] names `{name}`, which is not a component of the program")));
        };
        let toml::Value::Table(t) = value else {
            return Err(err(format!("[grids] `{name}` must be a table: {{ rows = R, columns = C }}")));
        };
        if let Some(k) = t.keys().find(|k| !["rows", "columns"].contains(&k.as_str())) {
            return Err(err(format!("[grids] `{name}`: unknown key `{k}` (expected rows, columns)")));
        }
        let dimension = |key: &str| -> Result<u64, DeployError> {
            match t.get(key) {
                Some(toml::Value::Integer(n)) if *n >= 1 => Ok(*n as u64),
                Some(_) => Err(err(format!("[grids] `{name}`: `{key}` must be a positive integer"))),
                None => Err(err(format!("[grids] `{name}` needs `{key}`"))),
            }
        };
        let (rows, columns) = (dimension("rows")?, dimension("columns")?);
        // The program's row rule decides the quorums; the file must describe the same grid.
        match compart_analysis::rewrite::grid_rows_of(program, name) {
            Some(r) if r as u64 != rows => {
                return Err(err(format!(
                    "[grids] `{name}`: rows = {rows}, but the program places `{name}`'s nodes in {r} rows"
                )))
            }
            None => {
                return Err(err(format!(
                    "[grids] names `{name}`, but the program arranges no grid over it (compart rewrite --grid {name})"
                )))
            }
            Some(_) => {}
        }
        let logical = counts.iter().find(|c| c.0 == id).map_or(0, |c| c.1 as u64);
        if rows.saturating_mul(columns) != logical {
            return Err(err(format!(
                "[grids] `{name}`: {rows} rows x {columns} columns is {} nodes, but [components] gives `{name}` {logical} logical node(s)",
                rows.saturating_mul(columns)
            )));
        }
    }
    Ok(())
}

impl Deployment {
    /// Parses a deployment file for `program`. Every component must appear; unknown names,
    /// negative counts and ports beyond 65535 are errors.
    pub fn from_toml(text: &str, program: &Program) -> Result<Deployment, DeployError> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| err(format!("invalid TOML: {e}")))?;
        let base_port = match doc.get("base_port") {
            None => DEFAULT_BASE_PORT as i64,
            Some(toml::Value::Integer(p)) => *p,
            Some(_) => return Err(err("`base_port` must be an integer")),
        };
        if !(1..=65535).contains(&base_port) {
            return Err(err(format!("`base_port` {base_port} is not a port number")));
        }
        for key in doc.keys() {
            // `[workload]` belongs to the load generator (`compart run`), which reads it itself;
            // `[batches]` to the cost model (`compart_analysis::deployment::batchings`): a batched
            // program runs the same without it.
            let known = ["base_port", "client", "components", "partitions", "grids", "workload", "timers", "batches"];
            if !known.contains(&key.as_str()) {
                return Err(err(format!(
                    "unknown key `{key}` (expected base_port, client, [components], [partitions], [grids], [timers], \
                     [batches])"
                )));
            }
        }
        let client = match doc.get("client") {
            None => None,
            Some(toml::Value::String(c)) => {
                Some(HostPort::parse(c, None).map_err(|e| err(format!("`client`: {e} (write host:port)")))?)
            }
            Some(_) => return Err(err("`client` must be a string, host:port")),
        };
        let table = |name: &str| -> Result<Option<&toml::Table>, DeployError> {
            match doc.get(name) {
                None => Ok(None),
                Some(toml::Value::Table(t)) => Ok(Some(t)),
                Some(_) => Err(err(format!("`{name}` must be a table"))),
            }
        };
        let components = table("components")?.ok_or_else(|| err("missing [components] table"))?;
        let partitions = table("partitions")?;
        let count = |what: &str, v: &toml::Value| -> Result<u32, DeployError> {
            match v {
                toml::Value::Integer(n) if (0..=100_000).contains(n) => Ok(*n as u32),
                _ => Err(err(format!("{what} must be a non-negative integer"))),
            }
        };
        let mut counts = Vec::new();
        for (name, value) in components {
            let Some(id) = program.component_by_name(name) else {
                return Err(err(format!("[components] names `{name}`, which is not a component of the program")));
            };
            let mut placement = Placement::default();
            let (instances, mut parts) = match value {
                toml::Value::Table(t) => {
                    for k in t.keys() {
                        if !["instances", "partitions", "hosts", "host", "port"].contains(&k.as_str()) {
                            return Err(err(format!(
                                "component `{name}`: unknown key `{k}` (expected instances, partitions, hosts, host, port)"
                            )));
                        }
                    }
                    placement = Placement::from_toml(name, t)?;
                    let instances = t
                        .get("instances")
                        .map(|v| count(&format!("`{name}.instances`"), v))
                        .transpose()?
                        .ok_or_else(|| err(format!("component `{name}` needs `instances`")))?;
                    let parts = t.get("partitions").map(|v| count(&format!("`{name}.partitions`"), v)).transpose()?;
                    (instances, parts)
                }
                v => (count(&format!("`{name}`"), v)?, None),
            };
            if let Some(p) = partitions.and_then(|t| t.get(name)) {
                parts = Some(count(&format!("[partitions] `{name}`"), p)?);
            }
            counts.push((id, instances, parts.unwrap_or(1), placement));
        }
        if let Some(p) = partitions {
            for name in p.keys() {
                if program.component_by_name(name).is_none() {
                    return Err(err(format!("[partitions] names `{name}`, which is not a component of the program")));
                }
            }
        }
        for c in program.component_ids() {
            if !counts.iter().any(|x| x.0 == c) {
                return Err(err(format!("component `{}` is missing from [components]", program.component(c).name)));
            }
        }
        for (id, instances, parts, placement) in &counts {
            let (id, parts) = (*id, *parts);
            if let Some(hosts) = &placement.hosts {
                let want = instances * parts;
                if hosts.len() as u64 != want as u64 {
                    return Err(err(format!(
                        "component `{}`: `hosts` has {} entries, expected {want} (one per process: {instances} instances x {parts} partitions)",
                        program.component(id).name,
                        hosts.len()
                    )));
                }
            }
            if parts == 0 {
                return Err(err(format!("component `{}` needs at least one partition", program.component(id).name)));
            }
            if parts > 1 && program.component(id).placement.is_none() {
                return Err(err(format!(
                    "component `{}` has {parts} partitions but no `partitioned by` clause",
                    program.component(id).name
                )));
            }
        }
        if let Some(grids) = table("grids")? {
            check_grids(grids, program, &counts)?;
        }
        timers(text, program)?;
        let mut d = Self::build(program, &counts, base_port as u16)?;
        d.client = client;
        Ok(d)
    }

    /// A deployment of `counts` (component name, logical nodes) with one instance each, on ports
    /// from [`DEFAULT_BASE_PORT`]; components not listed get one node. For tests.
    pub fn local(program: &Program, counts: &[(&str, u32)]) -> Deployment {
        Self::local_partitioned(program, &counts.iter().map(|&(c, n)| (c, n, 1)).collect::<Vec<_>>())
    }

    /// Like [`Deployment::local`] with (component, logical nodes, instances per logical node).
    pub fn local_partitioned(program: &Program, counts: &[(&str, u32, u32)]) -> Deployment {
        let counts: Vec<(ComponentId, u32, u32, Placement)> = program
            .component_ids()
            .map(|c| {
                let name = &program.component(c).name;
                let (n, p) = counts.iter().find(|x| x.0 == name).map(|x| (x.1, x.2.max(1))).unwrap_or((1, 1));
                (c, n, p, Placement::default())
            })
            .collect();
        Self::build(program, &counts, DEFAULT_BASE_PORT).unwrap_or(Deployment {
            nodes: Vec::new(),
            client: None,
            base_port: DEFAULT_BASE_PORT,
        })
    }

    fn build(
        program: &Program,
        counts: &[(ComponentId, u32, u32, Placement)],
        base_port: u16,
    ) -> Result<Deployment, DeployError> {
        let mut sorted = counts.to_vec();
        sorted.sort_by_key(|c| c.0);
        let mut nodes = Vec::new();
        for (component, n, parts, placement) in sorted {
            let cname = &program.component(component).name;
            let mut ordinal = 0u32;
            for i in 0..n {
                let logical = NodeAddr(nodes.len() as u32);
                for p in 0..parts {
                    let addr = NodeAddr(nodes.len() as u32);
                    let default_port = base_port as u32 + addr.0;
                    let port = match placement.port {
                        Some(p) => p,
                        None if default_port > 65535 => {
                            return Err(err(format!("too many nodes: port {default_port} is beyond 65535")))
                        }
                        None => default_port as u16,
                    };
                    let address =
                        placement.address(ordinal, port).map_err(|e| err(format!("component `{cname}`: {e}")))?;
                    let name = if parts > 1 { format!("{cname}/{i}.{p}") } else { format!("{cname}/{i}") };
                    nodes.push(NodeSpec {
                        component,
                        name,
                        addr,
                        address,
                        ordinal,
                        logical,
                        partition: p,
                        partitions: parts,
                    });
                    ordinal += 1;
                }
            }
        }
        let d = Deployment { nodes, client: None, base_port };
        let mut seen = std::collections::HashMap::new();
        for n in &d.nodes {
            if let Some(other) = seen.insert(n.address.clone(), &n.name) {
                return Err(err(format!("`{other}` and `{}` have the same address {}", n.name, n.address)));
            }
        }
        Ok(d)
    }

    /// Where nodes send outputs and the load client listens: the file's `client`, else
    /// 127.0.0.1 on the port after the last node's default one (`compart run` gives its nodes its
    /// own address instead).
    pub fn client_address(&self) -> HostPort {
        self.client.clone().unwrap_or_else(|| {
            let port = (self.base_port as u32 + self.nodes.len() as u32).min(65535) as u16;
            HostPort::new("127.0.0.1", port)
        })
    }

    /// Whether any address of the deployment, nodes' or client's, is not loopback: then every
    /// process needs the cluster secret.
    pub fn needs_secret(&self) -> bool {
        self.nodes.iter().any(|n| !n.address.is_loopback()) || !self.client_address().is_loopback()
    }

    /// The process of `component` at `ordinal` (its position among the component's processes).
    pub fn by_ordinal(&self, component: ComponentId, ordinal: u32) -> Option<NodeAddr> {
        self.nodes.iter().find(|n| n.component == component && n.ordinal == ordinal).map(|n| n.addr)
    }

    pub fn node(&self, addr: NodeAddr) -> Option<&NodeSpec> {
        self.nodes.get(addr.index())
    }

    /// The logical node `addr` belongs to (itself for unpartitioned nodes; unknown addresses map
    /// to themselves).
    pub fn logical(&self, addr: NodeAddr) -> NodeAddr {
        self.node(addr).map(|n| n.logical).unwrap_or(addr)
    }

    /// Logical nodes, in address order: what the `nodes` relation lists.
    pub fn logical_nodes(&self) -> impl Iterator<Item = &NodeSpec> {
        self.nodes.iter().filter(|n| n.partition == 0)
    }

    /// The pairs the built-in `partner(a, b)` lists: logical nodes of different components, `b`
    /// at the position of `a` among its component's nodes modulo the number of nodes of `b`'s.
    pub fn partners(&self) -> Vec<(NodeAddr, NodeAddr)> {
        let mut by_component: Vec<(ComponentId, Vec<NodeAddr>)> = Vec::new();
        for n in self.logical_nodes() {
            match by_component.iter_mut().find(|(c, _)| *c == n.component) {
                Some((_, nodes)) => nodes.push(n.addr),
                None => by_component.push((n.component, vec![n.addr])),
            }
        }
        let mut out = Vec::new();
        for (a_component, a_nodes) in &by_component {
            for (b_component, b_nodes) in &by_component {
                if a_component == b_component {
                    continue;
                }
                for (i, &a) in a_nodes.iter().enumerate() {
                    out.push((a, b_nodes[i % b_nodes.len()]));
                }
            }
        }
        out
    }

    /// The instances of the logical node `logical`.
    pub fn instances(&self, logical: NodeAddr) -> &[NodeSpec] {
        let Some(first) = self.node(logical) else { return &[] };
        let start = first.logical.index();
        let parts = first.partitions as usize;
        &self.nodes[start..(start + parts).min(self.nodes.len())]
    }

    /// Address of the node called `name` (e.g. `acceptor/1`).
    pub fn by_name(&self, name: &str) -> Option<NodeAddr> {
        self.nodes.iter().find(|n| n.name == name).map(|n| n.addr)
    }
}

/// Longest and shortest timer periods: a period is a delay, not a busy loop nor "never".
const TIMER_PERIODS: std::ops::RangeInclusive<f64> = 0.001..=86_400.0;

/// The `[timers]` table of a deployment file: each zero-column input with the period, in
/// seconds, at which every node of its component injects it. Empty without the table.
pub fn timers(text: &str, program: &Program) -> Result<Vec<(RelationId, std::time::Duration)>, DeployError> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| err(format!("invalid TOML: {e}")))?;
    let table = match doc.get("timers") {
        None => return Ok(Vec::new()),
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err(err("`timers` must be a table")),
    };
    let mut out = Vec::new();
    for (name, value) in table {
        let rel = program
            .relation_by_name(name)
            .filter(|&r| program.relation(r).kind == RelationKind::Input && program.relation(r).arity() == 0)
            .ok_or_else(|| err(format!("[timers] names `{name}`, which is not an input without columns")))?;
        let seconds = match value {
            toml::Value::Float(f) => *f,
            toml::Value::Integer(i) => *i as f64,
            _ => return Err(err(format!("[timers] `{name}` must be a number of seconds"))),
        };
        if !TIMER_PERIODS.contains(&seconds) {
            return Err(err(format!("[timers] `{name}` = {seconds}: a period is from 0.001 to 86400 seconds")));
        }
        out.push((rel, std::time::Duration::from_secs_f64(seconds)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROGRAM: &str = r#"
        component a { table t(x: int) }
        component b partitioned by x { table u(x: int) }
    "#;

    fn program() -> Program {
        let analysis = compart_analysis::analyze(PROGRAM);
        assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
        analysis.program
    }

    #[test]
    fn timers_name_zero_column_inputs_with_a_period() {
        let analysis = compart_analysis::analyze(
            "component a {\n input tick()\n input req(id: int)\n output out(id: int)\n out(i) :- req(i), tick().\n}\n",
        );
        let program = analysis.program;
        let tick = program.relation_by_name("tick").unwrap();
        let ok = "[components]\na = 1\n[timers]\ntick = 0.05\n";
        assert!(Deployment::from_toml(ok, &program).is_ok());
        assert_eq!(timers(ok, &program).unwrap(), vec![(tick, std::time::Duration::from_millis(50))]);
        assert_eq!(timers("[components]\na = 1\n", &program).unwrap(), vec![]);
        for (bad, why) in [
            ("[timers]\nreq = 1\n", "`req`, which is not an input without columns"),
            ("[timers]\nout = 1\n", "`out`, which is not an input without columns"),
            ("[timers]\nnope = 1\n", "`nope`, which is not an input"),
            ("[timers]\ntick = \"1s\"\n", "must be a number of seconds"),
            ("[timers]\ntick = 0\n", "a period is from 0.001 to 86400 seconds"),
            ("timers = 3\n", "`timers` must be a table"),
        ] {
            // A top-level key goes before the first table, or it would belong to it.
            let text = if bad.starts_with('[') {
                format!("[components]\na = 1\n{bad}")
            } else {
                format!("{bad}[components]\na = 1\n")
            };
            let e = Deployment::from_toml(&text, &program).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_counts_and_partitions() {
        let d = Deployment::from_toml(
            "base_port = 9000\n[components]\na = 2\nb = { instances = 2, partitions = 3 }\n",
            &program(),
        )
        .unwrap();
        let names: Vec<_> = d.nodes.iter().map(|n| format!("{}@{}:{}", n.name, n.address.port, n.logical.0)).collect();
        assert_eq!(
            names,
            [
                "a/0@9000:0",
                "a/1@9001:1",
                "b/0.0@9002:2",
                "b/0.1@9003:2",
                "b/0.2@9004:2",
                "b/1.0@9005:5",
                "b/1.1@9006:5",
                "b/1.2@9007:5"
            ]
        );
        assert_eq!(d.logical_nodes().count(), 4);
        assert_eq!(d.instances(NodeAddr(5)).len(), 3);
        let d2 = Deployment::from_toml("[components]\na = 1\nb = 1\n[partitions]\nb = 2\n", &program()).unwrap();
        assert_eq!(d2.nodes.len(), 3);
        assert_eq!(d2.nodes[0].address.port, DEFAULT_BASE_PORT);
    }

    #[test]
    fn rejects_bad_files() {
        let p = program();
        for (text, msg) in [
            ("[components]\na = 1\n", "component `b` is missing"),
            ("[components]\na = 1\nb = 1\nc = 2\n", "`c`, which is not a component"),
            ("[components]\na = -1\nb = 1\n", "non-negative"),
            ("[components]\na = 1\nb = 1\n[partitions]\na = 2\n", "no `partitioned by`"),
            ("base_port = 70000\n[components]\na = 1\nb = 1\n", "not a port"),
            ("[components\n", "invalid TOML"),
            ("base_port = 65535\n[components]\na = 2\nb = 1\n", "beyond 65535"),
            (
                "[components]\na = 4\nb = 1\n[grids]\na = { rows = 2, columns = 2 }\n",
                "the program arranges no grid over it",
            ),
            ("[components]\na = 4\nb = 1\n[grids]\nc = { rows = 2, columns = 2 }\n", "[grids] names `c`"),
            ("[components]\na = 4\nb = 1\n[grids]\na = { rows = 2, cols = 2 }\n", "unknown key `cols`"),
            ("[components]\na = 4\nb = 1\n[grids]\na = 4\n", "must be a table"),
        ] {
            let e = Deployment::from_toml(text, &p).unwrap_err();
            assert!(e.message.contains(msg), "{text:?}: {e}");
        }
    }

    /// `[grids]` must describe the grid the program's row rule makes (`compart rewrite --grid`),
    /// over the component's logical nodes, whatever the instances behind each.
    #[test]
    fn grids_match_the_program_and_the_node_count() {
        let text = format!(
            "{PROGRAM}\ncomponent c {{\n    channel m(a: addr)\n    g_position(a, count(o)) :- nodes(\"b\", a), nodes(\"b\", o), str(o) <= str(a).\n    g_row(a, r) :- g_position(a, i), r = (i - 1) % 2.\n    seen(a, r) :- m(a), g_row(a, r).\n}}\n"
        );
        let analysis = compart_analysis::analyze(&text);
        assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
        let p = analysis.program;
        let file = |grid: &str| {
            format!("[components]\na = 1\nb = {{ instances = 4, partitions = 2 }}\nc = 1\n[grids]\n{grid}\n")
        };
        let d = Deployment::from_toml(&file("b = { rows = 2, columns = 2 }"), &p).unwrap();
        assert_eq!(d.logical_nodes().count(), 6);
        for (grid, msg) in [
            (
                "b = { rows = 2, columns = 3 }",
                "2 rows x 3 columns is 6 nodes, but [components] gives `b` 4 logical node(s)",
            ),
            ("b = { rows = 4, columns = 1 }", "rows = 4, but the program places `b`'s nodes in 2 rows"),
            ("b = { rows = 0, columns = 3 }", "`rows` must be a positive integer"),
            ("b = { rows = 2, columns = 0 }", "`columns` must be a positive integer"),
            ("b = { rows = 2 }", "[grids] `b` needs `columns`"),
        ] {
            let e = Deployment::from_toml(&file(grid), &p).unwrap_err();
            assert!(e.message.contains(msg), "{grid}: {e}");
        }
    }

    #[test]
    fn hosts_ports_and_the_client() {
        let d = Deployment::from_toml(
            "base_port = 9000\nclient = \"198.18.0.100:7900\"\n[components]\na = { instances = 2, hosts = [\"198.18.0.10\", \"198.18.0.11:7300\"] }\nb = { instances = 2, partitions = 2, host = \"b-{n}.svc\", port = 7000 }\n",
            &program(),
        )
        .unwrap();
        let addrs: Vec<_> = d.nodes.iter().map(|n| format!("{}#{}@{}", n.name, n.ordinal, n.address)).collect();
        assert_eq!(
            addrs,
            [
                "a/0#0@198.18.0.10:9000",
                "a/1#1@198.18.0.11:7300",
                "b/0.0#0@b-0.svc:7000",
                "b/0.1#1@b-1.svc:7000",
                "b/1.0#2@b-2.svc:7000",
                "b/1.1#3@b-3.svc:7000"
            ]
        );
        assert_eq!(d.client_address().to_string(), "198.18.0.100:7900");
        assert!(d.needs_secret());
        let b = program().component_by_name("b").unwrap();
        assert_eq!(d.by_ordinal(b, 3), Some(NodeAddr(5)));
        assert_eq!(d.by_ordinal(b, 4), None);
        // Today's files: loopback, the client one past the last node.
        let local = Deployment::from_toml("base_port = 9000\n[components]\na = 1\nb = 1\n", &program()).unwrap();
        assert_eq!(local.client_address().to_string(), "127.0.0.1:9002");
        assert!(!local.needs_secret());
        // Only the client away from loopback still needs the secret.
        let remote_client =
            Deployment::from_toml("client = \"10.1.2.3:9\"\n[components]\na = 1\nb = 1\n", &program()).unwrap();
        assert!(remote_client.needs_secret());
        let named =
            Deployment::from_toml("[components]\na = { instances = 1, host = \"localhost\" }\nb = 1\n", &program());
        assert!(!named.unwrap().needs_secret());
    }

    #[test]
    fn rejects_bad_hosts() {
        let p = program();
        for (text, msg) in [
            (
                "[components]\na = { instances = 2, hosts = [\"h1\"] }\nb = 1\n",
                "component `a`: `hosts` has 1 entries, expected 2",
            ),
            (
                "[components]\na = 1\nb = { instances = 1, partitions = 2, hosts = [\"h\"] }\n",
                "expected 2 (one per process: 1 instances x 2 partitions)",
            ),
            ("[components]\na = { instances = 1, hosts = [\"h\"], host = \"x\" }\nb = 1\n", "not both"),
            ("[components]\na = { instances = 1, hosts = [\"h:99999\"] }\nb = 1\n", "is not a port"),
            ("[components]\na = { instances = 1, hosts = [\"a b\"] }\nb = 1\n", "neither an IP address nor a DNS name"),
            ("[components]\na = { instances = 1, hosts = \"h\" }\nb = 1\n", "must be a list"),
            ("[components]\na = { instances = 1, port = 0 }\nb = 1\n", "is not a port number"),
            (
                "[components]\na = { instances = 2, port = 7000 }\nb = 1\n",
                "`a/0` and `a/1` have the same address 127.0.0.1:7000",
            ),
            ("[components]\na = { instances = 1, hots = 1 }\nb = 1\n", "unknown key `hots`"),
            ("client = 3\n[components]\na = 1\nb = 1\n", "`client` must be a string"),
            ("client = \"somewhere\"\n[components]\na = 1\nb = 1\n", "`client`: `somewhere` names no port"),
        ] {
            let e = Deployment::from_toml(text, &p).unwrap_err();
            assert!(e.message.contains(msg), "{text:?}: {e}");
        }
    }

    #[test]
    fn example_deployments_parse() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
        for name in ["voting", "two_phase_commit", "paxos", "kvs"] {
            let src = std::fs::read_to_string(format!("{dir}/{name}.ded")).unwrap();
            let toml = std::fs::read_to_string(format!("{dir}/{name}.toml")).unwrap();
            let analysis = compart_analysis::analyze(&src);
            let d = Deployment::from_toml(&toml, &analysis.program).unwrap();
            assert!(d.nodes.len() >= 4, "{name}");
        }
    }

    #[test]
    fn rewritten_deployments_keep_ports_and_the_workload_that_still_applies() {
        let original = "base_port = 7300\n[components]\nfront = 1\n\n[workload]\nentry = \"front\"\ninput = \"req\"\noutput = \"gone\"\nkeys = 10\n[workload.mix]\nreq = 1\nold = 2\n";
        // A rewriting where `req` moved to another component and the output `gone` no longer exists.
        let rewritten = compart_analysis::analyze(
            "component front { channel x(id: int) }\ncomponent back { input req(id: int)\n output rep(id: int)\n rep(i) :- req(i).\n x@d(i) :~ req(i), nodes(\"front\", d). }",
        );
        assert!(!rewritten.has_errors(), "{:?}", rewritten.diagnostics);
        let out = carry_settings(original, &rewritten.program, "[components]\nfront = 1\nback = 2\n");
        assert_eq!(
            out,
            "base_port = 7300\n[components]\nfront = 1\nback = 2\n\n[workload]\ninput = \"req\"\nkeys = 10\n\n[workload.mix]\nreq = 1\n"
        );
        let d = Deployment::from_toml(&out, &rewritten.program).unwrap();
        assert_eq!(d.nodes[0].address.port, 7300);
        let with_client =
            carry_settings("client = \"198.18.0.9:7900\"\n[components]\na = 1\n", &program(), "[components]\na = 1\n");
        assert_eq!(with_client, "client = \"198.18.0.9:7900\"\n[components]\na = 1\n");
        // Timers of inputs the plan still has keep their periods; the others go.
        let timed = compart_analysis::analyze("component a { input tick()\n input req(id: int) }");
        let out = carry_settings(
            "[components]\na = 1\n[timers]\ntick = 0.5\ngone = 1\n",
            &timed.program,
            "[components]\na = 1\n",
        );
        assert_eq!(out, "[components]\na = 1\n\n[timers]\ntick = 0.5\n");
        // Batchings the plan still has carry over, unless the plan records its own.
        let batched = compart_analysis::analyze(
            "component a { input req(id: int)\n b@d(i) :~ req(i), nodes(\"b\", d). }\ncomponent b { channel b(id: int) }",
        );
        let original = "[components]\na = 1\nb = 1\n[batches]\na = { channel = \"b\", size = 16 }\ngone = { channel = \"b\", size = 8 }\n";
        let out = carry_settings(original, &batched.program, "[components]\na = 1\nb = 1\n");
        assert_eq!(out, "[components]\na = 1\nb = 1\n\n[batches]\na = { channel = \"b\", size = 16 }\n");
        Deployment::from_toml(&out, &batched.program).unwrap();
        let own = "[components]\na = 1\nb = 1\n\n[batches]\na = { channel = \"b\", size = 64 }\n";
        assert_eq!(carry_settings(original, &batched.program, own), own);
        // Nothing to carry: the generated file as is.
        assert_eq!(
            carry_settings("[components]\na = 1\n", &program(), "[components]\na = 1\n"),
            "[components]\na = 1\n"
        );
    }
}
