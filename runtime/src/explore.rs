//! Bounded exhaustive exploration of a program's behaviours on a small, fixed list of inputs.
//!
//! Where the simulator samples one schedule per seed, the explorer enumerates them: from every
//! state it takes every action the network and the nodes allow, breadth-first, and deduplicates
//! states by a hash of their contents. Breadth-first order makes the first trace found to any
//! output or violation a shortest one (in ticks and faults), the minimized counterexample.
//!
//! Actions: tick a node over any sub-multiset of the messages in flight to it (inputs are
//! messages from the environment, in flight from the start, so every input order is explored),
//! provided the node has something to do (messages, `:+` facts, tables changed in its last tick,
//! or its first tick), where the network may keep a copy of one delivered message in flight to
//! deliver it again later (duplicates, budget); crash a node (budget: it restarts with its
//! tables, as with durability, and loses its pending `:+` facts). Messages are never lost: the
//! runtime retransmits until acknowledged, so loss is delay.
//!
//! Delivering a message into an inbox and ticking later is folded into the tick: deliveries are
//! invisible (no output, no violation) and commute with every step but the receiver's tick and
//! crash (a crash hands its inbox back to the network), so choosing at tick time which messages
//! arrived reaches the same outputs, violations and quiescent states without storing every
//! combination of half-filled inboxes as a state of its own.
//!
//! A state is every node's engine state (copied on write: a tick clones only the node it
//! runs), the multiset of in-flight messages, the remaining fault budgets, and the outputs
//! produced so far (so that the outputs of a terminal state are those of the path to it,
//! whichever path it was). For traces the explorer keeps one parent pointer and action per
//! state, not whole traces.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use compart_analysis::model::{RelationId, RelationKind};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::deploy::Deployment;
use crate::engine::{route, CompiledProgram, GlobalChecker, Node, NodeOptions, Violation};
use crate::value::{NodeAddr, Tuple, Value};

/// Bounds and fault budgets of one exploration.
#[derive(Clone, Debug)]
pub struct ExploreConfig {
    /// Stop after this many distinct states.
    pub max_states: usize,
    /// Do not expand states deeper than this many actions.
    pub max_depth: usize,
    /// How many times, along one path, the network may deliver a message and keep a copy of it
    /// in flight (at most one per tick).
    pub duplicates: u32,
    /// How many crashes, along one path (a crashed node restarts with its tables, as with
    /// durability; its pending `:+` facts are lost and its inbox goes back in flight).
    pub crashes: u32,
}

impl Default for ExploreConfig {
    fn default() -> Self {
        ExploreConfig { max_states: 200_000, max_depth: 1_000, duplicates: 1, crashes: 0 }
    }
}

/// An input fact for a logical node (routed to its instances like a message).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExploreInput {
    pub node: NodeAddr,
    pub relation: RelationId,
    pub tuple: Tuple,
}

/// A fact as reports show it: values rendered, addresses as logical node names
/// (`reply(1, proposer/0)`), so that facts of two deployments compare by name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fact {
    pub relation: String,
    pub args: Vec<String>,
}

impl Fact {
    pub fn new(deployment: &Deployment, relation: &str, tuple: &[Value]) -> Fact {
        Fact { relation: relation.to_string(), args: tuple.iter().map(|v| show_value(deployment, v)).collect() }
    }

    /// Whether `self` and `other` are two different answers to one request: facts of one
    /// relation with the same first column (the request's id) that differ elsewhere. Facts
    /// without columns answer no request.
    pub fn same_request(&self, other: &Fact) -> bool {
        self.relation == other.relation && !self.args.is_empty() && self.args[0] == other.args[0] && self != other
    }
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.relation, self.args.join(", "))
    }
}

/// A value as reports show it: an address is its logical node's name.
pub fn show_value(deployment: &Deployment, v: &Value) -> String {
    match v {
        Value::Addr(a) => logical_name(deployment, *a),
        other => other.to_string(),
    }
}

/// `acceptor/1` for the logical node and every instance of it (`acceptor/1.0`, ...): programs
/// see logical addresses, and two deployments of one program may partition a node differently.
pub fn logical_name(deployment: &Deployment, a: NodeAddr) -> String {
    match deployment.node(a) {
        Some(n) if n.partitions > 1 => n.name.rsplit_once('.').map_or(n.name.clone(), |(l, _)| l.to_string()),
        Some(n) => n.name.clone(),
        None => a.to_string(),
    }
}

/// A violation as reports show it: `invariant(args)`, and `on node` for a local one, addresses
/// as node names.
pub fn show_violation(deployment: &Deployment, v: &Violation) -> String {
    let args: Vec<String> = v.args.iter().map(|a| show_value(deployment, a)).collect();
    match v.node {
        Some(n) => format!("{}({}) on {}", v.invariant, args.join(", "), show_value(deployment, &Value::Addr(n))),
        None => format!("{}({})", v.invariant, args.join(", ")),
    }
}

/// Human-readable steps from the initial state (`tick acceptor/1`, `deliver p2a(...) -> ...`).
pub type Trace = Vec<String>;

