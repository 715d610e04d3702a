//! The load generator's logic, free of I/O: which input relation to inject and which output
//! answers it ([`Workload::detect`]), the requests it sends ([`Workload::request`]), and the
//! checks on replies ([`Checker`]).
//!
//! A request is a fact of the input relation whose first column is an int id, unique per
//! request; its reply is a fact of an output relation of the same component whose first column
//! echoes that id. Every other column of the reply that has the name of an input column must
//! carry the value that was sent.

use std::collections::HashMap;

use compart_analysis::model::{ComponentId, Program, RelationId, RelationKind, Type};
use serde::{Deserialize, Serialize};

use crate::value::{NodeAddr, Tuple, Value};

/// Where a request goes when the entry component has several logical nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SendTo {
    /// Every logical node gets every request (e.g. all Paxos proposers: only the leader
    /// answers, the others hold the request until they lead).
    All,
    /// Request `id` goes to logical node `id mod n`.
    RoundRobin,
}

impl std::str::FromStr for SendTo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(SendTo::All),
            "round-robin" => Ok(SendTo::RoundRobin),
            _ => Err(format!("`{s}`: expected `all` or `round-robin`")),
        }
    }
}

/// What the user (flags, or the deployment's `[workload]` table) asked for; None = detect.
#[derive(Clone, Debug, Default)]
pub struct WorkloadChoice {
    pub entry: Option<String>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub send_to: Option<SendTo>,
}

impl WorkloadChoice {
    /// Reads `entry`, `input`, `output` and `send_to` from a `[workload]` table; flags given in
    /// `self` win.
    pub fn merge_toml(mut self, table: &toml::Table) -> Result<Self, String> {
        for key in table.keys() {
            if !["entry", "input", "output", "send_to"].contains(&key.as_str()) {
                return Err(format!("[workload]: unknown key `{key}` (expected entry, input, output, send_to)"));
            }
        }
        let get = |k: &str| -> Result<Option<String>, String> {
            match table.get(k) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("[workload]: `{k}` must be a string")),
            }
        };
        self.entry = self.entry.or(get("entry")?);
        self.input = self.input.or(get("input")?);
        self.output = self.output.or(get("output")?);
        if self.send_to.is_none() {
            self.send_to = get("send_to")?.map(|s| s.parse()).transpose()?;
        }
        Ok(self)
    }
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub entry: ComponentId,
    pub input: RelationId,
    pub output: RelationId,
    pub input_types: Vec<(String, Type)>,
    /// (input column, output column) pairs that must be equal; the id is pair 0.
    pub echoed: Vec<(usize, usize)>,
    pub send_to: SendTo,
}

impl Workload {
    pub fn detect(program: &Program, choice: &WorkloadChoice) -> Result<Workload, String> {
        let rel = |name: &str, kind: RelationKind| -> Result<RelationId, String> {
            let id = program.relation_by_name(name).ok_or_else(|| format!("no relation `{name}` in the program"))?;
            if program.relation(id).kind != kind {
                return Err(format!("`{name}` is not an {} relation", kind.keyword()));
            }
            Ok(id)
        };
        let int_first = |r: RelationId| program.relation(r).columns.first().is_some_and(|c| c.ty == Type::Int);
        let entry = match &choice.entry {
            Some(name) => Some(program.component_by_name(name).ok_or_else(|| format!("no component `{name}`"))?),
            None => None,
        };
        let inputs: Vec<RelationId> = match &choice.input {
            Some(name) => vec![rel(name, RelationKind::Input)?],
            None => program
                .relation_ids()
                .filter(|&r| program.relation(r).kind == RelationKind::Input && int_first(r))
                .filter(|&r| entry.is_none() || program.relation(r).component == entry)
                .collect(),
        };
        for input in inputs.iter().copied() {
            let component = program.relation(input).component;
            // Outputs of the input's own component first; a rewrite may have moved the reply
            // path to another component (Paxos' commit part), whose outputs come next.
            let outputs: Vec<RelationId> = match &choice.output {
                Some(name) => vec![rel(name, RelationKind::Output)?],
                None => {
                    let mut outputs: Vec<RelationId> = program
                        .relation_ids()
                        .filter(|&r| program.relation(r).kind == RelationKind::Output && int_first(r))
                        .collect();
                    outputs.sort_by_key(|&r| program.relation(r).component != component);
                    outputs
                }
            };
            // Prefer the output whose first column has the input's id name; from another
            // component, only such an output.
            let id_name = &program.relation(input).columns.first().map(|c| c.name.clone()).unwrap_or_default();
            let best = outputs
                .iter()
                .copied()
                .find(|&o| &program.relation(o).columns[0].name == id_name)
                .or_else(|| outputs.first().copied().filter(|&o| program.relation(o).component == component));
            if let Some(output) = best {
                return Workload::new(program, input, output, choice.send_to.unwrap_or(SendTo::All));
            }
        }
        Err("cannot find a request/reply pair: an input whose first column is an int id and an output \
             echoing it (of the same component, or of another with the same id column name); name them \
             with --input and --output"
            .into())
    }

