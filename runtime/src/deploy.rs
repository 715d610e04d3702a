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
//! [`Deployment::nodes`]) and socket. A logical node of a partitioned component runs as several
//! instances; its logical address (what `self` and `nodes` show) is the address of instance 0.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use compart_analysis::model::{ComponentId, Program};

use crate::value::NodeAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    pub component: ComponentId,
    /// `acceptor/1`, or `acceptor/1.0` for instance 0 of a partitioned logical node.
    pub name: String,
    pub addr: NodeAddr,
    pub socket: SocketAddr,
    /// The logical node this instance belongs to (itself when the component is not partitioned).
    pub logical: NodeAddr,
    /// Which instance of the logical node this is, in `0..partitions`.
    pub partition: u32,
    pub partitions: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    pub nodes: Vec<NodeSpec>,
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
/// (the optimizer's `[components]` and `[partitions]`) with the original's `base_port` and
/// `[workload]` table, adapted to `program` (the rewritten one): a relation or entry component
/// it no longer has, or an entry that no longer owns the input (a decoupling moved it), is
/// dropped so that detection finds the request and reply where they are now.
pub fn carry_settings(original: &str, program: &Program, generated: &str) -> String {
    use compart_analysis::model::RelationKind;
    let Ok(doc) = original.parse::<toml::Table>() else { return generated.to_string() };
    let mut out = String::new();
    if let Some(p) = doc.get("base_port").and_then(|v| v.as_integer()) {
        out.push_str(&format!(
            "base_port = {p}
"
        ));
    }
    out.push_str(generated);
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
            // `[workload]` belongs to the load generator (`compart run`), which reads it itself.
            if !["base_port", "components", "partitions", "workload"].contains(&key.as_str()) {
                return Err(err(format!("unknown key `{key}` (expected base_port, [components], [partitions])")));
            }
        }
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
            let (instances, mut parts) = match value {
                toml::Value::Table(t) => {
                    for k in t.keys() {
                        if k != "instances" && k != "partitions" {
                            return Err(err(format!("component `{name}`: unknown key `{k}`")));
                        }
                    }
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
            counts.push((id, instances, parts.unwrap_or(1)));
        }
        if let Some(p) = partitions {
            for name in p.keys() {
                if program.component_by_name(name).is_none() {
                    return Err(err(format!("[partitions] names `{name}`, which is not a component of the program")));
                }
            }
        }
        for c in program.component_ids() {
            if !counts.iter().any(|&(id, _, _)| id == c) {
                return Err(err(format!("component `{}` is missing from [components]", program.component(c).name)));
            }
        }
        for &(id, _, parts) in &counts {
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
        Self::build(program, &counts, base_port as u16)
    }

    /// A deployment of `counts` (component name, logical nodes) with one instance each, on ports
    /// from [`DEFAULT_BASE_PORT`]; components not listed get one node. For tests.
    pub fn local(program: &Program, counts: &[(&str, u32)]) -> Deployment {
        Self::local_partitioned(program, &counts.iter().map(|&(c, n)| (c, n, 1)).collect::<Vec<_>>())
    }

    /// Like [`Deployment::local`] with (component, logical nodes, instances per logical node).
    pub fn local_partitioned(program: &Program, counts: &[(&str, u32, u32)]) -> Deployment {
        let counts: Vec<(ComponentId, u32, u32)> = program
            .component_ids()
            .map(|c| {
                let name = &program.component(c).name;
                let (n, p) = counts.iter().find(|x| x.0 == name).map(|x| (x.1, x.2.max(1))).unwrap_or((1, 1));
                (c, n, p)
            })
            .collect();
        Self::build(program, &counts, DEFAULT_BASE_PORT).unwrap_or(Deployment { nodes: Vec::new() })
    }

    fn build(program: &Program, counts: &[(ComponentId, u32, u32)], base_port: u16) -> Result<Deployment, DeployError> {
        let mut sorted = counts.to_vec();
        sorted.sort_by_key(|c| c.0);
        let mut nodes = Vec::new();
        for (component, n, parts) in sorted {
            let cname = &program.component(component).name;
            for i in 0..n {
                let logical = NodeAddr(nodes.len() as u32);
                for p in 0..parts {
                    let addr = NodeAddr(nodes.len() as u32);
                    let port = base_port as u32 + addr.0;
                    if port > 65535 {
                        return Err(err(format!("too many nodes: port {port} is beyond 65535")));
                    }
                    let name = if parts > 1 { format!("{cname}/{i}.{p}") } else { format!("{cname}/{i}") };
                    nodes.push(NodeSpec {
                        component,
                        name,
                        addr,
                        socket: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port as u16),
                        logical,
                        partition: p,
                        partitions: parts,
                    });
                }
            }
        }
        Ok(Deployment { nodes })
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
    fn parses_counts_and_partitions() {
        let d = Deployment::from_toml(
            "base_port = 9000\n[components]\na = 2\nb = { instances = 2, partitions = 3 }\n",
            &program(),
        )
        .unwrap();
        let names: Vec<_> = d.nodes.iter().map(|n| format!("{}@{}:{}", n.name, n.socket.port(), n.logical.0)).collect();
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
        assert_eq!(d2.nodes[0].socket.port(), DEFAULT_BASE_PORT);
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
        assert_eq!(d.nodes[0].socket.port(), 7300);
        // Nothing to carry: the generated file as is.
        assert_eq!(
            carry_settings("[components]\na = 1\n", &program(), "[components]\na = 1\n"),
            "[components]\na = 1\n"
        );
    }
}