/// A quiescent state reached without crashes: nothing pending, in flight or wanting a tick.
#[derive(Clone, Debug)]
pub struct Terminal {
    /// Every output produced on the way to it.
    pub outputs: BTreeSet<Fact>,
    pub trace: Trace,
}

/// A state holding two different answers to one request ([`Fact::same_request`]).
#[derive(Clone, Debug)]
pub struct AnsweredTwice {
    /// The answer produced first, and the one produced by the trace's last step.
    pub answers: (Fact, Fact),
    pub trace: Trace,
}

#[derive(Clone, Debug)]
pub struct FoundViolation {
    pub invariant: String,
    /// `invariant(args)`.
    pub shown: String,
    pub trace: Trace,
}

#[derive(Clone, Debug, Default)]
pub struct Exploration {
    /// Distinct states reached (the initial one included).
    pub states: usize,
    /// Actions taken, including those leading to states already seen.
    pub transitions: usize,
    /// Deepest state reached, in actions.
    pub max_depth: usize,
    /// Every state reachable on these inputs was expanded (no bound cut the search).
    pub exhausted: bool,
    /// Every output fact produced in some reachable state, with a shortest trace producing it.
    pub outputs: BTreeMap<Fact, Trace>,
    /// One entry per distinct set of outputs among crash-free quiescent states, with a shortest
    /// trace to one of them.
    pub terminals: Vec<Terminal>,
    /// Distinct violations (by `shown`), shortest first; at most [`MAX_VIOLATIONS`].
    pub violations: Vec<FoundViolation>,
    /// By output relation: the first state found (a shortest trace) whose outputs so far answer
    /// some request twice. A relation absent here answers no request twice in the states
    /// explored, which is all of them only when `exhausted`.
    pub answered_twice: BTreeMap<String, AnsweredTwice>,
    /// Tick warnings (rejected inputs, divisions by zero), first few.
    pub warnings: Vec<String>,
    pub elapsed: Duration,
}

/// Distinct violations kept per exploration (each costs a trace).
pub const MAX_VIOLATIONS: usize = 64;

/// Explores every schedule of `inputs` on `deployment`, breadth-first, within `config`'s bounds.
/// Errors: an input for a node the deployment does not have.
pub fn explore(
    program: Arc<CompiledProgram>,
    deployment: Arc<Deployment>,
    inputs: &[ExploreInput],
    config: &ExploreConfig,
) -> Result<Exploration, String> {
    explore_with(program, deployment, inputs, config, Search::Reduced)
}

/// How much of the search's pruning is on; only tests of the pruning turn some off.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
enum Search {
    /// Every path expanded separately (the naive tree).
    Naive,
    /// States deduplicated.
    Cached,
    /// States deduplicated, and transitions pruned by sleep sets.
    Reduced,
}

fn explore_with(
    program: Arc<CompiledProgram>,
    deployment: Arc<Deployment>,
    inputs: &[ExploreInput],
    config: &ExploreConfig,
    search: Search,
) -> Result<Exploration, String> {
    if let Some(i) = inputs.iter().find(|i| deployment.node(i.node).is_none()) {
        return Err(format!("input for node {} which the deployment does not have", i.node));
    }
    let start = Instant::now();
    let mut ex = Explorer::new(program, deployment, inputs, config);
    ex.run(search);
    let mut result = ex.finish();
    result.elapsed = start.elapsed();
    Ok(result)
}

/// A message in flight; `to` is a process address (already routed). Inputs are messages too.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Msg {
    to: NodeAddr,
    rel: RelationId,
    tuple: Tuple,
}

#[derive(Clone)]
struct Slot {
    node: Node,
    /// `node.fingerprint()`, computed once per tick instead of once per state hash.
    fp: u64,
}

#[derive(Clone)]
struct World {
    nodes: Vec<Arc<Slot>>,
    /// Sorted multiset (sorted by destination first, so a node's messages are contiguous).
    flight: Vec<Arc<Msg>>,
    dups: u32,
    crashes: u32,
    /// Ids of the outputs produced so far, sorted.
    outputs: Arc<Vec<u32>>,
}

impl World {
    fn hash(&self) -> u64 {
        // DefaultHasher::new() has fixed keys, so exploration is reproducible.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for s in &self.nodes {
            s.fp.hash(&mut h);
        }
        self.flight.hash(&mut h);
        (self.dups, self.crashes).hash(&mut h);
        self.outputs.hash(&mut h);
        h.finish()
    }

    fn quiescent(&self) -> bool {
        self.flight.is_empty() && self.nodes.iter().all(|s| !s.node.wants_tick())
    }
}

fn insert_sorted(v: &mut Vec<Arc<Msg>>, m: Arc<Msg>) {
    let pos = v.binary_search(&m).unwrap_or_else(|e| e);
    v.insert(pos, m);
}

fn remove_one(v: &mut Vec<Arc<Msg>>, m: &Msg) {
    if let Ok(pos) = v.binary_search_by(|x| (**x).cmp(m)) {
        v.remove(pos);
    }
}

