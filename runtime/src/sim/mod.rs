//! The deterministic simulator: every node of a deployment in one process, under a seeded
//! scheduler that reorders, delays and duplicates messages (loss is modelled as delay: the
//! runtime retransmits), crashes and restarts nodes (tables recovered when durability is on),
//! partitions the network, and injects a generated workload. Invariants are checked after every
//! tick; a violation comes with the trace of events, minimised, and the seed that replays it.
//!
//! Global invariants read every node's facts: a live node's facts of its latest tick, a crashed
//! node's durable tables (what it recovers on restart), so a crash alone never makes another
//! node's facts look orphaned.
//!
//! A run is a list of [`Event`]s. Generation draws events from a splitmix64 stream and applies
//! them; replay applies a given list. Events refer to messages by position among the messages
//! deliverable at that moment (modulo their number), so any sub-list of a trace still replays,
//! which is what minimisation relies on.

#[cfg(test)]
mod crash_tests;
pub mod lincheck;
mod workload;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use compart_analysis::model::{RelationId, RelationKind, RuleKind};
use compart_analysis::Analysis;

use crate::deploy::Deployment;
use crate::durability::Change;
use crate::engine::{route, CompiledProgram, GlobalChecker, Node, NodeOptions, Violation};
use crate::value::{NodeAddr, Tuple, Value};
pub use workload::WorkloadSpec;

/// splitmix64: tiny, seedable, and the same on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Number of scheduler events per schedule.
    pub steps: usize,
    /// Probabilities of each fault per event (message delivery and ticks take the rest).
    pub duplicate: f64,
    pub crash: f64,
    /// A crash inside a tick: after its durable log write, before its sends and outputs leave
    /// (see [`Event::CrashInTick`]: with durability the log holds them, so they leave anyway).
    pub crash_in_tick: f64,
    pub partition: f64,
    /// Tables survive a crash (logged per tick, as with `--durable`); when false a restarted
    /// node starts from its initial facts.
    pub durability: bool,
    pub workload: WorkloadSpec,
    /// Stop at the first violation (and minimise it).
    pub stop_on_violation: bool,
    pub minimize: bool,
    /// Engine option (see `NodeOptions::incremental`); off only to cross-check the engine.
    pub incremental: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            steps: 400,
            duplicate: 0.02,
            crash: 0.005,
            crash_in_tick: 0.005,
            partition: 0.005,
            durability: true,
            workload: WorkloadSpec::default(),
            stop_on_violation: true,
            minimize: true,
            incremental: true,
        }
    }
}

/// One scheduler decision. Node numbers are process addresses of the deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Queue an input fact for the next tick of the logical node (routed to its instances).
    Input {
        node: NodeAddr,
        relation: RelationId,
        tuple: Tuple,
    },
    /// Move the `pick`-th deliverable in-flight message (mod their number) to its node's inbox.
    Deliver {
        pick: u64,
    },
    /// Like `Deliver`, but a copy stays in flight (the network duplicated it).
    Duplicate {
        pick: u64,
    },
    /// The node runs one tick over its inbox.
    Tick {
        node: NodeAddr,
    },
    Crash {
        node: NodeAddr,
    },
    /// The node runs one tick and crashes after the tick's log write, before its sends and
    /// outputs leave and before it acknowledges what the tick consumed. With durability the
    /// record holds the tick's table changes, its sends and what it processed, as the runtime's
    /// does (`compart node --durable`): the restarted node sends them, and the retransmitted
    /// messages and inputs are dropped as processed, so the tick happened whole and the crash
    /// follows it. Without durability nothing is logged: the sends and outputs are lost with the
    /// tables, and the consumed messages and inputs come again once the node is back.
    CrashInTick {
        node: NodeAddr,
    },
    Restart {
        node: NodeAddr,
    },
    /// Messages between the two nodes are held until `Heal`.
    Partition {
        a: NodeAddr,
        b: NodeAddr,
    },
    Heal,
}

#[derive(Clone, Debug)]
struct Message {
    /// Retransmissions and network duplicates share the id; receivers deduplicate on it.
    id: u64,
    from: NodeAddr,
    to: NodeAddr,
    relation: RelationId,
    tuple: Tuple,
}

