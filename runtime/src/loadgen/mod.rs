//! The load generator's logic, free of I/O: which input relations to inject and which outputs
//! answer them ([`Workload::detect`]), the requests it sends ([`Workload::request`]), and the
//! checks on replies ([`Checker`]).
//!
//! A request is a fact of an input relation whose first column is an int id, unique per request
//! across the whole run; its reply is a fact of an output relation (of the same component, or of
//! another with the same id column name) whose first column echoes that id. Every other column of
//! the reply that has the name of an input column must carry the value that was sent.
//!
//! A workload is a mix of such request/reply pairs ([`Op`]s) with weights (a key-value store's
//! writes and reads), and optionally a key space: the key column of every request draws from the
//! same keys, uniformly or Zipfian (YCSB's generator), so that requests conflict on hot keys.

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

/// How keys are drawn from the key space.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyDistribution {
    Uniform,
    /// YCSB's Zipfian with this skew (0 < theta < 1; YCSB's default 0.99): the hottest key gets
    /// a large share of the requests.
    Zipf(f64),
}

impl std::str::FromStr for KeyDistribution {
    type Err = String;
    /// `uniform`, `zipf` (theta 0.99) or `zipf:THETA`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}`: expected `uniform`, `zipf` or `zipf:THETA` with 0 < THETA < 1");
        match s.split_once(':') {
            None if s == "uniform" => Ok(KeyDistribution::Uniform),
            None if s == "zipf" => Ok(KeyDistribution::Zipf(DEFAULT_ZIPF_THETA)),
            Some(("zipf", t)) => match t.parse::<f64>() {
                Ok(theta) if theta > 0.0 && theta < 1.0 => Ok(KeyDistribution::Zipf(theta)),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for KeyDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyDistribution::Uniform => f.write_str("uniform"),
            KeyDistribution::Zipf(t) => write!(f, "zipf:{t}"),
        }
    }
}

pub const DEFAULT_ZIPF_THETA: f64 = 0.99;
pub const DEFAULT_KEYS: u64 = 1000;
/// The Zipfian generator sums over every key once at start.
pub const MAX_KEYS: u64 = 10_000_000;

/// `put=1,get=9`: input relations with their weights.
pub fn parse_mix(s: &str) -> Result<Vec<(String, f64)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, w) = part.split_once('=').ok_or_else(|| format!("`{part}`: expected input=weight"))?;
        let w: f64 = w.trim().parse().map_err(|_| format!("`{part}`: the weight must be a number"))?;
        out.push((name.trim().to_string(), w));
    }
    if out.is_empty() {
        return Err(format!("`{s}`: expected input=weight,..."));
    }
    Ok(out)
}

/// `--mix put=1,get=9` as one command-line value.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix(pub Vec<(String, f64)>);

impl std::str::FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_mix(s).map(Mix)
    }
}

/// What the user (flags, or the deployment's `[workload]` table) asked for; None = detect.
#[derive(Clone, Debug, Default)]
pub struct WorkloadChoice {
    pub entry: Option<String>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub send_to: Option<SendTo>,
    /// Input relations and their weights; each one's reply is detected.
    pub mix: Option<Vec<(String, f64)>>,
    /// Size of the key space (a key space is used when any of the key options is given).
    pub keys: Option<u64>,
    pub distribution: Option<KeyDistribution>,
    /// The column that holds the key, in every input of the mix that has it (default `k` or `key`).
    pub key_column: Option<String>,
    /// Seed of the request stream (operations and keys); the same seed sends the same requests.
    pub seed: Option<u64>,
}

const WORKLOAD_KEYS: [&str; 10] =
    ["entry", "input", "output", "send_to", "mix", "keys", "distribution", "key_column", "seed", "zipf_theta"];