/// Above this many ways to pick a node's messages, only a few picks are tried (and the
/// exploration is reported as not exhausted).
const MAX_PICKS: usize = 4096;

#[derive(Clone)]
enum Action {
    /// Deliver these messages (one entry per copy) and tick the node over them; the network
    /// may keep a copy of one of them in flight (a duplicate, delivered again later).
    Tick(NodeAddr, Vec<Arc<Msg>>, Option<Arc<Msg>>),
    Crash(NodeAddr),
}

/// A tick over `msgs`, and with a duplicate budget left, the same tick with a copy of each
/// distinct message kept in flight. Duplicating a message when it is first delivered covers
/// duplicating it at any earlier time: the copy is indistinguishable until it is delivered.
fn push_tick(out: &mut Vec<Action>, to: NodeAddr, msgs: Vec<Arc<Msg>>, dup: bool) {
    out.push(Action::Tick(to, msgs.clone(), None));
    if dup {
        for (k, m) in msgs.iter().enumerate() {
            if k == 0 || msgs[k - 1] != *m {
                out.push(Action::Tick(to, msgs.clone(), Some(m.clone())));
            }
        }
    }
}

/// An action's identity for sleep sets: its node, which fault budget it spends (two actions
/// spending one budget do not commute: either may use it up), and a hash of the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    node: NodeAddr,
    budget: u8,
    hash: u64,
}

impl Key {
    fn of(action: &Action) -> Key {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let (node, budget) = match action {
            Action::Tick(n, msgs, copy) => {
                (msgs, copy).hash(&mut h);
                (*n, if copy.is_some() { 1 } else { 0 })
            }
            Action::Crash(n) => (*n, 2),
        };
        Key { node, budget, hash: h.finish() }
    }

    /// Actions of different nodes commute: each changes only its node, takes only messages
    /// addressed to it, and adds messages and outputs to multisets and sets.
    fn independent(&self, other: &Key) -> bool {
        self.node != other.node && (self.budget == 0 || self.budget != other.budget)
    }
}

/// Where a trace ends: the state it starts from, and the action taken there (when what it
/// shows was produced by a transition, possibly into a state reached before another way).
type TraceRef = (u32, Option<Action>);

struct Explorer<'a> {
    program: Arc<CompiledProgram>,
    deployment: Arc<Deployment>,
    checker: GlobalChecker,
    has_global: bool,
    inputs: &'a [ExploreInput],
    config: &'a ExploreConfig,
    /// Per state: (parent, action from the parent).
    parents: Vec<(u32, Option<Action>)>,
    transitions: usize,
    max_depth: usize,
    cut: bool,
    output_ids: FxHashMap<(RelationId, Tuple), u32>,
    output_facts: Vec<Fact>,
    output_first: Vec<TraceRef>,
    violation_ids: FxHashSet<String>,
    violations: Vec<(String, String, TraceRef)>,
    /// By relation: (earlier answer, new answer) as output ids, and where the pair first showed.
    answered_twice: BTreeMap<String, (u32, u32, TraceRef)>,
    terminals: FxHashMap<Arc<Vec<u32>>, u32>,
    terminal_order: Vec<Arc<Vec<u32>>>,
    warnings: Vec<String>,
}