/// A node as traces name it: its deployment name (`acceptor/2`), in every line alike.
pub fn node_name(deployment: &Deployment, addr: NodeAddr) -> String {
    deployment.node(addr).map(|n| n.name.clone()).unwrap_or_else(|| format!("node {addr}"))
}

/// A fact as traces show it: addresses as node names (`p2b(acceptor/2, 1)`).
pub fn fact_words(deployment: &Deployment, relation: &str, tuple: &[Value]) -> String {
    let args: Vec<String> = tuple
        .iter()
        .map(|v| match v {
            Value::Addr(a) => node_name(deployment, *a),
            other => other.to_string(),
        })
        .collect();
    format!("{relation}({})", args.join(", "))
}

/// A violation as traces and reports show it: `agreement(3) on acceptor/2`.
pub fn violation_words(deployment: &Deployment, v: &Violation) -> String {
    let node = v.node.map(|n| format!(" on {}", node_name(deployment, n))).unwrap_or_default();
    let args: Vec<String> = v.args.iter().map(Value::to_string).collect();
    format!("{}({}){node}", v.invariant, args.join(", "))
}

/// Which relation, which fact, on which node: for traces.
pub struct EventDisplay<'a>(pub &'a Event, pub &'a CompiledProgram, pub &'a Deployment);