impl WorkloadChoice {
    /// Reads a `[workload]` table; flags given in `self` win.
    pub fn merge_toml(mut self, table: &toml::Table) -> Result<Self, String> {
        for key in table.keys() {
            if !WORKLOAD_KEYS.contains(&key.as_str()) {
                return Err(format!("[workload]: unknown key `{key}` (expected {})", WORKLOAD_KEYS.join(", ")));
            }
        }
        let get = |k: &str| -> Result<Option<String>, String> {
            match table.get(k) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("[workload]: `{k}` must be a string")),
            }
        };
        let int = |k: &str| -> Result<Option<u64>, String> {
            match table.get(k) {
                None => Ok(None),
                Some(toml::Value::Integer(n)) if *n >= 0 => Ok(Some(*n as u64)),
                Some(_) => Err(format!("[workload]: `{k}` must be a non-negative integer")),
            }
        };
        self.entry = self.entry.or(get("entry")?);
        self.input = self.input.or(get("input")?);
        self.output = self.output.or(get("output")?);
        if self.send_to.is_none() {
            self.send_to =
                get("send_to")?.map(|s| s.parse()).transpose().map_err(|e| format!("[workload] send_to: {e}"))?;
        }
        if self.mix.is_none() {
            self.mix = match table.get("mix") {
                None => None,
                Some(toml::Value::Table(t)) => Some(
                    t.iter()
                        .map(|(name, w)| match w {
                            toml::Value::Integer(n) => Ok((name.clone(), *n as f64)),
                            toml::Value::Float(f) => Ok((name.clone(), *f)),
                            _ => Err(format!("[workload] mix: the weight of `{name}` must be a number")),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Some(_) => return Err("[workload]: `mix` must be a table of input = weight".into()),
            };
        }
        self.keys = self.keys.or(int("keys")?);
        self.seed = self.seed.or(int("seed")?);
        self.key_column = self.key_column.or(get("key_column")?);
        if self.distribution.is_none() {
            let mut d = get("distribution")?
                .map(|s| s.parse())
                .transpose()
                .map_err(|e| format!("[workload] distribution: {e}"))?;
            match table.get("zipf_theta") {
                None => {}
                Some(v) => {
                    let theta = v.as_float().or(v.as_integer().map(|i| i as f64)).filter(|t| *t > 0.0 && *t < 1.0);
                    let Some(theta) = theta else {
                        return Err("[workload]: `zipf_theta` must be a number between 0 and 1 (exclusive)".into());
                    };
                    if !matches!(d, None | Some(KeyDistribution::Zipf(_))) {
                        return Err("[workload]: `zipf_theta` goes with `distribution = \"zipf\"`".into());
                    }
                    d = Some(KeyDistribution::Zipf(theta));
                }
            }
            self.distribution = d;
        }
        Ok(self)
    }
}

/// One request/reply pair of the workload.
#[derive(Clone, Debug)]
pub struct Op {
    /// The input's component: where its requests go.
    pub entry: ComponentId,
    pub input: RelationId,
    pub output: RelationId,
    pub input_name: String,
    pub output_name: String,
    pub input_types: Vec<(String, Type)>,
    pub output_columns: Vec<(String, Type)>,
    /// (input column, output column) pairs that must be equal; the id is pair 0.
    pub echoed: Vec<(usize, usize)>,
    pub weight: f64,
    /// The input column holding the key, when the workload has a key space and this input has it.
    pub key: Option<usize>,
    /// Reads: (reply column, writing op, its input column): the reply carries a value that op
    /// wrote under the same key (see [`Checker::reply`]).
    pub reads: Vec<(usize, usize, usize)>,
}

/// The key space shared by every op that has the key column.
#[derive(Clone, Debug)]
pub struct KeySpace {
    pub column: String,
    pub count: u64,
    pub distribution: KeyDistribution,
    zipf: Option<Zipf>,
}

/// YCSB's ZipfianGenerator (Gray et al., "Quickly generating billion-record synthetic
/// databases"): rank 0 is the most popular.
#[derive(Clone, Debug)]
struct Zipf {
    n: f64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipf {
    fn new(n: u64, theta: f64) -> Zipf {
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(n);
        let zeta2 = zeta(2.min(n));
        let nf = n as f64;
        let eta = if n <= 1 { 0.0 } else { (1.0 - (2.0 / nf).powf(1.0 - theta)) / (1.0 - zeta2 / zetan) };
        Zipf { n: nf, theta, alpha: 1.0 / (1.0 - theta), zetan, eta }
    }
    /// `u` uniform in [0, 1).
    fn rank(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n as u64 - 1);
        }
        ((self.n * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64).min(self.n as u64 - 1)
    }
}

impl KeySpace {
    /// The key index for a uniform `u` in [0, 1).
    pub fn sample(&self, u: f64) -> u64 {
        let rank = match &self.zipf {
            Some(z) => z.rank(u),
            None => ((u * self.count as f64) as u64).min(self.count - 1),
        };
        // Popular ranks are spread over the key space (a bijection: 1_000_003 is prime and,
        // being above MAX_KEYS, never divides the count), so that the hottest keys are not the
        // first ones and do not all hash alike.
        ((rank as u128 * 1_000_003 + 7919) % self.count as u128) as u64
    }
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub ops: Vec<Op>,
    pub send_to: SendTo,
    pub keys: Option<KeySpace>,
    pub seed: u64,
    /// Running sums of the ops' weights, for picking one.
    cumulative: Vec<f64>,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl Workload {
    pub fn detect(program: &Program, choice: &WorkloadChoice) -> Result<Workload, String> {
        let mut ops = Vec::new();
        match &choice.mix {
            Some(mix) => {
                if choice.input.is_some() || choice.output.is_some() {
                    return Err("a mix names its inputs, and their replies are detected: give either a mix or \
                                an input/output pair"
                        .into());
                }
                for (name, weight) in mix {
                    if !(weight.is_finite() && *weight > 0.0) {
                        return Err(format!("mix: the weight of `{name}` must be a positive number"));
                    }
                    if ops.iter().any(|o: &Op| &o.input_name == name) {
                        return Err(format!("mix: `{name}` is listed twice"));
                    }
                    let one = WorkloadChoice { input: Some(name.clone()), ..choice.clone() };
                    ops.push(Self::detect_one(program, &one, *weight).map_err(|e| format!("mix `{name}`: {e}"))?);
                }
            }
            None => ops.push(Self::detect_one(program, choice, 1.0)?),
        }
        let keyed = choice.keys.is_some() || choice.distribution.is_some() || choice.key_column.is_some();
        let keys = if keyed { Some(Self::key_space(choice, &mut ops)?) } else { None };
        Self::find_reads(&mut ops);
        let mut total = 0.0;
        let cumulative = ops.iter().map(|o| {
            total += o.weight;
            total
        });
        let cumulative = cumulative.collect();
        Ok(Workload {
            ops,
            send_to: choice.send_to.unwrap_or(SendTo::All),
            keys,
            seed: choice.seed.unwrap_or(1),
            cumulative,
        })
    }

    fn key_space(choice: &WorkloadChoice, ops: &mut [Op]) -> Result<KeySpace, String> {
        let column = match &choice.key_column {
            Some(c) => c.clone(),
            None => ["k", "key"]
                .into_iter()
                .find(|c| ops.iter().any(|o| o.input_types.iter().skip(1).any(|(n, _)| n == c)))
                .ok_or("no input of the workload has a column `k` or `key`: name the key column (key_column)")?
                .to_string(),
        };
        for op in ops.iter_mut() {
            op.key = op.input_types.iter().position(|(n, _)| n == &column).filter(|&i| i > 0);
            if let Some(i) = op.key {
                if !matches!(op.input_types[i].1, Type::Int | Type::String) {
                    return Err(format!("key column `{column}` of `{}` must be an int or a string", op.input_name));
                }
            }
        }
        if ops.iter().all(|o| o.key.is_none()) {
            let names: Vec<&str> = ops.iter().map(|o| o.input_name.as_str()).collect();
            return Err(format!("key column `{column}` is not a column (other than the id) of {}", names.join(", ")));
        }
        let count = choice.keys.unwrap_or(DEFAULT_KEYS);
        if !(1..=MAX_KEYS).contains(&count) {
            return Err(format!("the key space must have between 1 and {MAX_KEYS} keys, not {count}"));
        }
        let distribution = choice.distribution.unwrap_or(KeyDistribution::Zipf(DEFAULT_ZIPF_THETA));
        let zipf = match distribution {
            KeyDistribution::Zipf(theta) => Some(Zipf::new(count, theta)),
            KeyDistribution::Uniform => None,
        };
        Ok(KeySpace { column, count, distribution, zipf })
    }

    /// A reply column that is not echoed but has the name of a column another op writes (a
    /// get's `v` and a put's `v`), both keyed, is a read of what that op wrote.
    fn find_reads(ops: &mut [Op]) {
        for r in 0..ops.len() {
            let Some(rk) = ops[r].key else { continue };
            if !ops[r].echoed.iter().any(|&(i, _)| i == rk) {
                continue;
            }
            let mut reads = Vec::new();
            for (w, writer) in ops.iter().enumerate() {
                if w == r || writer.key.is_none() {
                    continue;
                }
                for (wc, (name, ty)) in writer.input_types.iter().enumerate().skip(1) {
                    if Some(wc) == writer.key || ops[r].input_types.iter().any(|(n, _)| n == name) {
                        continue;
                    }
                    if let Some(rc) = ops[r].output_columns.iter().position(|(n, t)| n == name && t == ty) {
                        reads.push((rc, w, wc));
                    }
                }
            }
            ops[r].reads = reads;
        }
    }

    fn detect_one(program: &Program, choice: &WorkloadChoice, weight: f64) -> Result<Op, String> {
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
            // Prefer the output whose first column has the input's id name, and among those one
            // named after the input (`get` -> `get_reply` before `put_done`); from another
            // component, only such an output.
            let id_name = &program.relation(input).columns.first().map(|c| c.name.clone()).unwrap_or_default();
            let input_name = &program.relation(input).name;
            let same_id: Vec<RelationId> =
                outputs.iter().copied().filter(|&o| &program.relation(o).columns[0].name == id_name).collect();
            let best = same_id
                .iter()
                .copied()
                .find(|&o| program.relation(o).name.starts_with(&format!("{input_name}_")))
                .or_else(|| same_id.first().copied())
                .or_else(|| outputs.first().copied().filter(|&o| program.relation(o).component == component));
            if let Some(output) = best {
                return Op::new(program, input, output, weight);
            }
        }
        Err("cannot find a request/reply pair: an input whose first column is an int id and an output \
             echoing it (of the same component, or of another with the same id column name); name them \
             with --input and --output"
            .into())
    }
}

impl Op {
    pub fn new(program: &Program, input: RelationId, output: RelationId, weight: f64) -> Result<Op, String> {
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
        Ok(Op {
            entry,
            input,
            output,
            input_name: i.name.clone(),
            output_name: o.name.clone(),
            input_types: i.columns.iter().map(|c| (c.name.clone(), c.ty)).collect(),
            output_columns: o.columns.iter().map(|c| (c.name.clone(), c.ty)).collect(),
            echoed,
            weight,
            key: None,
            reads: Vec::new(),
        })
    }
}

impl Workload {
    /// A one-op workload (no key space).
    pub fn single(op: Op, send_to: SendTo) -> Workload {
        Workload { ops: vec![op], send_to, keys: None, seed: 1, cumulative: vec![1.0] }
    }

    /// Request `id`: which op, and its fact. The id column is the id; the key column (if any) a
    /// key drawn from the key space, as `<column><key>` for strings; other ints are the id,
    /// strings `<column name><id>`, bools alternate. A pure function of the seed and the id.
    pub fn request(&self, id: i64) -> (usize, Tuple) {
        let r1 = splitmix(self.seed ^ (id as u64).wrapping_mul(0xd6e8_feb8_6659_fd93));
        let r2 = splitmix(r1);
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let pick = unit(r1) * total;
        let op = self.cumulative.iter().position(|&c| pick < c).unwrap_or(self.ops.len() - 1);
        let o = &self.ops[op];
        let key = self.keys.as_ref().zip(o.key).map(|(ks, col)| (col, ks.sample(unit(r2))));
        let tuple = o
            .input_types
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| match (i, ty, key) {
                (0, _, _) => Value::Int(id),
                (_, Type::Int, Some((c, k))) if c == i => Value::Int(k as i64),
                (_, _, Some((c, k))) if c == i => Value::str(&format!("{name}{k}")),
                (_, Type::Int, _) => Value::Int(id),
                (_, Type::Bool, _) => Value::Bool(id % 2 == 0),
                (_, Type::Addr, _) => Value::Addr(NodeAddr(0)),
                _ => Value::str(&format!("{name}{id}")),
            })
            .collect();
        (op, tuple)
    }

    /// Which of `targets` (the op's entry component's logical nodes) get request `id`.
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

    /// Whether facts of `relation` answer some op.
    pub fn is_output(&self, relation: RelationId) -> bool {
        self.ops.iter().any(|o| o.output == relation)
    }
}