impl<'a> Explorer<'a> {
    fn new(
        program: Arc<CompiledProgram>,
        deployment: Arc<Deployment>,
        inputs: &'a [ExploreInput],
        config: &'a ExploreConfig,
    ) -> Self {
        let checker = GlobalChecker::new(program.clone(), deployment.clone());
        let has_global = !checker.relations().is_empty();
        Explorer {
            program,
            deployment,
            checker,
            has_global,
            inputs,
            config,
            parents: Vec::new(),
            transitions: 0,
            max_depth: 0,
            cut: false,
            output_ids: FxHashMap::default(),
            output_facts: Vec::new(),
            output_first: Vec::new(),
            violation_ids: FxHashSet::default(),
            violations: Vec::new(),
            answered_twice: BTreeMap::new(),
            terminals: FxHashMap::default(),
            terminal_order: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn initial(&self) -> World {
        let snapshot = self.checker.relations();
        let nodes = self
            .deployment
            .nodes
            .iter()
            .map(|spec| {
                let mut node = Node::with_options(
                    self.program.clone(),
                    spec.addr,
                    self.deployment.clone(),
                    NodeOptions { check_invariants: true },
                );
                node.set_snapshot(&snapshot);
                let fp = node.fingerprint();
                Arc::new(Slot { node, fp })
            })
            .collect();
        let mut flight = Vec::new();
        for input in self.inputs {
            // Inputs go to a logical node; a partitioned one routes them like messages.
            for to in route(&self.program, &self.deployment, input.node, input.relation, &input.tuple) {
                insert_sorted(&mut flight, Arc::new(Msg { to, rel: input.relation, tuple: input.tuple.clone() }));
            }
        }
        World {
            nodes,
            flight,
            dups: self.config.duplicates,
            crashes: self.config.crashes,
            outputs: Arc::new(Vec::new()),
        }
    }

    fn actions(&mut self, w: &World) -> Vec<Action> {
        let mut out = Vec::new();
        for (i, s) in w.nodes.iter().enumerate() {
            let to = NodeAddr(i as u32);
            // This node's distinct messages, with their number of copies.
            let mut groups: Vec<(&Arc<Msg>, usize)> = Vec::new();
            for m in w.flight.iter().filter(|m| m.to == to) {
                match groups.last_mut() {
                    Some((g, c)) if **g == *m => *c += 1,
                    _ => groups.push((m, 1)),
                }
            }
            let idle = s.node.wants_tick();
            let picks =
                groups.iter().try_fold(1usize, |acc, (_, c)| acc.checked_mul(c + 1).filter(|&n| n <= MAX_PICKS));
            match picks {
                Some(n) => {
                    // Every sub-multiset: digit j of k (base copies+1) is how many copies of
                    // group j arrive.
                    for k in 0..n {
                        let (mut rest, mut msgs) = (k, Vec::new());
                        for (m, c) in &groups {
                            for _ in 0..rest % (c + 1) {
                                msgs.push((*m).clone());
                            }
                            rest /= c + 1;
                        }
                        if !msgs.is_empty() || idle {
                            push_tick(&mut out, to, msgs, w.dups > 0);
                        }
                    }
                }
                None => {
                    // Too many subsets: each message alone, and all of them together.
                    self.cut = true;
                    if idle {
                        push_tick(&mut out, to, Vec::new(), false);
                    }
                    for (m, _) in &groups {
                        push_tick(&mut out, to, vec![(*m).clone()], w.dups > 0);
                    }
                    push_tick(&mut out, to, w.flight.iter().filter(|m| m.to == to).cloned().collect(), w.dups > 0);
                }
            }
        }
        if w.crashes > 0 {
            // A node that has not ticked since it (re)started has nothing to lose.
            for (i, s) in w.nodes.iter().enumerate() {
                if s.node.profile().ticks > 0 {
                    out.push(Action::Crash(NodeAddr(i as u32)));
                }
            }
        }
        out
    }

    /// Applies `action` to `w`; returns the outputs and violations the step produced.
    fn apply(&mut self, w: &mut World, action: &Action) -> (Vec<u32>, Vec<Violation>) {
        match action {
            Action::Tick(n, msgs, copy) => {
                if let Some(m) = copy {
                    w.dups -= 1;
                    insert_sorted(&mut w.flight, m.clone());
                }
                self.tick(w, n.index(), msgs)
            }
            Action::Crash(n) => {
                w.crashes -= 1;
                let i = n.index();
                let had_snapshot = !w.nodes[i].node.snapshot().is_empty();
                let node = w.nodes[i].node.restarted();
                let fp = node.fingerprint();
                w.nodes[i] = Arc::new(Slot { node, fp });
                let violations = if self.has_global && had_snapshot { self.global(w) } else { Vec::new() };
                (Vec::new(), violations)
            }
        }
    }

    fn global(&self, w: &World) -> Vec<Violation> {
        self.checker.check(w.nodes.iter().flat_map(|s| s.node.snapshot()))
    }

    fn tick(&mut self, w: &mut World, i: usize, msgs: &[Arc<Msg>]) -> (Vec<u32>, Vec<Violation>) {
        for m in msgs {
            remove_one(&mut w.flight, m);
        }
        let inputs: Vec<(RelationId, Tuple)> = msgs.iter().map(|m| (m.rel, m.tuple.clone())).collect();
        let slot = Arc::make_mut(&mut w.nodes[i]);
        let before = if self.has_global { Some(slot.node.snapshot().to_vec()) } else { None };
        let out = slot.node.tick(inputs);
        slot.fp = slot.node.fingerprint();
        let snapshot_changed = before.is_some_and(|b| b != slot.node.snapshot());
        for (dest, rel, tuple) in out.sends {
            for to in route(&self.program, &self.deployment, dest, rel, &tuple) {
                insert_sorted(&mut w.flight, Arc::new(Msg { to, rel, tuple: tuple.clone() }));
            }
        }
        let mut produced = Vec::new();
        for (rel, tuple) in out.outputs {
            let id = match self.output_ids.get(&(rel, tuple.clone())) {
                Some(&id) => id,
                None => {
                    let id = self.output_facts.len() as u32;
                    self.output_facts.push(Fact::new(&self.deployment, self.program.relation_name(rel), &tuple));
                    self.output_ids.insert((rel, tuple), id);
                    id
                }
            };
            produced.push(id);
        }
        if !produced.is_empty() {
            let outputs = Arc::make_mut(&mut w.outputs);
            for &id in &produced {
                if let Err(pos) = outputs.binary_search(&id) {
                    outputs.insert(pos, id);
                }
            }
        }
        for warning in out.warnings {
            if self.warnings.len() < 10 && !self.warnings.contains(&warning) {
                self.warnings.push(warning);
            }
        }
        let mut violations = out.violations;
        if snapshot_changed {
            violations.extend(self.global(w));
        }
        (produced, violations)
    }

    /// Breadth-first search with state caching and sleep sets: after exploring action `a` from
    /// a state, its later siblings' successors need not take `a` again where `a` commutes with
    /// them (ticks of different nodes do), since the other order reaches the same state at the
    /// same depth. This prunes transitions, never states: every reachable state is still
    /// visited (a state reached again with a smaller sleep set is expanded again for the
    /// actions it had skipped).
    fn run(&mut self, search: Search) {
        let (dedup, reduce) = (search != Search::Naive, search == Search::Reduced);
        struct Visit {
            idx: u32,
            depth: usize,
            sleep: Vec<Key>,
            expanded: bool,
        }
        let first = self.initial();
        let first_hash = first.hash();
        let mut seen: FxHashMap<u64, Visit> = FxHashMap::default();
        seen.insert(first_hash, Visit { idx: 0, depth: 0, sleep: Vec::new(), expanded: false });
        self.parents.push((0, None));
        // (state, its hash, world, Some(actions) when only those are left to expand).
        let mut frontier: VecDeque<(u32, u64, World, Option<Vec<Key>>)> = VecDeque::new();
        frontier.push_back((0, first_hash, first, None));
        'search: while let Some((idx, hash, world, only)) = frontier.pop_front() {
            let (depth, sleep) = match seen.get_mut(&hash) {
                Some(v) if dedup => {
                    v.expanded = true;
                    (v.depth, v.sleep.clone())
                }
                _ => (self.depth_of(idx), Vec::new()),
            };
            self.max_depth = self.max_depth.max(depth);
            if only.is_none()
                && world.quiescent()
                && world.crashes == self.config.crashes
                && !self.terminals.contains_key(&world.outputs)
            {
                self.terminals.insert(world.outputs.clone(), idx);
                self.terminal_order.push(world.outputs.clone());
            }
            let actions = self.actions(&world);
            if actions.is_empty() {
                continue;
            }
            if depth >= self.config.max_depth {
                self.cut = true;
                continue;
            }
            let mut done: Vec<Key> = Vec::new();
            for action in actions {
                let key = Key::of(&action);
                let skip = match &only {
                    Some(list) => !list.contains(&key),
                    None => sleep.contains(&key),
                };
                if skip {
                    continue;
                }
                let mut next = world.clone();
                let (produced, violations) = self.apply(&mut next, &action);
                self.transitions += 1;
                for &id in &produced {
                    if self.output_first.len() <= id as usize {
                        self.output_first.push((idx, Some(action.clone())));
                    }
                }
                self.note_answered_twice(&next, &produced, (idx, Some(&action)));
                for v in violations {
                    let shown = show_violation(&self.deployment, &v);
                    if self.violations.len() < MAX_VIOLATIONS && self.violation_ids.insert(shown.clone()) {
                        self.violations.push((v.invariant.clone(), shown, (idx, Some(action.clone()))));
                    }
                }
                let mut next_sleep: Vec<Key> = if reduce {
                    sleep.iter().chain(done.iter()).filter(|k| k.independent(&key)).copied().collect()
                } else {
                    Vec::new()
                };
                next_sleep.sort_unstable();
                next_sleep.dedup();
                done.push(key);
                let next_hash = next.hash();
                if dedup {
                    if let Some(v) = seen.get_mut(&next_hash) {
                        let missing: Vec<Key> =
                            v.sleep.iter().filter(|k| next_sleep.binary_search(k).is_err()).copied().collect();
                        if !missing.is_empty() {
                            v.sleep.retain(|k| next_sleep.binary_search(k).is_ok());
                            if v.expanded {
                                frontier.push_back((v.idx, next_hash, next, Some(missing)));
                            }
                        }
                        continue;
                    }
                }
                if self.parents.len() >= self.config.max_states {
                    self.cut = true;
                    break 'search;
                }
                let id = self.parents.len() as u32;
                self.parents.push((idx, Some(action)));
                if dedup {
                    seen.insert(next_hash, Visit { idx: id, depth: depth + 1, sleep: next_sleep, expanded: false });
                }
                frontier.push_back((id, next_hash, next, None));
            }
        }
        if !frontier.is_empty() {
            self.cut = true;
        }
    }

    /// Records, per relation, the first state found where a new output is a second answer to
    /// a request ([`Fact::same_request`]) among the outputs produced so far.
    fn note_answered_twice(&mut self, w: &World, produced: &[u32], (idx, action): (u32, Option<&Action>)) {
        for &id in produced {
            let fact = &self.output_facts[id as usize];
            if self.answered_twice.contains_key(&fact.relation) {
                continue;
            }
            if let Some(&other) = w.outputs.iter().find(|&&o| self.output_facts[o as usize].same_request(fact)) {
                let r = fact.relation.clone();
                self.answered_twice.insert(r, (other, id, (idx, action.cloned())));
            }
        }
    }

    fn depth_of(&self, mut idx: u32) -> usize {
        let mut depth = 0;
        while idx != 0 {
            idx = self.parents[idx as usize].0;
            depth += 1;
        }
        depth
    }

    fn trace(&self, (mut idx, last): TraceRef) -> Trace {
        let mut steps: Vec<&Action> = last.iter().collect();
        while idx != 0 {
            let (parent, action) = &self.parents[idx as usize];
            steps.extend(action.iter());
            idx = *parent;
        }
        steps.iter().rev().flat_map(|a| self.show_action(a)).collect()
    }

    fn show_action(&self, a: &Action) -> Vec<String> {
        let name = |n: NodeAddr| self.deployment.node(n).map_or(n.to_string(), |s| s.name.clone());
        let show = |m: &Msg| {
            let fact = Fact::new(&self.deployment, self.program.relation_name(m.rel), &m.tuple);
            let verb =
                if self.program.program.relation(m.rel).kind == RelationKind::Input { "input" } else { "deliver" };
            format!("{verb} {fact} -> {}", name(m.to))
        };
        match a {
            Action::Tick(n, msgs, copy) => {
                let mut out: Vec<String> = msgs.iter().map(|m| show(m)).collect();
                if let Some(m) = copy {
                    out.push(format!("the network keeps a duplicate of {} in flight", show(m)));
                }
                out.push(format!("tick {}", name(*n)));
                out
            }
            Action::Crash(n) => vec![format!("crash {} (it restarts with its tables)", name(*n))],
        }
    }

    fn finish(self) -> Exploration {
        let outputs = self
            .output_first
            .iter()
            .enumerate()
            .map(|(id, r)| (self.output_facts[id].clone(), self.trace(r.clone())))
            .collect();
        let terminals = self
            .terminal_order
            .iter()
            .map(|ids| Terminal {
                outputs: ids.iter().map(|&id| self.output_facts[id as usize].clone()).collect(),
                trace: self.trace((self.terminals[ids], None)),
            })
            .collect();
        let violations = self
            .violations
            .iter()
            .map(|(invariant, shown, r)| FoundViolation {
                invariant: invariant.clone(),
                shown: shown.clone(),
                trace: self.trace(r.clone()),
            })
            .collect();
        let answered_twice = self
            .answered_twice
            .iter()
            .map(|(rel, (first, second, r))| {
                let answers = (self.output_facts[*first as usize].clone(), self.output_facts[*second as usize].clone());
                (rel.clone(), AnsweredTwice { answers, trace: self.trace(r.clone()) })
            })
            .collect();
        Exploration {
            states: self.parents.len(),
            transitions: self.transitions,
            max_depth: self.max_depth,
            exhausted: !self.cut,
            outputs,
            terminals,
            violations,
            answered_twice,
            warnings: self.warnings.clone(),
            elapsed: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Setup {
        program: Arc<CompiledProgram>,
        deployment: Arc<Deployment>,
    }

    fn setup(src: &str) -> Setup {
        setup_with(src, &[])
    }

    fn setup_with(src: &str, counts: &[(&str, u32)]) -> Setup {
        let analysis = compart_analysis::analyze(src);
        assert!(!analysis.has_errors(), "{:#?}", analysis.diagnostics);
        let program = Arc::new(CompiledProgram::new(&analysis).unwrap());
        let deployment = Arc::new(Deployment::local(&analysis.program, counts));
        Setup { program, deployment }
    }

    impl Setup {
        fn input(&self, node: &str, relation: &str, tuple: Tuple) -> ExploreInput {
            ExploreInput {
                node: self.deployment.by_name(node).unwrap(),
                relation: self.program.program.relation_by_name(relation).unwrap(),
                tuple,
            }
        }
        fn explore(&self, inputs: &[ExploreInput], config: &ExploreConfig) -> Exploration {
            explore(self.program.clone(), self.deployment.clone(), inputs, config).unwrap()
        }
    }

    /// `second` overtakes `first` in some interleavings only: the receiver then sees it
    /// before it recorded `first`.
    const RACE: &str = r#"
        component sender {
            input go(id: int)
            first@r(id) :~ go(id), nodes("receiver", r).
            second@r(id) :~ go(id), nodes("receiver", r).
        }
        component receiver {
            channel first(id: int)
            channel second(id: int)
            output done(id: int)
            table got(id: int)
            got(id) :- first(id).
            done(id) :- second(id), got(id).
            invariant in_order(id) :- second(id), !got(id).
        }
    "#;

    fn fact(relation: &str, args: &[&str]) -> Fact {
        Fact { relation: relation.into(), args: args.iter().map(|a| a.to_string()).collect() }
    }

    #[test]
    fn a_race_in_some_interleavings_is_found_with_a_shortest_trace() {
        let s = setup(RACE);
        let go = s.input("sender/0", "go", vec![Value::Int(1)]);
        let r = s.explore(&[go], &ExploreConfig::default());
        assert!(r.exhausted, "{r:?}");
        assert_eq!(r.violations.len(), 1, "{r:?}");
        let v = &r.violations[0];
        assert_eq!(v.shown, "in_order(1) on receiver/0");
        assert_eq!(
            v.trace,
            ["input go(1) -> sender/0", "tick sender/0", "deliver second(1) -> receiver/0", "tick receiver/0"]
        );
        // In order, the receiver answers; overtaken, it never does: both end states are found.
        let done = fact("done", &["1"]);
        assert_eq!(
            r.outputs[&done],
            [
                "input go(1) -> sender/0",
                "tick sender/0",
                "deliver first(1) -> receiver/0",
                "deliver second(1) -> receiver/0",
                "tick receiver/0"
            ]
        );
        let mut ends: Vec<bool> = r.terminals.iter().map(|t| t.outputs.contains(&done)).collect();
        ends.sort();
        assert_eq!(ends, [false, true]);
    }

    /// The receiver answers whichever of `first` and `second` it sees while it has seen
    /// neither: both when they arrive in one tick.
    const TWICE: &str = r#"
        component sender {
            input go(id: int)
            first@r(id) :~ go(id), nodes("receiver", r).
            second@r(id) :~ go(id), nodes("receiver", r).
        }
        component receiver {
            channel first(id: int)
            channel second(id: int)
            output done(id: int, how: int)
            table seen(id: int)
            seen(id) :+ first(id).
            seen(id) :+ second(id).
            done(id, 1) :- first(id), !seen(id).
            done(id, 2) :- second(id), !seen(id).
        }
    "#;

    #[test]
    fn a_request_answered_twice_is_found_with_a_shortest_trace() {
        let s = setup(TWICE);
        let r = s.explore(&[s.input("sender/0", "go", vec![Value::Int(1)])], &ExploreConfig::default());
        assert!(r.exhausted, "{r:?}");
        let twice = &r.answered_twice["done"];
        let mut answers = [twice.answers.0.to_string(), twice.answers.1.to_string()];
        answers.sort();
        assert_eq!(answers, ["done(1, 1)", "done(1, 2)"]);
        assert_eq!(
            twice.trace,
            [
                "input go(1) -> sender/0",
                "tick sender/0",
                "deliver first(1) -> receiver/0",
                "deliver second(1) -> receiver/0",
                "tick receiver/0"
            ]
        );
        // In separate ticks, only the first to arrive is answered: some ending answers once.
        assert!(r.terminals.iter().any(|t| t.outputs.len() == 1), "{:?}", r.terminals);
        // One column is no answer to tell apart, and a count per id is answered many times.
        let race = setup(RACE);
        let r = race.explore(&[race.input("sender/0", "go", vec![Value::Int(1)])], &ExploreConfig::default());
        assert!(r.answered_twice.is_empty(), "{:?}", r.answered_twice);
        let acks = setup_with(ACKS, &[("receiver", 2)]);
        let config = ExploreConfig { duplicates: 0, ..Default::default() };
        let r = acks.explore(&[acks.input("sender/0", "go", vec![Value::Int(3)])], &config);
        assert_eq!(r.answered_twice.keys().collect::<Vec<_>>(), ["acked"]);
    }

    /// Three facts sent to one receiver at once: delivering them in any order reaches the same
    /// states, which the naive tree counts once per order.
    const FAN: &str = r#"
        component sender {
            input go()
            m@r(1) :~ go(), nodes("receiver", r).
            m@r(2) :~ go(), nodes("receiver", r).
            m@r(3) :~ go(), nodes("receiver", r).
        }
        component receiver {
            channel m(v: int)
            table held(v: int)
            output total(n: int)
            held(v) :- m(v).
            total(count(v)) :- held(v).
        }
    "#;

    #[test]
    fn commuting_deliveries_are_deduplicated() {
        let s = setup(FAN);
        let inputs = [s.input("sender/0", "go", vec![])];
        let config = ExploreConfig { duplicates: 0, ..Default::default() };
        let dedup = s.explore(&inputs, &config);
        let naive = explore_with(s.program.clone(), s.deployment.clone(), &inputs, &config, Search::Naive).unwrap();
        assert!(dedup.exhausted && naive.exhausted);
        assert!(dedup.states * 3 < naive.states, "{} states vs {} paths", dedup.states, naive.states);
        assert_eq!(dedup.outputs.keys().collect::<Vec<_>>(), naive.outputs.keys().collect::<Vec<_>>());
        let total: BTreeSet<&Fact> = dedup.outputs.keys().collect();
        assert_eq!(total, [fact("total", &["1"]), fact("total", &["2"]), fact("total", &["3"])].iter().collect());
        // Every schedule ends with all three held.
        assert!(dedup.terminals.iter().all(|t| t.outputs.contains(&fact("total", &["3"]))));
    }

    #[test]
    fn bounds_are_reported_as_not_exhausted() {
        let s = setup(RACE);
        let go = [s.input("sender/0", "go", vec![Value::Int(1)])];
        let full = s.explore(&go, &ExploreConfig::default());
        assert!(full.exhausted && full.states > 10);
        let few = s.explore(&go, &ExploreConfig { max_states: 10, ..Default::default() });
        assert!(!few.exhausted);
        assert_eq!(few.states, 10);
        // Two ticks (the sender's, then the receiver's over `second` alone) reveal the race.
        let shallow = s.explore(&go, &ExploreConfig { max_depth: 1, ..Default::default() });
        assert!(!shallow.exhausted);
        assert_eq!(shallow.max_depth, 1);
        assert!(shallow.violations.is_empty());
        let enough = s.explore(&go, &ExploreConfig { max_depth: 2, ..Default::default() });
        assert!(!enough.exhausted);
        assert_eq!(enough.violations.len(), 1);
    }

    #[test]
    fn a_crash_loses_pending_facts_but_not_tables() {
        let s = setup(
            r#"component a {
                input go(id: int)
                table asked(id: int)
                table answered(id: int)
                asked(id) :- go(id).
                pend(id) :+ go(id).
                answered(id) :- pend(id).
                invariant lost(id) :- asked(id), !answered(id), !go(id).
            }"#,
        );
        let go = [s.input("a/0", "go", vec![Value::Int(1)])];
        let safe = s.explore(&go, &ExploreConfig::default());
        assert!(safe.exhausted && safe.violations.is_empty(), "{:?}", safe.violations);
        let crashy = s.explore(&go, &ExploreConfig { crashes: 1, ..Default::default() });
        assert!(crashy.exhausted);
        assert_eq!(crashy.violations.len(), 1, "{:?}", crashy.violations);
        assert_eq!(
            crashy.violations[0].trace,
            ["input go(1) -> a/0", "tick a/0", "crash a/0 (it restarts with its tables)", "tick a/0"]
        );
        // Terminal states are the crash-free ones: the same as without a crash budget.
        assert_eq!(crashy.terminals.len(), safe.terminals.len());
    }

    /// Receivers acknowledge independently: their ticks commute, which sleep sets exploit.
    const ACKS: &str = r#"
        component sender {
            input go(id: int)
            output acked(id: int, n: int)
            channel ack(id: int, r: addr)
            table acks(id: int, r: addr)
            m@r(id) :~ go(id), nodes("receiver", r).
            acks(id, r) :- ack(id, r).
            count_acks(id, count(r)) :- acks(id, r).
            acked(id, n) :- count_acks(id, n).
        }
        component receiver {
            channel m(id: int)
            table got(id: int)
            got(id) :- m(id).
            ack@s(id, self) :~ m(id), nodes("sender", s).
            invariant once(id) :- got(id), got(id), id > 2.
        }
    "#;

    #[test]
    fn sleep_sets_prune_transitions_but_reach_every_state() {
        let s = setup_with(ACKS, &[("receiver", 3)]);
        let inputs = [s.input("sender/0", "go", vec![Value::Int(3)])];
        let config = ExploreConfig { duplicates: 0, ..Default::default() };
        let run = |search| explore_with(s.program.clone(), s.deployment.clone(), &inputs, &config, search).unwrap();
        let (cached, reduced) = (run(Search::Cached), run(Search::Reduced));
        assert!(cached.exhausted && reduced.exhausted);
        assert_eq!(cached.states, reduced.states);
        assert!(reduced.transitions * 2 < cached.transitions, "{} vs {}", reduced.transitions, cached.transitions);
        let shape = |e: &Exploration| {
            let outputs: Vec<(String, usize)> = e.outputs.iter().map(|(f, t)| (f.to_string(), t.len())).collect();
            let mut endings: Vec<Vec<String>> =
                e.terminals.iter().map(|t| t.outputs.iter().map(|f| f.to_string()).collect()).collect();
            endings.sort();
            let violations: Vec<(String, usize)> =
                e.violations.iter().map(|v| (v.shown.clone(), v.trace.len())).collect();
            (outputs, endings, violations)
        };
        assert_eq!(shape(&cached), shape(&reduced));
        let (outputs, endings, violations) = shape(&reduced);
        assert_eq!(outputs.len(), 3, "{outputs:?}");
        // Acks arrive one, two or three per tick; every schedule ends with all three counted.
        let ending = |counts: &[&str]| counts.iter().map(|c| format!("acked(3, {c})")).collect::<Vec<_>>();
        assert_eq!(endings, [ending(&["1", "2", "3"]), ending(&["1", "3"]), ending(&["2", "3"]), ending(&["3"])]);
        assert_eq!(violations.len(), 3, "one per receiver: {violations:?}");
    }

    #[test]
    fn addresses_show_as_logical_nodes_whatever_the_partitioning() {
        let analysis = compart_analysis::analyze("component c partitioned by k { input put(k: int) }");
        assert!(!analysis.has_errors(), "{:#?}", analysis.diagnostics);
        let d = Deployment::local_partitioned(&analysis.program, &[("c", 2, 3)]);
        let names: Vec<String> = d.nodes.iter().map(|n| logical_name(&d, n.addr)).collect();
        assert_eq!(names, ["c/0", "c/0", "c/0", "c/1", "c/1", "c/1"]);
        assert_eq!(d.nodes[4].name, "c/1.1", "instances keep their own names in traces");
        assert_eq!(show_value(&d, &Value::Addr(NodeAddr(4))), "c/1");
    }
}