impl fmt::Display for EventDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |a: &NodeAddr| node_name(self.2, *a);
        match self.0 {
            Event::Input { node, relation, tuple } => {
                write!(f, "input  {} <- {}", name(node), fact_words(self.2, self.1.relation_name(*relation), tuple))
            }
            Event::Deliver { pick } => write!(f, "deliver message #{pick}"),
            Event::Duplicate { pick } => write!(f, "duplicate message #{pick}"),
            Event::Tick { node } => write!(f, "tick   {}", name(node)),
            Event::Crash { node } => write!(f, "crash  {}", name(node)),
            Event::CrashInTick { node } => {
                write!(f, "crash  {} in its tick (tables logged, sends and outputs lost)", name(node))
            }
            Event::Restart { node } => write!(f, "restart {}", name(node)),
            Event::Partition { a, b } => write!(f, "partition {} | {}", name(a), name(b)),
            Event::Heal => write!(f, "heal"),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SimResult {
    pub seed: u64,
    pub steps: usize,
    pub durability: bool,
    /// Output facts per (node, relation), in emission order (duplicates kept: one per tick).
    pub outputs: BTreeMap<(NodeAddr, RelationId), Vec<Tuple>>,
    /// (index of the event that revealed it, violation).
    pub violations: Vec<(usize, Violation)>,
    /// The events that ran.
    pub trace: Vec<Event>,
    /// A shorter trace that still violates the first invariant (when minimisation ran).
    pub minimized: Option<Vec<Event>>,
    pub ticks: u64,
    pub messages: u64,
    pub warnings: Vec<String>,
    /// Invocations and responses for linearizability checking: (event index, node, relation, fact).
    pub history: Vec<(usize, NodeAddr, RelationId, Tuple)>,
    /// The `compart sim` options that replay this run ([`replay_args`]).
    pub replay: String,
}

/// What one node contributes to the global invariants: facts per relation they read.
type Contribution = Vec<(RelationId, Vec<Tuple>)>;

/// Each node's initial table facts (placed on its instance as the engine places them), for the
/// relations global invariants read: what a node that recovers nothing starts with. Computed on
/// the first crash that needs it and shared by the replays of one run (minimisation replays a
/// lot).
#[derive(Clone, Default)]
struct InitialTables(Arc<OnceLock<Result<Vec<Contribution>, String>>>);

impl InitialTables {
    fn get(
        &self,
        program: &CompiledProgram,
        deployment: &Arc<Deployment>,
        rels: &[RelationId],
    ) -> &Result<Vec<Contribution>, String> {
        self.0.get_or_init(|| initial_tables(program, deployment, rels))
    }
}

/// Runs the program's initial facts alone (no rules, no invariants) for one tick on every node,
/// so the facts are evaluated and placed exactly as a starting node does it.
fn initial_tables(
    program: &CompiledProgram,
    deployment: &Arc<Deployment>,
    rels: &[RelationId],
) -> Result<Vec<Contribution>, String> {
    let mut model = program.program.clone();
    for c in &mut model.components {
        c.strata.clear();
        c.invariants.clear();
        c.rules.retain(|&r| program.program.rule(r).kind == RuleKind::Fact);
    }
    model.invariants.clear();
    let facts_only = Arc::new(CompiledProgram::from_program(&model)?);
    Ok((0..deployment.nodes.len())
        .map(|i| {
            let mut node = Node::with_options(
                facts_only.clone(),
                NodeAddr(i as u32),
                deployment.clone(),
                NodeOptions { check_invariants: false },
            );
            node.tick(Vec::new());
            rels.iter().map(|&r| (r, node.facts(r))).collect()
        })
        .collect())
}

struct World {
    program: Arc<CompiledProgram>,
    deployment: Arc<Deployment>,
    nodes: Vec<Option<Node>>,
    /// Durable table changes of each node (when durability is on).
    journals: Vec<Vec<Change>>,
    inbox: Vec<Vec<(RelationId, Tuple)>>,
    /// Message ids waiting in each inbox (returned to the network if the node crashes).
    inbox_ids: Vec<Vec<Message>>,
    /// Inputs waiting in each inbox (lost with a crash between ticks).
    inbox_inputs: Vec<Vec<(RelationId, Tuple)>>,
    /// Inputs a tick consumed before crashing in it ([`Event::CrashInTick`]): not acknowledged,
    /// so the client sends them again once the node restarts.
    unacked_inputs: Vec<Vec<(RelationId, Tuple)>>,
    /// Ids each node has received: the runtime's deduplication (kept across crashes, as a
    /// durable runtime would).
    seen: Vec<rustc_hash::FxHashSet<u64>>,
    next_id: u64,
    flight: Vec<Message>,
    /// What the last event did, for traces.
    last: String,
    cut: Vec<(NodeAddr, NodeAddr)>,
    checker: GlobalChecker,
    /// What each node contributes to the global invariants: a live node's snapshot of its latest
    /// tick; a crashed node's durable tables (see [`World::durable_tables`]).
    snapshots: Vec<Contribution>,
    /// The tables among the relations global invariants read: what a crashed node contributes.
    durable_rels: Vec<RelationId>,
    initial: InitialTables,
    durability: bool,
    incremental: bool,
    result: SimResult,
}

impl World {
    fn new(
        program: Arc<CompiledProgram>,
        deployment: Arc<Deployment>,
        durability: bool,
        incremental: bool,
        initial: InitialTables,
    ) -> World {
        let checker = GlobalChecker::new(program.clone(), deployment.clone());
        let durable_rels = checker
            .relations()
            .into_iter()
            .filter(|&r| program.program.relation(r).kind == RelationKind::Table)
            .collect();
        let n = deployment.nodes.len();
        let mut w = World {
            nodes: Vec::new(),
            journals: vec![Vec::new(); n],
            inbox: vec![Vec::new(); n],
            inbox_ids: vec![Vec::new(); n],
            inbox_inputs: vec![Vec::new(); n],
            unacked_inputs: vec![Vec::new(); n],
            seen: vec![Default::default(); n],
            next_id: 0,
            flight: Vec::new(),
            last: String::new(),
            cut: Vec::new(),
            snapshots: vec![Vec::new(); n],
            durable_rels,
            initial,
            checker,
            durability,
            incremental,
            result: SimResult::default(),
            program,
            deployment,
        };
        w.nodes = (0..n).map(|i| Some(w.fresh_node(NodeAddr(i as u32)))).collect();
        w
    }

    fn fresh_node(&self, addr: NodeAddr) -> Node {
        let mut node = Node::with_options(
            self.program.clone(),
            addr,
            self.deployment.clone(),
            NodeOptions { check_invariants: true },
        );
        node.set_snapshot(&self.checker.relations());
        node.set_incremental(self.incremental);
        if self.durability {
            node.enable_journal();
        }
        node
    }

    fn deliverable(&self) -> Vec<usize> {
        (0..self.flight.len())
            .filter(|&i| {
                let m = &self.flight[i];
                self.nodes[m.to.index()].is_some()
                    && !self.cut.iter().any(|&(a, b)| (a == m.from && b == m.to) || (a == m.to && b == m.from))
            })
            .collect()
    }

    /// Applies one event; returns the violations it revealed.
    fn apply(&mut self, index: usize, event: &Event) -> Vec<Violation> {
        self.last.clear();
        match event {
            Event::Input { node, relation, tuple } => {
                // Inputs go to a logical node; a partitioned one routes them like messages.
                for to in route(&self.program, &self.deployment, *node, *relation, tuple) {
                    if self.nodes.get(to.index()).is_some_and(|n| n.is_some()) {
                        self.inbox[to.index()].push((*relation, tuple.clone()));
                        self.inbox_inputs[to.index()].push((*relation, tuple.clone()));
                        self.result.history.push((index, to, *relation, tuple.clone()));
                    }
                }
            }
            Event::Deliver { pick } | Event::Duplicate { pick } => {
                let ready = self.deliverable();
                if !ready.is_empty() {
                    let i = ready[(*pick % ready.len() as u64) as usize];
                    let m = if matches!(event, Event::Deliver { .. }) {
                        self.flight.remove(i)
                    } else {
                        self.flight[i].clone()
                    };
                    let name = |a: NodeAddr| node_name(&self.deployment, a);
                    let fact = fact_words(&self.deployment, self.program.relation_name(m.relation), &m.tuple);
                    if self.seen[m.to.index()].insert(m.id) {
                        self.last = format!("{} -> {}: {fact}", name(m.from), name(m.to));
                        self.inbox[m.to.index()].push((m.relation, m.tuple.clone()));
                        self.inbox_ids[m.to.index()].push(m);
                    } else {
                        self.last = format!("{} -> {}: {fact} (duplicate, dropped)", name(m.from), name(m.to));
                    }
                }
            }
            Event::Tick { node } => return self.tick(index, *node),
            Event::CrashInTick { node } => return self.crash_in_tick(index, *node),
            Event::Crash { node } => return self.crash(*node),
            Event::Restart { node } => {
                if self.nodes.get(node.index()).is_some_and(|n| n.is_none()) {
                    let mut fresh = self.fresh_node(*node);
                    if self.durability && !self.journals[node.index()].is_empty() {
                        if let Err(e) = fresh.restore(&self.journals[node.index()]) {
                            self.result.warnings.push(format!("restore failed: {e}"));
                        }
                    }
                    self.nodes[node.index()] = Some(fresh);
                    // The client's retransmissions of what a crash inside a tick consumed.
                    let again = std::mem::take(&mut self.unacked_inputs[node.index()]);
                    self.inbox[node.index()].extend(again.iter().cloned());
                    self.inbox_inputs[node.index()].extend(again);
                }
            }
            Event::Partition { a, b } => self.cut.push((*a, *b)),
            Event::Heal => self.cut.clear(),
        }
        Vec::new()
    }

    /// A crash between ticks: what the node received and did not process is lost to it.
    fn crash(&mut self, node: NodeAddr) -> Vec<Violation> {
        let Some(crashed) = self.nodes.get_mut(node.index()).and_then(Option::take) else { return Vec::new() };
        // Messages delivered but not yet processed were not acknowledged: their senders
        // retransmit them. Pending inputs are lost with the process.
        self.inbox[node.index()].clear();
        self.inbox_inputs[node.index()].clear();
        for m in std::mem::take(&mut self.inbox_ids[node.index()]) {
            self.seen[node.index()].remove(&m.id);
            self.flight.push(m);
        }
        // While down (and after a restart, until its first tick) the node counts for the global
        // invariants with the tables it recovers. Losing them (no durability) is a real change
        // of the system's state: check it now.
        let durable = self.durable_tables(node, &crashed);
        if durable != self.snapshots[node.index()] {
            self.snapshots[node.index()] = durable;
            return self.checker.check(self.snapshots.iter().flatten());
        }
        Vec::new()
    }

    /// A crash inside a tick, after its log write and before its sends leave (the runtime's
    /// order: tick, log, send, acknowledge). With durability the log holds the tick whole (its
    /// table changes, sends, outputs and what it processed): the tick, then a crash. Without, its
    /// sends and outputs are lost and nothing it consumed was acknowledged, so the messages go
    /// back to their senders' retransmission and the inputs to the client's (see `Restart`).
    fn crash_in_tick(&mut self, index: usize, addr: NodeAddr) -> Vec<Violation> {
        if self.durability {
            let mut violations = self.tick(index, addr);
            violations.extend(self.crash(addr));
            return violations;
        }
        let Some(Some(node)) = self.nodes.get_mut(addr.index()) else { return Vec::new() };
        let inputs = std::mem::take(&mut self.inbox[addr.index()]);
        let out = node.tick(inputs);
        self.result.ticks += 1;
        let unacked = std::mem::take(&mut self.inbox_inputs[addr.index()]);
        self.unacked_inputs[addr.index()].extend(unacked);
        // `crash` sends the consumed messages back: they were in the inbox of this tick.
        let mut violations = out.violations;
        violations.extend(self.crash(addr));
        violations
    }

    /// The tables a crashed node comes back with, for the relations global invariants read: with
    /// durability, its tables after its last completed tick (the journal holds exactly these, and
    /// the node changes only in ticks); without (or before it logged anything), its initial facts.
    fn durable_tables(&mut self, addr: NodeAddr, crashed: &Node) -> Contribution {
        if self.durability && !self.journals[addr.index()].is_empty() {
            return self.durable_rels.iter().map(|&r| (r, crashed.facts(r))).collect();
        }
        match self.initial.get(&self.program, &self.deployment, &self.durable_rels) {
            Ok(tables) => tables[addr.index()].clone(),
            Err(e) => {
                let warning = format!("initial facts of crashed nodes: {e}");
                if !self.result.warnings.contains(&warning) {
                    self.result.warnings.push(warning);
                }
                Vec::new()
            }
        }
    }

    fn tick(&mut self, index: usize, addr: NodeAddr) -> Vec<Violation> {
        let Some(Some(node)) = self.nodes.get_mut(addr.index()) else { return Vec::new() };
        let inputs = std::mem::take(&mut self.inbox[addr.index()]);
        self.inbox_ids[addr.index()].clear();
        self.inbox_inputs[addr.index()].clear();
        let out = node.tick(inputs);
        self.result.ticks += 1;
        if self.durability {
            let changes = node.take_journal();
            self.journals[addr.index()].extend(changes);
        }
        // Global invariants only need re-checking when this node's contribution changed.
        let changed = self.snapshots[addr.index()] != node.snapshot();
        if changed {
            self.snapshots[addr.index()] = node.snapshot().to_vec();
        }
        for (rel, tuple) in out.outputs {
            self.result.history.push((index, addr, rel, tuple.clone()));
            self.result.outputs.entry((addr, rel)).or_default().push(tuple);
        }
        for w in out.warnings {
            if self.result.warnings.len() < 100 {
                self.result.warnings.push(format!("{}: {w}", self.deployment.nodes[addr.index()].name));
            }
        }
        for (dest, relation, tuple) in out.sends {
            for to in route(&self.program, &self.deployment, dest, relation, &tuple) {
                self.result.messages += 1;
                self.next_id += 1;
                self.flight.push(Message { id: self.next_id, from: addr, to, relation, tuple: tuple.clone() });
            }
        }
        let mut violations = out.violations;
        if changed {
            violations.extend(self.checker.check(self.snapshots.iter().flatten()));
        }
        violations
    }
}

/// Runs one seeded schedule of `program` on `deployment`.
pub fn simulate(analysis: &Analysis, deployment: &Deployment, config: &SimConfig) -> SimResult {
    match CompiledProgram::new(analysis) {
        Ok(p) => simulate_compiled(Arc::new(p), Arc::new(deployment.clone()), config),
        Err(diags) => SimResult {
            seed: config.seed,
            warnings: diags.iter().map(|d| format!("program has errors: {}", d.message)).collect(),
            ..Default::default()
        },
    }
}

pub fn simulate_compiled(program: Arc<CompiledProgram>, deployment: Arc<Deployment>, config: &SimConfig) -> SimResult {
    let initial = InitialTables::default();
    let mut world =
        World::new(program.clone(), deployment.clone(), config.durability, config.incremental, initial.clone());
    let mut rng = Rng::new(config.seed);
    let mut gen = workload::Generator::new(&program, &deployment, &config.workload);
    let mut trace = Vec::new();
    for step in 0..config.steps {
        let event = next_event(&mut rng, &world, &mut gen, config);
        let violations = world.apply(step, &event);
        trace.push(event);
        let found = !violations.is_empty();
        world.result.violations.extend(violations.into_iter().map(|v| (step, v)));
        if found && config.stop_on_violation {
            break;
        }
    }
    // Let the system settle: deliver everything and tick until quiet (bounded), so outputs of a
    // finished workload are complete.
    let mut settle = 0;
    while settle < config.steps.saturating_mul(4) && world.result.violations.is_empty() {
        let ready = world.deliverable();
        let busy: Vec<usize> = (0..world.nodes.len())
            .filter(|&i| world.nodes[i].as_ref().is_some_and(|n| n.wants_tick()) || !world.inbox[i].is_empty())
            .filter(|&i| world.nodes[i].is_some())
            .collect();
        let event = if !busy.is_empty() && (ready.is_empty() || rng.chance(0.5)) {
            Event::Tick { node: NodeAddr(busy[rng.below(busy.len() as u64) as usize] as u32) }
        } else if !ready.is_empty() {
            Event::Deliver { pick: rng.below(ready.len() as u64) }
        } else {
            break;
        };
        let step = trace.len();
        let violations = world.apply(step, &event);
        trace.push(event);
        world.result.violations.extend(violations.into_iter().map(|v| (step, v)));
        settle += 1;
    }
    let mut result = std::mem::take(&mut world.result);
    result.seed = config.seed;
    result.durability = config.durability;
    result.steps = config.steps;
    result.replay = replay_args(config);
    if config.minimize {
        if let Some((_, first)) = result.violations.first() {
            result.minimized =
                Some(minimize_with(&program, &deployment, config.durability, &trace, &first.invariant, &initial));
        }
    }
    result.trace = trace;
    result
}

fn next_event(rng: &mut Rng, world: &World, gen: &mut workload::Generator, config: &SimConfig) -> Event {
    let n = world.nodes.len() as u64;
    let down: Vec<usize> = (0..world.nodes.len()).filter(|&i| world.nodes[i].is_none()).collect();
    let r = rng.next_u64() as f64 / u64::MAX as f64;
    let mut acc = config.crash;
    if r < acc && n > 0 {
        return Event::Crash { node: NodeAddr(rng.below(n) as u32) };
    }
    acc += config.crash_in_tick;
    if r < acc && n > 0 {
        // A node with something to process: a crash in an idle tick is a plain crash.
        let busy: Vec<usize> =
            (0..world.nodes.len()).filter(|&i| world.nodes[i].is_some() && !world.inbox[i].is_empty()).collect();
        let node = if busy.is_empty() { rng.below(n) as usize } else { busy[rng.below(busy.len() as u64) as usize] };
        return Event::CrashInTick { node: NodeAddr(node as u32) };
    }
    acc += config.partition;
    if r < acc && n > 1 {
        let a = rng.below(n);
        let b = (a + 1 + rng.below(n - 1)) % n;
        return Event::Partition { a: NodeAddr(a as u32), b: NodeAddr(b as u32) };
    }
    acc += config.duplicate;
    if r < acc && !world.flight.is_empty() {
        return Event::Duplicate { pick: rng.next_u64() };
    }
    // Crashed nodes come back, and partitions heal, after a while.
    if !down.is_empty() && rng.chance(0.05) {
        return Event::Restart { node: NodeAddr(down[rng.below(down.len() as u64) as usize] as u32) };
    }
    if !world.cut.is_empty() && rng.chance(0.03) {
        return Event::Heal;
    }
    let roll = rng.below(100);
    if roll < config.workload.input_percent as u64 {
        if let Some((node, relation, tuple)) = gen.next(rng) {
            return Event::Input { node, relation, tuple };
        }
    }
    if roll < 60 && !world.flight.is_empty() {
        return Event::Deliver { pick: rng.next_u64() };
    }
    // Prefer nodes with something to do; idle ticks happen too (the language allows them).
    let busy: Vec<usize> = (0..world.nodes.len())
        .filter(|&i| world.nodes[i].as_ref().is_some_and(|node| node.wants_tick()) || !world.inbox[i].is_empty())
        .collect();
    if !busy.is_empty() && !rng.chance(0.1) {
        return Event::Tick { node: NodeAddr(busy[rng.below(busy.len() as u64) as usize] as u32) };
    }
    Event::Tick { node: NodeAddr(rng.below(n.max(1)) as u32) }
}

/// Replays `events`; returns the index of the first event revealing a violation of `invariant`.
pub fn replay(
    program: &Arc<CompiledProgram>,
    deployment: &Arc<Deployment>,
    durability: bool,
    events: &[Event],
    invariant: Option<&str>,
) -> Option<(usize, Violation)> {
    replay_with(program, deployment, durability, events, invariant, &InitialTables::default())
}

fn replay_with(
    program: &Arc<CompiledProgram>,
    deployment: &Arc<Deployment>,
    durability: bool,
    events: &[Event],
    invariant: Option<&str>,
    initial: &InitialTables,
) -> Option<(usize, Violation)> {
    let mut world = World::new(program.clone(), deployment.clone(), durability, true, initial.clone());
    for (i, e) in events.iter().enumerate() {
        for v in world.apply(i, e) {
            if invariant.is_none_or(|name| v.invariant == name) {
                return Some((i, v));
            }
        }
    }
    None
}

/// Replays `events` and says what each did (which message a `deliver` picked, ...).
pub fn describe(
    program: &Arc<CompiledProgram>,
    deployment: &Arc<Deployment>,
    durability: bool,
    events: &[Event],
) -> Vec<String> {
    let mut world = World::new(program.clone(), deployment.clone(), durability, true, InitialTables::default());
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let violations = world.apply(i, e);
        let mut line = match e {
            Event::Deliver { .. } | Event::Duplicate { .. } if world.last.is_empty() => {
                format!("{} (nothing deliverable)", EventDisplay(e, program, deployment))
            }
            Event::Deliver { .. } => format!("deliver {}", world.last),
            Event::Duplicate { .. } => format!("duplicate {}", world.last),
            _ => EventDisplay(e, program, deployment).to_string(),
        };
        for v in violations {
            line.push_str(&format!("   <- violated: {}", violation_words(deployment, &v)));
        }
        out.push(line);
    }
    out
}