/// Why a reply is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// No request has this id (or the reply has no int id).
    Unexpected(String),
    /// The request already got a reply.
    Duplicate(i64),
    /// An echoed column differs from what was sent, or a read returned a value no request wrote
    /// under its key.
    Mismatch { id: i64, column: String, sent: String, got: String },
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Unexpected(t) => write!(f, "reply {t} answers no request"),
            ReplyError::Duplicate(id) => write!(f, "request {id} got a second reply"),
            ReplyError::Mismatch { id, column, sent, got } => {
                write!(f, "reply to request {id}: `{column}` is {got}, expected {sent}")
            }
        }
    }
}

/// Tracks outstanding requests and checks each reply against its request.
pub struct Checker {
    workload: Workload,
    /// id -> (op, request, time sent in microseconds since the start).
    outstanding: HashMap<i64, (usize, Tuple, u64)>,
    answered: HashMap<i64, ()>,
    /// (op, input column, value) -> the key it was written under, for columns some op reads.
    written: HashMap<(usize, usize, Value), Value>,
    /// Per op: requests sent and correct replies.
    pub sent_per_op: Vec<u64>,
    pub ok_per_op: Vec<u64>,
}

impl Checker {
    pub fn new(workload: Workload) -> Self {
        let n = workload.ops.len();
        Checker {
            workload,
            outstanding: HashMap::new(),
            answered: HashMap::new(),
            written: HashMap::new(),
            sent_per_op: vec![0; n],
            ok_per_op: vec![0; n],
        }
    }