    pub fn new(program: &Program, input: RelationId, output: RelationId, send_to: SendTo) -> Result<Workload, String> {
        let i = program.relation(input);
        let o = program.relation(output);
        if i.columns.first().map(|c| c.ty) != Some(Type::Int) || o.columns.first().map(|c| c.ty) != Some(Type::Int) {
            return Err(format!("`{}` and `{}` must both start with an int id column", i.name, o.name));
        }
        let entry = i.component.ok_or_else(|| format!("`{}` belongs to no component", i.name))?;
        let mut echoed = vec![(0, 0)];
        for (ci, c) in i.columns.iter().enumerate().skip(1) {
            if let Some(co) = o.column_index(&c.name) {
                if o.columns[co].ty == c.ty {
                    echoed.push((ci, co));
                }
            }
        }
        Ok(Workload {
            entry,
            input,
            output,
            input_types: i.columns.iter().map(|c| (c.name.clone(), c.ty)).collect(),
            echoed,
            send_to,
        })
    }

    /// The request with this id: ints are the id, strings `<column><id>`, bools alternate.
    pub fn request(&self, id: i64) -> Tuple {
        self.input_types
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| match (i, ty) {
                (0, _) | (_, Type::Int) => Value::Int(id),
                (_, Type::Bool) => Value::Bool(id % 2 == 0),
                (_, Type::Addr) => Value::Addr(NodeAddr(0)),
                _ => Value::str(&format!("{name}{id}")),
            })
            .collect()
    }

    /// Which of `targets` (the entry component's logical nodes) get request `id`.
    pub fn targets<'a>(&self, id: i64, targets: &'a [NodeAddr]) -> &'a [NodeAddr] {
        match self.send_to {
            SendTo::All => targets,
            SendTo::RoundRobin if targets.is_empty() => targets,
            SendTo::RoundRobin => {
                let i = id.rem_euclid(targets.len() as i64) as usize;
                &targets[i..i + 1]
            }
        }
    }
}

/// Why a reply is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// No request has this id (or the reply has no int id).
    Unexpected(String),
    /// The request already got a reply.
    Duplicate(i64),
    /// An echoed column differs from what was sent.
    Mismatch { id: i64, column: String, sent: String, got: String },
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Unexpected(t) => write!(f, "reply {t} answers no request"),
            ReplyError::Duplicate(id) => write!(f, "request {id} got a second reply"),
            ReplyError::Mismatch { id, column, sent, got } => {
                write!(f, "reply to request {id}: `{column}` is {got}, sent {sent}")
            }
        }
    }
}

/// Tracks outstanding requests and checks each reply against its request.
pub struct Checker {
    workload: Workload,
    /// id -> (request, time sent in microseconds since the start).
    outstanding: HashMap<i64, (Tuple, u64)>,
    answered: HashMap<i64, ()>,
}

impl Checker {
    pub fn new(workload: Workload) -> Self {
        Checker { workload, outstanding: HashMap::new(), answered: HashMap::new() }
    }