/// Delta debugging: drop chunks of events while the same invariant is still violated.
pub fn minimize(
    program: &Arc<CompiledProgram>,
    deployment: &Arc<Deployment>,
    durability: bool,
    trace: &[Event],
    invariant: &str,
) -> Vec<Event> {
    minimize_with(program, deployment, durability, trace, invariant, &InitialTables::default())
}

fn minimize_with(
    program: &Arc<CompiledProgram>,
    deployment: &Arc<Deployment>,
    durability: bool,
    trace: &[Event],
    invariant: &str,
    initial: &InitialTables,
) -> Vec<Event> {
    let mut current: Vec<Event> = match replay_with(program, deployment, durability, trace, Some(invariant), initial) {
        Some((i, _)) => trace[..=i].to_vec(),
        None => return trace.to_vec(),
    };
    let mut budget = 3000usize;
    let mut chunk = current.len() / 2;
    while chunk >= 1 && budget > 0 {
        let mut start = 0;
        let mut removed_any = false;
        while start < current.len() && budget > 0 {
            let end = (start + chunk).min(current.len());
            let mut candidate = current[..start].to_vec();
            candidate.extend_from_slice(&current[end..]);
            budget -= 1;
            if let Some((i, _)) = replay_with(program, deployment, durability, &candidate, Some(invariant), initial) {
                candidate.truncate(i + 1);
                current = candidate;
                removed_any = true;
            } else {
                start = end;
            }
        }
        if !removed_any {
            chunk /= 2;
        }
    }
    current
}