    pub fn sent(&mut self, id: i64, op: usize, request: Tuple, at_us: u64) {
        let w = &self.workload;
        if let Some(key) = w.ops[op].key.and_then(|k| request.get(k)) {
            for reader in &w.ops {
                for &(_, wo, wc) in reader.reads.iter().filter(|r| r.1 == op) {
                    if let Some(v) = request.get(wc) {
                        self.written.insert((wo, wc, v.clone()), key.clone());
                    }
                }
            }
        }
        self.sent_per_op[op] += 1;
        self.outstanding.insert(id, (op, request, at_us));
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Checks a reply (a fact of `relation`); on success returns (id, when its request was sent).
    ///
    /// Besides exactly one reply per request on the request's own output and the echoed columns,
    /// a read (a reply column named like a column another op writes, under the same key) must
    /// carry a value that op wrote under this key in a request already sent, or a value the
    /// workload never writes (the program's answer for a missing key, e.g. `""`). Reads may be
    /// stale (a replica may lag), so which of the written values is not checked here.
    pub fn reply(&mut self, relation: RelationId, tuple: &[Value]) -> Result<(i64, u64), ReplyError> {
        let render = || format!("({})", tuple.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "));
        let id = tuple.first().and_then(Value::as_int).ok_or_else(|| ReplyError::Unexpected(render()))?;
        let Some((op, request, at)) = self.outstanding.remove(&id) else {
            return Err(if self.answered.contains_key(&id) {
                ReplyError::Duplicate(id)
            } else {
                ReplyError::Unexpected(render())
            });
        };
        let o = &self.workload.ops[op];
        if relation != o.output {
            // Not this request's reply: it stays outstanding.
            let expected = o.output_name.clone();
            self.outstanding.insert(id, (op, request, at));
            return Err(ReplyError::Unexpected(format!("{} (request {id} is answered by `{expected}`)", render())));
        }
        self.answered.insert(id, ());
        for &(ci, co) in &o.echoed[1..] {
            if tuple.get(co) != request.get(ci) {
                return Err(ReplyError::Mismatch {
                    id,
                    column: o.input_types[ci].0.clone(),
                    sent: request.get(ci).map(|v| v.to_string()).unwrap_or_default(),
                    got: tuple.get(co).map(|v| v.to_string()).unwrap_or_default(),
                });
            }
        }
        let key = o.key.and_then(|k| request.get(k));
        for &(rc, wo, wc) in &o.reads {
            let (Some(got), Some(key)) = (tuple.get(rc), key) else { continue };
            let column = &o.output_columns[rc].0;
            let writer = &self.workload.ops[wo];
            let wrong = match self.written.get(&(wo, wc, got.clone())) {
                Some(k) => k != key,
                // Generated values are `<column><id>`: one of those was never written.
                None => got.as_str().is_some_and(|s| {
                    s.strip_prefix(writer.input_types[wc].0.as_str())
                        .is_some_and(|n| !n.is_empty() && n.parse::<u64>().is_ok())
                }),
            };
            if wrong {
                return Err(ReplyError::Mismatch {
                    id,
                    column: column.clone(),
                    sent: format!("a value `{}` wrote under {key} (or none)", writer.input_name),
                    got: got.to_string(),
                });
            }
        }
        self.ok_per_op[op] += 1;
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
        assert_eq!(a.program.relation(w.ops[0].input).name, "req");
        assert_eq!(a.program.relation(w.ops[0].output).name, "rep");
        assert_eq!(w.ops[0].echoed, vec![(0, 0), (1, 2)]);
        assert_eq!(w.request(7), (0, vec![Value::Int(7), Value::str("payload7"), Value::Int(7)]));
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
        assert_eq!(a.program.relation(w.ops[0].output).name, "reply");
        let unrelated = moved
            .replace("output reply(id: int, v: string)", "output reply(n: int, v: string)")
            .replace("reply(id, v) :- fwd(id, v).", "reply(id, v) :- fwd(id, v), id > 0.");
        let a = compart_analysis::analyze(&unrelated);
        assert!(Workload::detect(&a.program, &WorkloadChoice::default()).is_err());
    }

    /// Two request kinds with the same id column name: each pairs with the output named after it,
    /// not with the first output that echoes its id.
    #[test]
    fn pairs_each_input_with_the_output_named_after_it() {
        let src = "component kv {\n input put(id: int, k: int, v: int)\n input get(id: int, k: int)\n output put_done(id: int, k: int)\n output get_reply(id: int, k: int, v: int)\n table data(k: int, v: int)\n data(k, v) :+ put(_, k, v).\n put_done(id, k) :- put(id, k, _).\n get_reply(id, k, v) :- get(id, k), data(k, v).\n}\n";
        let a = compart_analysis::analyze(src);
        assert!(!a.has_errors(), "{:?}", a.diagnostics);
        for (input, output) in [("get", "get_reply"), ("put", "put_done")] {
            let choice = WorkloadChoice { input: Some(input.into()), ..Default::default() };
            let w = Workload::detect(&a.program, &choice).unwrap();
            assert_eq!(a.program.relation(w.ops[0].output).name, output, "{input}");
        }
    }

    #[test]
    fn checker_flags_duplicates_mismatches_and_strangers() {
        let w = workload();
        let rep = w.ops[0].output;
        let mut c = Checker::new(w.clone());
        c.sent(1, 0, w.request(1).1, 10);
        c.sent(2, 0, w.request(2).1, 20);
        assert_eq!(c.reply(rep, &[Value::Int(1), Value::Int(0), Value::str("payload1")]), Ok((1, 10)));
        assert_eq!(
            c.reply(rep, &[Value::Int(1), Value::Int(0), Value::str("payload1")]),
            Err(ReplyError::Duplicate(1))
        );
        assert!(matches!(
            c.reply(rep, &[Value::Int(2), Value::Int(0), Value::str("zzz")]),
            Err(ReplyError::Mismatch { id: 2, .. })
        ));
        assert!(matches!(c.reply(rep, &[Value::Int(9)]), Err(ReplyError::Unexpected(_))));
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

    const KVS: &str = "component leader {
        input put(req: int, k: string, v: string) key(req)
        output put_done(req: int)
        put_done(r) :- put(r, _, _).
    }
    component replica {
        input get(req: int, k: string)
        output get_reply(req: int, k: string, v: string, found: bool)
        table store(k: string, v: string)
        get_reply(r, k, v, true) :- get(r, k), store(k, v).
        get_reply(r, k, \"\", false) :- get(r, k), !store(k, _).
    }";

    fn kvs(mix: &str, keys: u64, distribution: &str) -> (compart_analysis::Analysis, Workload) {
        let a = compart_analysis::analyze(KVS);
        assert!(!a.has_errors(), "{:?}", a.diagnostics);
        let choice = WorkloadChoice {
            mix: Some(parse_mix(mix).unwrap()),
            keys: Some(keys),
            distribution: Some(distribution.parse().unwrap()),
            ..Default::default()
        };
        let w = Workload::detect(&a.program, &choice).unwrap();
        (a, w)
    }

    #[test]
    fn a_mix_of_writes_and_reads_over_shared_keys() {
        let (a, w) = kvs("put=1,get=3", 100, "uniform");
        let names: Vec<(&str, &str, f64)> =
            w.ops.iter().map(|o| (o.input_name.as_str(), o.output_name.as_str(), o.weight)).collect();
        assert_eq!(names, [("put", "put_done", 1.0), ("get", "get_reply", 3.0)]);
        assert_eq!(w.keys.as_ref().map(|k| k.column.as_str()), Some("k"));
        // get_reply's `v` reads what put wrote in its column `v` (2).
        assert_eq!(w.ops[1].reads, [(2, 0, 2)]);
        assert_ne!(a.program.component(w.ops[0].entry).name, a.program.component(w.ops[1].entry).name);
        let mut per_op = [0u32; 2];
        let mut keys = std::collections::HashSet::new();
        for id in 1..=4000 {
            let (op, t) = w.request(id);
            per_op[op] += 1;
            assert_eq!(t[0], Value::Int(id));
            keys.insert(t[1].clone());
            assert_eq!(w.request(id), (op, t), "a pure function of the id");
        }
        assert!((800..1200).contains(&per_op[0]), "{per_op:?}");
        assert_eq!(keys.len(), 100, "uniform over 100 keys reaches them all");
        assert!(keys.iter().all(|k| k.as_str().is_some_and(|s| s.starts_with('k'))));
    }

    #[test]
    fn zipfian_keys_are_skewed_and_spread() {
        let (_, w) = kvs("put=1", 1000, "zipf");
        let mut counts: HashMap<Value, u32> = HashMap::new();
        let n = 100_000;
        for id in 1..=n {
            *counts.entry(w.request(id).1[1].clone()).or_default() += 1;
        }
        let mut sorted: Vec<u32> = counts.values().copied().collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        // YCSB's zipf(0.99) over 1000 keys: the hottest key takes about 13%, the top 10 about 39%.
        let top: u32 = sorted.iter().take(10).sum();
        assert!(sorted[0] as i64 * 100 > 8 * n && sorted[0] as i64 * 100 < 20 * n, "{:?}", &sorted[..10]);
        assert!(top as i64 * 100 > 30 * n, "{top}");
        assert!(counts.len() > 500, "the tail is reached: {}", counts.len());
        // The hottest keys are scattered, not k0, k1, ...
        let hottest = counts.iter().max_by_key(|(_, &c)| c).map(|(k, _)| k.clone());
        assert_ne!(hottest, Some(Value::str("k0")));
        let (_, u) = kvs("put=1", 1000, "uniform");
        let mut uc: HashMap<Value, u32> = HashMap::new();
        for id in 1..=n {
            *uc.entry(u.request(id).1[1].clone()).or_default() += 1;
        }
        assert!(uc.values().all(|&c| c < 200), "uniform: no hot key");
    }

    #[test]
    fn reads_must_return_a_value_written_under_their_key() {
        let (_, w) = kvs("put=1,get=1", 10, "uniform");
        let (put_done, get_reply) = (w.ops[0].output, w.ops[1].output);
        let mut c = Checker::new(w.clone());
        let put = |id: i64, k: &str| vec![Value::Int(id), Value::str(k), Value::str(&format!("v{id}"))];
        c.sent(1, 0, put(1, "k3"), 0);
        c.sent(2, 0, put(2, "k4"), 0);
        assert_eq!(c.reply(put_done, &[Value::Int(1)]), Ok((1, 0)));
        let get = |id: i64, k: &str| vec![Value::Int(id), Value::str(k)];
        let reply =
            |id: i64, k: &str, v: &str, found| vec![Value::Int(id), Value::str(k), Value::str(v), Value::Bool(found)];
        for id in 10..15 {
            c.sent(id, 1, get(id, "k3"), 0);
        }
        assert_eq!(c.reply(get_reply, &reply(10, "k3", "v1", true)), Ok((10, 0)));
        assert_eq!(c.reply(get_reply, &reply(11, "k3", "", false)), Ok((11, 0)), "not found yet: stale is fine");
        let wrong_key = c.reply(get_reply, &reply(12, "k3", "v2", true));
        assert!(
            matches!(&wrong_key, Err(ReplyError::Mismatch { id: 12, column, .. }) if column == "v"),
            "{wrong_key:?}"
        );
        let never = c.reply(get_reply, &reply(13, "k3", "v99", true));
        assert!(matches!(never, Err(ReplyError::Mismatch { id: 13, .. })), "{never:?}");
        // A reply on another op's output does not answer the request.
        assert!(matches!(c.reply(put_done, &[Value::Int(14)]), Err(ReplyError::Unexpected(_))));
        assert_eq!(c.reply(get_reply, &reply(14, "k3", "v1", true)), Ok((14, 0)));
        assert_eq!((c.sent_per_op.clone(), c.ok_per_op.clone()), (vec![2, 5], vec![1, 3]));
    }

    #[test]
    fn workload_options_are_checked() {
        let a = compart_analysis::analyze(KVS);
        let t: toml::Table =
            "send_to = \"round-robin\"\nkeys = 50\ndistribution = \"zipf\"\nzipf_theta = 0.8\nseed = 7\n[mix]\nput = 1\nget = 9"
                .parse()
                .unwrap();
        let c = WorkloadChoice::default().merge_toml(&t).unwrap();
        assert_eq!(c.distribution, Some(KeyDistribution::Zipf(0.8)));
        assert_eq!(c.mix, Some(vec![("get".to_string(), 9.0), ("put".to_string(), 1.0)]));
        let w = Workload::detect(&a.program, &c).unwrap();
        assert_eq!((w.seed, w.keys.as_ref().unwrap().count, w.send_to), (7, 50, SendTo::RoundRobin));
        let err = |choice: WorkloadChoice| Workload::detect(&a.program, &choice).unwrap_err();
        let mix = |m: &str| Some(parse_mix(m).unwrap());
        assert!(err(WorkloadChoice { mix: mix("put=0"), ..Default::default() }).contains("positive"));
        assert!(err(WorkloadChoice { mix: mix("nope=1"), ..Default::default() }).contains("no relation `nope`"));
        assert!(err(WorkloadChoice { mix: mix("put=1"), input: Some("put".into()), ..Default::default() })
            .contains("either a mix"));
        assert!(err(WorkloadChoice { mix: mix("put=1"), key_column: Some("v2".into()), ..Default::default() })
            .contains("`v2`"));
        assert!(err(WorkloadChoice { mix: mix("put=1"), keys: Some(0), ..Default::default() }).contains("between 1"));
        assert!("zipf:1.5".parse::<KeyDistribution>().is_err());
        assert!(parse_mix("put").is_err());
        let bad: toml::Table = "zipf_theta = 2".parse().unwrap();
        assert!(WorkloadChoice::default().merge_toml(&bad).is_err());
    }
}