    pub fn sent(&mut self, id: i64, request: Tuple, at_us: u64) {
        self.outstanding.insert(id, (request, at_us));
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Checks a reply; on success returns (id, when its request was sent).
    pub fn reply(&mut self, tuple: &[Value]) -> Result<(i64, u64), ReplyError> {
        let render = || format!("({})", tuple.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "));
        let id = tuple.first().and_then(Value::as_int).ok_or_else(|| ReplyError::Unexpected(render()))?;
        let Some((request, at)) = self.outstanding.remove(&id) else {
            return Err(if self.answered.contains_key(&id) {
                ReplyError::Duplicate(id)
            } else {
                ReplyError::Unexpected(render())
            });
        };
        self.answered.insert(id, ());
        for &(ci, co) in &self.workload.echoed[1..] {
            if tuple.get(co) != request.get(ci) {
                return Err(ReplyError::Mismatch {
                    id,
                    column: self.workload.input_types[ci].0.clone(),
                    sent: request.get(ci).map(|v| v.to_string()).unwrap_or_default(),
                    got: tuple.get(co).map(|v| v.to_string()).unwrap_or_default(),
                });
            }
        }
        Ok((id, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "component c {
        input tick()
        input req(id: int, payload: string, n: int)
        output rep(id: int, slot: int, payload: string)
        output other(x: string)
        rep(i, 0, p) :- req(i, p, _).
        other(\"a\") :- tick().
    }";

    fn workload() -> Workload {
        let a = compart_analysis::analyze(SRC);
        Workload::detect(&a.program, &WorkloadChoice::default()).unwrap()
    }

    #[test]
    fn detects_the_request_reply_pair_and_echoed_columns() {
        let a = compart_analysis::analyze(SRC);
        let w = workload();
        assert_eq!(a.program.relation(w.input).name, "req");
        assert_eq!(a.program.relation(w.output).name, "rep");
        assert_eq!(w.echoed, vec![(0, 0), (1, 2)]);
        assert_eq!(w.request(7), vec![Value::Int(7), Value::str("payload7"), Value::Int(7)]);
        let bad = WorkloadChoice { input: Some("rep".into()), ..Default::default() };
        assert!(Workload::detect(&a.program, &bad).unwrap_err().contains("not an input"));
    }

    /// After a decoupling the reply may come from another component: it pairs by the id column's
    /// name, never with an unrelated output of another component.
    #[test]
    fn detects_a_reply_moved_to_another_component() {
        let moved = "component front {\n input request(id: int, v: string)\n fwd@d(id, v) :~ request(id, v), nodes(\"back\", d).\n}\ncomponent back {\n channel fwd(id: int, v: string)\n output reply(id: int, v: string)\n output other(n: int)\n reply(id, v) :- fwd(id, v).\n other(1) :- fwd(_, _).\n}\n";
        let a = compart_analysis::analyze(moved);
        assert!(!a.has_errors(), "{:?}", a.diagnostics);
        let w = Workload::detect(&a.program, &WorkloadChoice::default()).unwrap();
        assert_eq!(a.program.relation(w.output).name, "reply");
        let unrelated = moved
            .replace("output reply(id: int, v: string)", "output reply(n: int, v: string)")
            .replace("reply(id, v) :- fwd(id, v).", "reply(id, v) :- fwd(id, v), id > 0.");
        let a = compart_analysis::analyze(&unrelated);
        assert!(Workload::detect(&a.program, &WorkloadChoice::default()).is_err());
    }

    #[test]
    fn checker_flags_duplicates_mismatches_and_strangers() {
        let w = workload();
        let mut c = Checker::new(w.clone());
        c.sent(1, w.request(1), 10);
        c.sent(2, w.request(2), 20);
        assert_eq!(c.reply(&[Value::Int(1), Value::Int(0), Value::str("payload1")]), Ok((1, 10)));
        assert_eq!(c.reply(&[Value::Int(1), Value::Int(0), Value::str("payload1")]), Err(ReplyError::Duplicate(1)));
        assert!(matches!(
            c.reply(&[Value::Int(2), Value::Int(0), Value::str("zzz")]),
            Err(ReplyError::Mismatch { id: 2, .. })
        ));
        assert!(matches!(c.reply(&[Value::Int(9)]), Err(ReplyError::Unexpected(_))));
        assert_eq!(c.outstanding(), 0);
    }

    #[test]
    fn workload_table_merges_under_flags() {
        let t: toml::Table = "entry = \"c\"\ninput = \"req\"\nsend_to = \"round-robin\"".parse().unwrap();
        let c = WorkloadChoice { input: Some("flag".into()), ..Default::default() }.merge_toml(&t).unwrap();
        assert_eq!(
            (c.entry.as_deref(), c.input.as_deref(), c.send_to),
            (Some("c"), Some("flag"), Some(SendTo::RoundRobin))
        );
        let bad: toml::Table = "clients = 3".parse().unwrap();
        assert!(WorkloadChoice::default().merge_toml(&bad).is_err());
        let w = Workload { send_to: SendTo::RoundRobin, ..workload() };
        let targets = [NodeAddr(3), NodeAddr(5)];
        assert_eq!(w.targets(3, &targets), &[NodeAddr(5)]);
    }
}