/// Human-readable report of a run: violations, then the (minimised) trace and the seed.
pub fn report(program: &Arc<CompiledProgram>, deployment: &Arc<Deployment>, result: &SimResult) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "seed {}: {} events, {} ticks, {} messages, {} violation(s)",
        result.seed,
        result.trace.len(),
        result.ticks,
        result.messages,
        result.violations.len()
    );
    for (i, v) in result.violations.iter().take(10) {
        let _ = writeln!(s, "  violation at event {i}: {}", violation_words(deployment, v));
    }
    if let Some(min) = &result.minimized {
        let _ = writeln!(s, "minimised trace ({} of {} events):", min.len(), result.trace.len());
        for (i, line) in describe(program, deployment, result.durability, min).iter().enumerate() {
            let _ = writeln!(s, "  {i:>4}  {line}");
        }
    }
    if !result.replay.is_empty() {
        let _ = writeln!(s, "replay with: {}", result.replay);
    }
    s
}

/// The `compart sim` options that reproduce a run of `config` (same program and deployment):
/// every option that changes the schedule, so that the printed line replays the violation.
pub fn replay_args(config: &SimConfig) -> String {
    let mut s = format!("--seed {} --steps {} --inputs {}", config.seed, config.steps, config.workload.max_inputs);
    if !config.durability {
        s.push_str(" --no-durability");
    }
    if !config.workload.weights.is_empty() {
        let weights: Vec<String> = config.workload.weights.iter().map(|(r, w)| format!("{r}={w}")).collect();
        s.push_str(&format!(" --workload {}", weights.join(",")));
    }
    if [config.crash, config.crash_in_tick, config.partition, config.duplicate].iter().all(|&p| p == 0.0) {
        s.push_str(" --no-faults");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitioned_store_under_faults() {
        let src = "component store partitioned by k {
                input  put(req: int, k: int, v: int) key(req)
                output done(req: int, k: int)
                table  kv(k: int, v: int)
                table  writes(req: int, k: int)
                kv(k, v) :- put(_, k, v).
                writes(r, k) :- put(r, k, _).
                done(r, k) :- put(r, k, _).
                // Every write of a key lands on the instance that owns the key.
                invariant owner(k) :- writes(_, k), !kv(k, _).
            }";
        let analysis = compart_analysis::analyze(src);
        assert!(!analysis.has_errors());
        let program = Arc::new(CompiledProgram::new(&analysis).unwrap());
        let deployment = Arc::new(Deployment::local_partitioned(&analysis.program, &[("store", 2, 3)]));
        let put = analysis.program.relation_by_name("put").unwrap();
        let kv = analysis.program.relation_by_name("kv").unwrap();
        let mut outputs = 0;
        for seed in 0..30 {
            let config = SimConfig { seed, steps: 200, ..SimConfig::default() };
            let r = simulate_compiled(program.clone(), deployment.clone(), &config);
            assert!(r.violations.is_empty(), "{}", report(&program, &deployment, &r));
            outputs += r.outputs.values().map(Vec::len).sum::<usize>();
            for (_, node, rel, t) in &r.history {
                if *rel == put {
                    // The instance that got the put owns its key.
                    let owner =
                        route(&program, &deployment, deployment.logical(*node), kv, &[t[1].clone(), t[2].clone()]);
                    assert_eq!(owner, vec![*node]);
                }
            }
        }
        assert!(outputs > 100, "{outputs}");
    }

    /// The replay line carried only the seed, the steps and --no-durability.
    #[test]
    fn replay_args_carry_every_option_of_the_run() {
        let config = SimConfig {
            seed: 7,
            steps: 90,
            durability: false,
            workload: WorkloadSpec {
                weights: vec![("put".into(), 3), ("get".into(), 1)],
                max_inputs: 12,
                ..WorkloadSpec::default()
            },
            ..SimConfig::default()
        };
        assert_eq!(replay_args(&config), "--seed 7 --steps 90 --inputs 12 --no-durability --workload put=3,get=1");
        let quiet =
            SimConfig { crash: 0.0, crash_in_tick: 0.0, partition: 0.0, duplicate: 0.0, ..SimConfig::default() };
        assert_eq!(replay_args(&quiet), "--seed 0 --steps 400 --inputs 40 --no-faults");
    }

    #[test]
    fn rng_is_deterministic_and_uniform_enough() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<u64> = (0..5).map(|_| a.below(10)).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.below(10)).collect();
        assert_eq!(xs, ys);
        let mut counts = [0; 4];
        for _ in 0..4000 {
            counts[a.below(4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 850), "{counts:?}");
    }
}
