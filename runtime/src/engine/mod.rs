//! The evaluation engine: one [`Node`] runs the rules of its component, tick by tick.
//!
//! Semantics are those of docs/language.md section 11. Evaluation is semi-naive within a
//! stratum; join orders and indexes are fixed at compile time ([`CompiledProgram`]); tables and
//! their indexes persist across ticks, so rules driven by a message probe tables rather than scan
//! them; scratch relations computed from tables only ("views") are kept between ticks and
//! recomputed only when a table they read changed; and an aggregate over a single table atom is
//! maintained per group as the table changes (a count over a 1M-row table costs O(1) per change).

mod compile;
mod eval;
mod gc;
pub(crate) mod store;
mod stores;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use compart_analysis::model::{AggregateFunc, ComponentId, RelationId, RelationKind, RuleId, RuleKind, Type};
use rustc_hash::{FxHashMap, FxHashSet};

pub use compile::CompiledProgram;
use compile::{HArg, InvariantPlan, RulePlan};
use eval::Env;
use store::{decode, encode, Interner, Row, Store};
use stores::Stores;

use crate::deploy::Deployment;
use crate::durability::Change;
use crate::value::{route_index, NodeAddr, Tuple, Value};

/// What one tick produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TickOutput {
    /// Channel facts to deliver: (logical destination, channel, fact). Route them with [`route`].
    pub sends: Vec<(NodeAddr, RelationId, Tuple)>,
    pub outputs: Vec<(RelationId, Tuple)>,
    /// Local invariants and keys violated in this tick (only when checking is on).
    pub violations: Vec<Violation>,
    /// Rejected input facts, divisions by zero.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name, or `key(relation)` for a key violation.
    pub invariant: String,
    /// The node it was found on (None for a global invariant).
    pub node: Option<NodeAddr>,
    /// The invariant's arguments for this match, or the offending key values.
    pub args: Vec<Value>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let args: Vec<String> = self.args.iter().map(|v| v.to_string()).collect();
        write!(f, "invariant {}({}) violated", self.invariant, args.join(", "))?;
        if let Some(n) = self.node {
            write!(f, " on node {n}")?;
        }
        Ok(())
    }
}

/// Counters for the cost model and debugging.
#[derive(Clone, Debug, Default)]
pub struct NodeProfile {
    pub ticks: u64,
    /// Facts each rule derived (or sent), indexed by `RuleId`.
    pub rule_facts: Vec<u64>,
    /// Time spent evaluating each rule, in nanoseconds, indexed by `RuleId`.
    pub rule_nanos: Vec<u64>,
    pub tick_nanos: u64,
    pub facts_in: u64,
    pub facts_sent: u64,
    pub facts_out: u64,
    pub rejected_inputs: u64,
    pub div_by_zero: u64,
    /// Strata skipped because nothing they read changed.
    pub strata_cached: u64,
}

#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Evaluate local invariants and keys at the end of every tick (costs a scan of the relations
    /// they read; the simulator turns it on, `compart run` need not).
    pub check_invariants: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions { check_invariants: true }
    }
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum SortKey {
    I(i64),
    S(Arc<str>),
    U(u64),
}

#[derive(Default, Clone)]
struct GroupState {
    /// Per aggregate column: distinct value -> (encoded value, number of table rows giving it).
    values: Vec<BTreeMap<SortKey, (u64, u32)>>,
    sums: Vec<i64>,
}

/// Per-node state of one incrementally maintained aggregate.
#[derive(Clone)]
struct IncState {
    stratum: usize,
    rule: usize,
    groups: FxHashMap<Box<[u64]>, GroupState>,
    dirty: FxHashSet<Box<[u64]>>,
    current: FxHashMap<Box<[u64]>, Row>,
}

#[derive(Clone)]
struct State {
    stores: Stores,
    interner: Interner,
    inc: Vec<IncState>,
    /// (table relation, incremental aggregate reading it): a few per component, so a list
    /// rather than a vector over every relation of the program.
    watchers: Vec<(usize, usize)>,
    journal: Option<Vec<Change>>,
    tables_changed: bool,
}

/// The durability log a node appends to. A clone of a node (the explorer copies nodes per
/// explored state) must not write into the original's file, so cloning leaves it detached.
#[derive(Default)]
struct LogSlot(Option<crate::durability::DurableLog>, bool);

impl Clone for LogSlot {
    fn clone(&self) -> Self {
        LogSlot(None, false)
    }
}

/// One node (one instance of a component) of a deployment. A clone is an independent copy of
/// its state, without the durability log (see [`LogSlot`]).
#[derive(Clone)]
pub struct Node {
    program: Arc<CompiledProgram>,
    deployment: Arc<Deployment>,
    me: NodeAddr,
    logical: NodeAddr,
    component: ComponentId,
    state: State,
    started: bool,
    /// `:+` facts of scratch and output relations for the next tick.
    next_tick: Vec<(usize, Box<[u64]>)>,
    stratum_cache: Vec<Option<Vec<u64>>>,
    profile: NodeProfile,
    options: NodeOptions,
    /// See [`Node::set_incremental`].
    incremental: bool,
    snapshot_rels: Vec<usize>,
    snapshot: Vec<(RelationId, Vec<Tuple>)>,
    log: LogSlot,
}

impl Node {
    /// A node of `deployment` at address `me` (the process address; `self` is its logical node).
    ///
    /// # Panics
    /// If `me` is not a node of `deployment` (a caller bug, not bad input).
    pub fn new(program: Arc<CompiledProgram>, me: NodeAddr, deployment: Arc<Deployment>) -> Node {
        Self::with_options(program, me, deployment, NodeOptions::default())
    }

    pub fn with_options(
        program: Arc<CompiledProgram>,
        me: NodeAddr,
        deployment: Arc<Deployment>,
        options: NodeOptions,
    ) -> Node {
        let spec = deployment.node(me).unwrap_or_else(|| panic!("node {me} is not in the deployment")).clone();
        let mut interner = Interner::default();
        for s in &program.strings {
            interner.intern_arc(s);
        }
        // Stores for this component's relations and the built-ins only: another component's
        // relations are never read or written here, and holding them cost every node the size
        // of the whole program (see stores.rs).
        let held: Vec<usize> = program
            .program
            .component(spec.component)
            .relations
            .iter()
            .map(|r| r.index())
            .chain(program.rels.iter().enumerate().filter(|(_, r)| r.component.is_none()).map(|(i, _)| i))
            .collect();
        let stores = Stores::sparse(program.rels.len(), &held, |i| {
            let r = &program.rels[i];
            let mut cols = program.indexes.per_relation[i].clone();
            if let Some(k) = &r.key {
                // Keys are checked through an index on them.
                if !k.is_empty() && k.len() < r.types.len() && !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
            Store::new(&cols)
        });
        let mut inc = Vec::new();
        let mut watchers = Vec::new();
        for &(ci, si, ri) in &program.inc_aggs {
            if ci == spec.component.index() {
                let plan = program.components[ci].strata[si].rules[ri].inc_agg.as_ref().map(|p| p.table);
                if let Some(table) = plan {
                    watchers.push((table, inc.len()));
                }
                inc.push(IncState {
                    stratum: si,
                    rule: ri,
                    groups: FxHashMap::default(),
                    dirty: FxHashSet::default(),
                    current: FxHashMap::default(),
                });
            }
        }
        let nstrata = program.components[spec.component.index()].strata.len();
        let nrules = program.program.rules.len();
        let mut node = Node {
            deployment: deployment.clone(),
            me,
            logical: spec.logical,
            component: spec.component,
            state: State { stores, interner, inc, watchers, journal: None, tables_changed: false },
            started: false,
            next_tick: Vec::new(),
            stratum_cache: vec![None; nstrata],
            profile: NodeProfile { rule_facts: vec![0; nrules], rule_nanos: vec![0; nrules], ..Default::default() },
            options,
            incremental: true,
            snapshot_rels: Vec::new(),
            snapshot: Vec::new(),
            log: LogSlot(None, false),
            program,
        };
        // The deployment, as logical nodes. These two built-ins grow with the deployment (`partner`
        // with the square of its components), so only a node whose component reads them holds
        // them: a large deployment costs each node what its own rules use.
        let nodes_rel = node.program.nodes_rel;
        if reads_relation(&node.program, spec.component, nodes_rel) {
            for n in deployment.logical_nodes() {
                let name = node.state.interner.intern(&node.program.program.component(n.component).name);
                node.state.stores[nodes_rel].insert(&[name, n.addr.0 as u64]);
            }
        }
        let partner_rel = node.program.partner_rel;
        if reads_relation(&node.program, spec.component, partner_rel) {
            for (a, b) in deployment.partners() {
                node.state.stores[partner_rel].insert(&[a.0 as u64, b.0 as u64]);
            }
        }
        let instance_rel = node.program.instance_rel;
        node.state.stores[instance_rel].insert(&[spec.partition as u64, spec.partitions.max(1) as u64]);
        node
    }

    pub fn addr(&self) -> NodeAddr {
        self.me
    }
    pub fn logical_addr(&self) -> NodeAddr {
        self.logical
    }
    pub fn component(&self) -> ComponentId {
        self.component
    }
    pub fn program(&self) -> &Arc<CompiledProgram> {
        &self.program
    }
    pub fn profile(&self) -> &NodeProfile {
        &self.profile
    }
    pub fn options_mut(&mut self) -> &mut NodeOptions {
        &mut self.options
    }

    /// The node has work without new inputs: its first tick, `:+` facts, or tables that changed
    /// in the last tick (rules over tables may fire again).
    pub fn wants_tick(&self) -> bool {
        !self.started || !self.next_tick.is_empty() || self.state.tables_changed
    }

    /// Current facts of `relation`: tables between ticks, and views; ephemeral relations are empty
    /// between ticks (see [`Node::set_snapshot`]).
    pub fn facts(&self, relation: RelationId) -> Vec<Tuple> {
        let Some(store) = self.state.stores.get(relation.index()) else { return Vec::new() };
        let types = &self.program.rels[relation.index()].types;
        let mut out: Vec<Tuple> = store
            .rows
            .iter()
            .map(|row| row.iter().zip(types).map(|(&v, &t)| decode(&self.state.interner, t, v)).collect())
            .collect();
        out.sort();
        out
    }

    /// Keep views between ticks and maintain single-table aggregates incrementally (the default).
    /// Off: every same-tick rule is re-evaluated from scratch each tick, the reference the tests
    /// compare the incremental engine to. Set it before the first tick.
    pub fn set_incremental(&mut self, on: bool) {
        self.incremental = on;
    }

    /// Number of facts of `relation` (cheaper than [`Node::facts`]).
    pub fn facts_len(&self, relation: RelationId) -> usize {
        self.state.stores.get(relation.index()).map(|s| s.len()).unwrap_or(0)
    }

    /// Keep a copy of these relations as they stood at the end of each tick's fixpoint
    /// (for global invariants).
    pub fn set_snapshot(&mut self, relations: &[RelationId]) {
        self.snapshot_rels = relations.iter().map(|r| r.index()).collect();
    }

    pub fn snapshot(&self) -> &[(RelationId, Vec<Tuple>)] {
        &self.snapshot
    }

    /// Log every table change to `log` from now on (see [`crate::durability`]).
    pub fn attach_log(&mut self, log: crate::durability::DurableLog) {
        self.log = LogSlot(Some(log), self.log.1);
        self.state.journal = Some(Vec::new());
    }

    /// With `deferred`, a tick does not write its log record itself: the caller writes it with
    /// what the tick sends ([`Node::commit_tick`]) before anything leaves.
    pub fn defer_log(&mut self, deferred: bool) {
        self.log.1 = deferred;
    }

    /// Writes the last tick's table changes and `net` (what it sends, the inputs it processed)
    /// as one record, on disk when this returns. Writes nothing when both are empty or no log is
    /// attached; Ok(true) when it wrote a record.
    pub fn commit_tick(&mut self, net: &crate::durability::NetRecord) -> std::io::Result<bool> {
        let (Some(log), Some(journal)) = (&mut self.log.0, &mut self.state.journal) else { return Ok(false) };
        if journal.is_empty() && net.is_empty() {
            return Ok(false);
        }
        let written = log.append_tick(journal, net);
        journal.clear();
        written.map(|()| true)
    }

    /// The last tick changed tables that are not logged yet.
    pub fn journal_pending(&self) -> bool {
        self.state.journal.as_ref().is_some_and(|j| !j.is_empty())
    }

    /// The attached log's length in bytes.
    pub fn log_len(&self) -> Option<u64> {
        self.log.0.as_ref().map(|l| l.len())
    }

    /// The attached log's network incarnation.
    pub fn log_incarnation(&self) -> Option<u64> {
        self.log.0.as_ref().map(|l| l.incarnation())
    }

    /// Rewrites the attached log as every table fact and `net` (see
    /// [`crate::durability::DurableLog::compact`]). Call it between ticks.
    pub fn compact_log(&mut self, net: &crate::durability::NetRecord, incarnation: u64) -> std::io::Result<()> {
        if self.log.0.is_none() {
            return Ok(());
        }
        let mut tables = Vec::new();
        for &rid in &self.program.program.component(self.component).relations {
            if self.program.rels[rid.index()].kind == RelationKind::Table {
                tables.extend(self.facts(rid).into_iter().map(|t| Change::Insert(rid, t)));
            }
        }
        if let Some(journal) = &mut self.state.journal {
            journal.clear();
        }
        match &mut self.log.0 {
            Some(log) => log.compact(&tables, net, incarnation),
            None => Ok(()),
        }
    }

    /// A node whose tables are recovered from the durability log at `path` (see
    /// [`Node::recover`]), and which logs every table change there from now on.
    pub fn open_durable(
        program: Arc<CompiledProgram>,
        me: NodeAddr,
        deployment: Arc<Deployment>,
        path: &std::path::Path,
        program_hash: &str,
        accept_loss: bool,
    ) -> Result<(Node, crate::durability::RecoveryReport), crate::durability::LogError> {
        let mut node = Node::new(program, me, deployment);
        let report = node.recover(path, program_hash, accept_loss)?;
        Ok((node, report))
    }

    /// Restores this (fresh) node's tables from the durability log at `path`, created if missing,
    /// and logs every table change there from now on. The log must be this node's (its header
    /// names `program_hash`, this component and this node); `accept_loss` as in
    /// [`crate::durability::DurableLog::open`].
    pub fn recover(
        &mut self,
        path: &std::path::Path,
        program_hash: &str,
        accept_loss: bool,
    ) -> Result<crate::durability::RecoveryReport, crate::durability::LogError> {
        let identity = crate::durability::LogIdentity {
            program: program_hash.to_string(),
            component: self.program.program.component(self.component).name.clone(),
            node: self.deployment.nodes[self.me.index()].name.clone(),
        };
        let (log, changes, report) = crate::durability::DurableLog::open(path, &identity, accept_loss)?;
        self.restore(&changes)
            .map_err(|message| crate::durability::LogError::Restore { path: path.to_path_buf(), message })?;
        self.attach_log(log);
        Ok(report)
    }

    /// Record every table change in memory from now on (drain with [`Node::take_journal`]); the
    /// simulator's durability uses this instead of a file.
    pub fn enable_journal(&mut self) {
        if self.state.journal.is_none() {
            self.state.journal = Some(Vec::new());
        }
    }

    pub fn take_journal(&mut self) -> Vec<Change> {
        self.state.journal.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Restores tables from recovered changes (in order) and marks the node started, so initial
    /// facts are not inserted again.
    pub fn restore(&mut self, changes: &[Change]) -> Result<(), String> {
        for change in changes {
            let (rel, tuple, insert) = match change {
                Change::Insert(r, t) => (*r, t, true),
                Change::Delete(r, t) => (*r, t, false),
            };
            let Some(info) = self.program.rels.get(rel.index()) else {
                return Err(format!("log names relation #{} that the program does not have", rel.0));
            };
            if info.kind != RelationKind::Table || tuple.len() != info.types.len() {
                return Err(format!("log entry for `{}` does not fit the program", info.name));
            }
            let mut row = Vec::with_capacity(tuple.len());
            for (v, &t) in tuple.iter().zip(&info.types) {
                row.push(
                    encode(&mut self.state.interner, t, v)
                        .ok_or_else(|| format!("log value {v} has the wrong type"))?,
                );
            }
            self.change_table(rel.index(), &row, insert, false);
        }
        self.started = self.started || !changes.is_empty();
        self.state.tables_changed = true;
        Ok(())
    }

    /// Marks the node as already started (its tables come from elsewhere, e.g. recovery).
    pub fn mark_started(&mut self) {
        self.started = true;
    }

    /// A hash of everything that decides this node's future behaviour: the decoded facts of its
    /// tables, its pending `:+` facts, whether it started and whether its tables changed in the
    /// last tick (it then wants a tick), and the snapshot global invariants read. Values are
    /// hashed decoded and sorted, so two nodes holding the same facts hash equal whatever order
    /// they interned their strings in. Views are left out: they are computed from the tables.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        // DefaultHasher::new() has fixed keys: equal nodes hash equal across calls.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.me, self.started, self.state.tables_changed).hash(&mut h);
        for &rid in &self.program.program.component(self.component).relations {
            if self.program.rels[rid.index()].kind == RelationKind::Table && self.facts_len(rid) > 0 {
                (rid, self.facts(rid)).hash(&mut h);
            }
        }
        let mut next: Vec<(usize, Tuple)> = self
            .next_tick
            .iter()
            .map(|(rel, row)| {
                let types = &self.program.rels[*rel].types;
                (*rel, row.iter().zip(types).map(|(&v, &t)| decode(&self.state.interner, t, v)).collect())
            })
            .collect();
        next.sort();
        next.dedup();
        next.hash(&mut h);
        self.snapshot.hash(&mut h);
        h.finish()
    }

    /// This node as it comes back after a crash with durable tables (as the simulator restarts
    /// it with durability on): a fresh node holding the same table facts; its pending `:+`
    /// facts, views and snapshot are lost.
    pub fn restarted(&self) -> Node {
        let mut fresh =
            Node::with_options(self.program.clone(), self.me, self.deployment.clone(), self.options.clone());
        fresh.snapshot_rels = self.snapshot_rels.clone();
        fresh.incremental = self.incremental;
        if self.state.journal.is_some() {
            fresh.enable_journal();
        }
        let mut changes = Vec::new();
        for &rid in &self.program.program.component(self.component).relations {
            if self.program.rels[rid.index()].kind == RelationKind::Table {
                changes.extend(self.facts(rid).into_iter().map(|t| Change::Insert(rid, t)));
            }
        }
        // Facts come from this node's own tables, so they always fit the program.
        let _ = fresh.restore(&changes);
        if self.started {
            fresh.mark_started();
        }
        fresh
    }

    fn owns_fact(&self, rel: usize, row: &[Value]) -> bool {
        let spec = &self.deployment.nodes[self.me.index()];
        if spec.partitions <= 1 {
            return true;
        }
        route(&self.program, &self.deployment, self.logical, RelationId(rel as u32), row).contains(&self.me)
    }

    /// Inserts or deletes a table row, keeping incremental aggregates and the journal up to date.
    fn change_table(&mut self, rel: usize, row: &[u64], insert: bool, log: bool) -> bool {
        let changed =
            if insert { self.state.stores[rel].insert(row).is_some() } else { self.state.stores[rel].remove(row) };
        if !changed {
            return false;
        }
        self.state.tables_changed = true;
        if log {
            if let Some(j) = &mut self.state.journal {
                let types = &self.program.rels[rel].types;
                let tuple: Tuple = row.iter().zip(types).map(|(&v, &t)| decode(&self.state.interner, t, v)).collect();
                j.push(if insert {
                    Change::Insert(RelationId(rel as u32), tuple)
                } else {
                    Change::Delete(RelationId(rel as u32), tuple)
                });
            }
        }
        if !self.incremental {
            return true;
        }
        for k in 0..self.state.watchers.len() {
            let (table, id) = self.state.watchers[k];
            if table == rel {
                self.inc_update(id, row, insert);
            }
        }
        true
    }

    fn inc_update(&mut self, id: usize, row: &[u64], insert: bool) {
        let program = self.program.clone();
        let state = &mut self.state;
        let inc = &mut state.inc[id];
        let plan = &program.components[self.component.index()].strata[inc.stratum].rules[inc.rule];
        let Some(ia) = &plan.inc_agg else { return };
        let mut env = Env {
            interner: &mut state.interner,
            deployment: &self.deployment,
            self_addr: self.logical.0 as u64,
            div_by_zero: 0,
        };
        let mut vars = vec![0u64; plan.nvars];
        if !eval::match_pats(&ia.pats, row, &mut vars, &mut env) {
            return;
        }
        let mut out = Vec::new();
        if !eval::push_head(&plan.head, &vars, &mut env, &mut out) {
            return;
        }
        let group: Box<[u64]> =
            plan.head.args.iter().zip(&out).filter(|(a, _)| matches!(a, HArg::Expr(_))).map(|(_, &v)| v).collect();
        let naggs = plan.head.args.iter().filter(|a| matches!(a, HArg::Agg(..))).count();
        let gs = inc.groups.entry(group.clone()).or_insert_with(|| GroupState {
            values: (0..naggs).map(|_| BTreeMap::new()).collect(),
            sums: vec![0; naggs],
        });
        let mut k = 0;
        for (a, &v) in plan.head.args.iter().zip(&out) {
            let HArg::Agg(_, e) = a else { continue };
            let key = match e.ty {
                Type::Int | Type::Unknown => SortKey::I(v as i64),
                Type::String => SortKey::S(env.interner.get(v).clone()),
                _ => SortKey::U(v),
            };
            let map = &mut gs.values[k];
            if insert {
                let entry = map.entry(key).or_insert((v, 0));
                if entry.1 == 0 {
                    gs.sums[k] = gs.sums[k].wrapping_add(v as i64);
                }
                entry.1 += 1;
            } else if let Some(entry) = map.get_mut(&key) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    map.remove(&key);
                    gs.sums[k] = gs.sums[k].wrapping_sub(v as i64);
                }
            }
            k += 1;
        }
        if gs.values.iter().all(|m| m.is_empty()) {
            inc.groups.remove(&group);
        }
        inc.dirty.insert(group);
    }

    /// Rewrites the facts of the incremental aggregate `id` for the groups that changed.
    fn inc_refresh(&mut self, id: usize) {
        let program = self.program.clone();
        let inc = &mut self.state.inc[id];
        let plan = &program.components[self.component.index()].strata[inc.stratum].rules[inc.rule];
        let head = plan.head.rel;
        let dirty: Vec<Box<[u64]>> = inc.dirty.drain().collect();
        for group in dirty {
            if let Some(old) = inc.current.remove(&group) {
                self.state.stores[head].remove(&old);
            }
            let Some(gs) = inc.groups.get(&group) else { continue };
            let mut row = Vec::with_capacity(plan.head.args.len());
            let (mut g, mut k) = (0, 0);
            for a in &plan.head.args {
                match a {
                    HArg::Expr(_) => {
                        row.push(group[g]);
                        g += 1;
                    }
                    HArg::Agg(f, _) => {
                        let m = &gs.values[k];
                        row.push(match f {
                            AggregateFunc::Count => m.len() as u64,
                            AggregateFunc::Sum => gs.sums[k] as u64,
                            AggregateFunc::Min | AggregateFunc::Choose => m.values().next().map(|x| x.0).unwrap_or(0),
                            AggregateFunc::Max => m.values().next_back().map(|x| x.0).unwrap_or(0),
                            // Never maintained incrementally (compile.rs); folded as a count if it were.
                            AggregateFunc::Rank => m.len() as u64,
                        });
                        k += 1;
                    }
                }
            }
            if let Some(r) = self.state.stores[head].insert(&row) {
                inc.current.insert(group, r);
            }
            self.profile.rule_facts[plan.id.index()] += 1;
        }
    }

    /// One tick: `inputs` are input-relation facts and delivered channel facts for this node.
    pub fn tick(&mut self, inputs: Vec<(RelationId, Tuple)>) -> TickOutput {
        let start = Instant::now();
        let program = self.program.clone();
        let comp = &program.components[self.component.index()];
        let mut out = TickOutput::default();
        self.profile.ticks += 1;
        self.state.tables_changed = false;
        let div_before = self.profile.div_by_zero;

        // 1. Gather.
        if !self.started {
            self.started = true;
            for fact in &comp.facts {
                let rel = fact.rel;
                let mut row = Vec::new();
                let mut env = self.env();
                if !eval::push_head(fact, &[], &mut env, &mut row) {
                    continue;
                }
                if program.rels[rel].kind == RelationKind::Table {
                    let values: Vec<Value> = row
                        .iter()
                        .zip(&program.rels[rel].types)
                        .map(|(&v, &t)| decode(&self.state.interner, t, v))
                        .collect();
                    if self.owns_fact(rel, &values) {
                        self.change_table(rel, &row, true, true);
                    }
                }
            }
        }
        for fact in &comp.facts {
            let rel = fact.rel;
            if program.rels[rel].kind != RelationKind::Table {
                let mut row = Vec::new();
                let mut env = self.env();
                if eval::push_head(fact, &[], &mut env, &mut row) {
                    let owned = self.deployment.nodes[self.me.index()].partitions <= 1 || {
                        let types = &program.rels[rel].types;
                        let values: Vec<Value> =
                            row.iter().zip(types).map(|(&v, &t)| decode(&self.state.interner, t, v)).collect();
                        self.owns_fact(rel, &values)
                    };
                    if owned {
                        self.state.stores[rel].insert(&row);
                    }
                }
            }
        }
        for (rel, row) in std::mem::take(&mut self.next_tick) {
            self.state.stores[rel].insert(&row);
        }
        for (rel, tuple) in inputs {
            match self.encode_input(rel, &tuple) {
                Ok(row) => {
                    self.profile.facts_in += 1;
                    self.state.stores[rel.index()].insert(&row);
                }
                Err(e) => {
                    self.profile.rejected_inputs += 1;
                    out.warnings.push(e);
                }
            }
        }

        // 2. Derive, stratum by stratum.
        for (si, stratum) in comp.strata.iter().enumerate() {
            self.eval_stratum(si, stratum);
        }

        // 3. Check.
        if self.options.check_invariants {
            for inv in &comp.invariants {
                out.violations.extend(self.check_invariant(inv));
            }
            self.check_keys(&mut out.violations);
        }
        if !self.snapshot_rels.is_empty() {
            self.snapshot = self
                .snapshot_rels
                .iter()
                .map(|&r| {
                    let rid = RelationId(r as u32);
                    (rid, self.facts(rid))
                })
                .collect();
        }

        // 4. Emit and send.
        let own_rels: Vec<usize> =
            program.program.component(self.component).relations.iter().map(|r| r.index()).collect();
        for &rel in &own_rels {
            if program.rels[rel].kind == RelationKind::Output {
                for t in self.facts(RelationId(rel as u32)) {
                    out.outputs.push((RelationId(rel as u32), t));
                }
            }
        }
        // 5. Prepare the next tick (deferred rules see the finished tick).
        let mut deletes: Vec<(usize, Vec<u64>)> = Vec::new();
        let mut inserts: Vec<(usize, Vec<u64>)> = Vec::new();
        for rule in &comp.deferred {
            let t0 = Instant::now();
            let rows = self.eval_rule(rule, false);
            let width = eval::head_width(&rule.head);
            let rel = rule.head.rel;
            let n = rows.len().checked_div(width).unwrap_or(rows.len());
            self.profile.rule_facts[rule.id.index()] += n as u64;
            for row in eval::rows_of(&rows, width) {
                match rule.kind {
                    RuleKind::Delete => deletes.push((rel, row.to_vec())),
                    RuleKind::NextTick if program.rels[rel].kind == RelationKind::Table => {
                        inserts.push((rel, row.to_vec()))
                    }
                    RuleKind::NextTick => self.next_tick.push((rel, row.into())),
                    RuleKind::Async => {
                        let dest = NodeAddr(row[0] as u32);
                        let types = &program.rels[rel].types;
                        let tuple: Tuple =
                            row[1..].iter().zip(types).map(|(&v, &t)| decode(&self.state.interner, t, v)).collect();
                        out.sends.push((dest, RelationId(rel as u32), tuple));
                    }
                    _ => {}
                }
            }
            self.profile.rule_nanos[rule.id.index()] += t0.elapsed().as_nanos() as u64;
        }
        out.sends.sort();
        out.sends.dedup();
        self.profile.facts_sent += out.sends.len() as u64;
        self.profile.facts_out += out.outputs.len() as u64;

        // Ephemeral relations end with the tick; deletions apply, then `:+` insertions (they win).
        for (i, info) in program.rels.iter().enumerate() {
            if info.ephemeral() && !self.state.stores[i].is_empty() {
                self.state.stores[i].clear();
            }
        }
        for (rel, row) in deletes {
            self.change_table(rel, &row, false, true);
        }
        for (rel, row) in inserts {
            self.change_table(rel, &row, true, true);
        }
        self.state.tables_changed = self.state.tables_changed || !self.next_tick.is_empty();
        // Durability: one record per tick, written before the tick's messages leave.
        if let (Some(log), Some(journal), false) = (&mut self.log.0, &mut self.state.journal, self.log.1) {
            if !journal.is_empty() {
                if let Err(e) = log.append(journal) {
                    out.warnings.push(format!("durability log: {e}"));
                }
                journal.clear();
            }
        }
        let div = self.profile.div_by_zero - div_before;
        if div > 0 {
            out.warnings.push(format!("{div} division(s) by zero in this tick (those matches produced nothing)"));
        }
        self.maybe_collect_strings();
        self.profile.tick_nanos += start.elapsed().as_nanos() as u64;
        out
    }

    fn env(&mut self) -> Env<'_> {
        Env {
            interner: &mut self.state.interner,
            deployment: &self.deployment,
            self_addr: self.logical.0 as u64,
            div_by_zero: 0,
        }
    }

    fn encode_input(&mut self, rel: RelationId, tuple: &[Value]) -> Result<Vec<u64>, String> {
        let Some(info) = self.program.rels.get(rel.index()) else {
            return Err(format!("unknown relation #{}", rel.0));
        };
        if !matches!(info.kind, RelationKind::Input | RelationKind::Channel) || info.component != Some(self.component) {
            return Err(format!("`{}` is not an input or channel of this node's component", info.name));
        }
        if tuple.len() != info.types.len() {
            return Err(format!("`{}` takes {} values, got {}", info.name, info.types.len(), tuple.len()));
        }
        let mut row = Vec::with_capacity(tuple.len());
        for (i, (v, &t)) in tuple.iter().zip(&info.types).enumerate() {
            row.push(
                encode(&mut self.state.interner, t, v)
                    .ok_or_else(|| format!("`{}` column {i}: {v} is not a {t}", info.name))?,
            );
        }
        Ok(row)
    }

    /// Evaluates a rule's body (full plan, or the delta plans when `delta`), returning head rows
    /// (aggregated when the head aggregates).
    fn eval_rule(&mut self, rule: &RulePlan, delta: bool) -> Vec<u64> {
        let mut rows = Vec::new();
        let mut vars = vec![0u64; rule.nvars];
        let state = &mut self.state;
        let mut env = Env {
            interner: &mut state.interner,
            deployment: &self.deployment,
            self_addr: self.logical.0 as u64,
            div_by_zero: 0,
        };
        let head = &rule.head;
        let mut emit = |vars: &[u64], env: &mut Env| {
            eval::push_head(head, vars, env, &mut rows);
        };
        if delta {
            for (rel, steps) in &rule.deltas {
                if !state.stores[*rel].recent.is_empty() {
                    eval::run(steps, &state.stores, &mut vars, &mut env, &mut emit);
                }
            }
        } else {
            eval::run(&rule.full, &state.stores, &mut vars, &mut env, &mut emit);
        }
        let div = env.div_by_zero;
        if head.has_agg() {
            rows = eval::aggregate(head, &rows, &env);
        }
        self.profile.div_by_zero += div;
        // Zero-width heads (`flag()`): one empty row per match; keep a marker so callers see it.
        if eval::head_width(head) == 0 && rows.is_empty() {
            // push_head pushed nothing; detect matches through a second run is wasteful, so flags
            // are handled by `eval_flag` instead.
            return self.eval_flag(rule, delta);
        }
        rows
    }

    /// Zero-column heads: returns a one-element vector when the body matched at least once.
    fn eval_flag(&mut self, rule: &RulePlan, delta: bool) -> Vec<u64> {
        let mut hit = false;
        let mut vars = vec![0u64; rule.nvars];
        let state = &mut self.state;
        let mut env = Env {
            interner: &mut state.interner,
            deployment: &self.deployment,
            self_addr: self.logical.0 as u64,
            div_by_zero: 0,
        };
        let mut emit = |_: &[u64], _: &mut Env| hit = true;
        if delta {
            for (rel, steps) in &rule.deltas {
                if !state.stores[*rel].recent.is_empty() {
                    eval::run(steps, &state.stores, &mut vars, &mut env, &mut emit);
                }
            }
        } else {
            eval::run(&rule.full, &state.stores, &mut vars, &mut env, &mut emit);
        }
        if hit {
            vec![0]
        } else {
            Vec::new()
        }
    }

    fn insert_derived(&mut self, rel: usize, rows: &[u64], width: usize, new: &mut Vec<Row>) -> u64 {
        let table = self.program.rels[rel].kind == RelationKind::Table;
        let mut added = 0;
        for row in eval::rows_of(rows, width) {
            if table {
                if self.change_table(rel, row, true, true) {
                    added += 1;
                    if let Some(r) = self.state.stores[rel].rows.get(row) {
                        new.push(r.clone());
                    }
                }
            } else if let Some(r) = self.state.stores[rel].insert(row) {
                added += 1;
                new.push(r);
            }
        }
        added
    }

    fn eval_stratum(&mut self, si: usize, stratum: &compile::StratumPlan) {
        let incremental = self.incremental;
        if stratum.cacheable && incremental {
            let versions: Vec<u64> = stratum.reads.iter().map(|&r| self.state.stores[r].version).collect();
            if self.stratum_cache[si].as_ref() == Some(&versions) {
                self.profile.strata_cached += 1;
                return;
            }
            for &h in &stratum.heads {
                self.state.stores[h].clear();
            }
            self.stratum_cache[si] = Some(versions);
        } else {
            for &h in &stratum.heads {
                let info = &self.program.rels[h];
                let inc_maintained =
                    incremental && stratum.rules.iter().any(|r| r.inc_agg.is_some() && r.head.rel == h);
                if info.view && !inc_maintained {
                    self.state.stores[h].clear();
                }
            }
        }
        let mut new_rows: Vec<(usize, Vec<Row>)> = stratum.heads.iter().map(|&h| (h, Vec::new())).collect();
        for rule in &stratum.rules {
            let t0 = Instant::now();
            if rule.inc_agg.is_some() && incremental {
                let id = self.state.inc.iter().position(|s| {
                    self.program.components[self.component.index()].strata[s.stratum].rules[s.rule].id == rule.id
                });
                if let Some(id) = id {
                    self.inc_refresh(id);
                }
            } else {
                self.derive(rule, false, &mut new_rows);
            }
            self.profile.rule_nanos[rule.id.index()] += t0.elapsed().as_nanos() as u64;
        }
        if !stratum.recursive {
            return;
        }
        loop {
            let mut any = false;
            for (h, rows) in &mut new_rows {
                any |= !rows.is_empty();
                self.state.stores[*h].recent = std::mem::take(rows);
            }
            if !any {
                break;
            }
            for rule in &stratum.rules {
                if rule.deltas.is_empty() {
                    continue;
                }
                let t0 = Instant::now();
                self.derive(rule, true, &mut new_rows);
                self.profile.rule_nanos[rule.id.index()] += t0.elapsed().as_nanos() as u64;
            }
        }
        for &h in &stratum.heads {
            self.state.stores[h].recent.clear();
        }
    }

    /// Evaluate `rule` (on the last round's new facts only, with `delta`), insert what it derives,
    /// and add the facts that are new to its head's entry of `new_rows`.
    fn derive(&mut self, rule: &RulePlan, delta: bool, new_rows: &mut [(usize, Vec<Row>)]) {
        let rows = self.eval_rule(rule, delta);
        let width = eval::head_width(&rule.head);
        let slot = new_rows.iter().position(|(h, _)| *h == rule.head.rel).unwrap_or(0);
        let mut new = std::mem::take(&mut new_rows[slot].1);
        let n = self.insert_derived(rule.head.rel, &rows, width, &mut new);
        new_rows[slot].1 = new;
        self.profile.rule_facts[rule.id.index()] += n;
    }

    fn check_invariant(&mut self, inv: &InvariantPlan) -> Vec<Violation> {
        let found =
            run_invariant(inv, &self.state.stores, &mut self.state.interner, &self.deployment, self.logical.0 as u64);
        found.into_iter().map(|args| Violation { invariant: inv.name.clone(), node: Some(self.me), args }).collect()
    }

    fn check_keys(&mut self, out: &mut Vec<Violation>) {
        let program = self.program.clone();
        for &rid in &program.program.component(self.component).relations {
            let info = &program.rels[rid.index()];
            let Some(key) = &info.key else { continue };
            let store = &self.state.stores[rid.index()];
            if key.len() == info.types.len() {
                continue;
            }
            if key.is_empty() {
                if store.len() > 1 {
                    out.push(Violation {
                        invariant: format!("key({})", info.name),
                        node: Some(self.me),
                        args: Vec::new(),
                    });
                }
                continue;
            }
            let Some(index) = store.indexes.iter().find(|i| *i.cols == key[..]) else { continue };
            for (k, rows) in &index.map {
                if rows.len() > 1 {
                    let args =
                        k.iter().zip(key).map(|(&v, &c)| decode(&self.state.interner, info.types[c], v)).collect();
                    out.push(Violation { invariant: format!("key({})", info.name), node: Some(self.me), args });
                }
            }
        }
    }
}

/// Runs an invariant's body; returns the argument values of each match (at most 16).
fn run_invariant(
    inv: &InvariantPlan,
    stores: &Stores,
    interner: &mut Interner,
    deployment: &Deployment,
    self_addr: u64,
) -> Vec<Vec<Value>> {
    let mut rows: Vec<u64> = Vec::new();
    let mut count = 0usize;
    let mut vars = vec![0u64; inv.nvars];
    let mut env = Env { interner, deployment, self_addr, div_by_zero: 0 };
    let args = &inv.args;
    let mut emit = |vars: &[u64], env: &mut Env| {
        if count < 16 {
            let start = rows.len();
            for a in args {
                match eval::eval(a, vars, env) {
                    Some(v) => rows.push(v),
                    None => {
                        rows.truncate(start);
                        return;
                    }
                }
            }
        }
        count += 1;
    };
    eval::run(&inv.steps, stores, &mut vars, &mut env, &mut emit);
    let mut out = Vec::new();
    for i in 0..count.min(16) {
        let row = &rows[i * args.len()..(i + 1) * args.len()];
        out.push(row.iter().zip(args).map(|(&v, a)| decode(env.interner, a.ty, v)).collect());
    }
    if count > 0 && args.is_empty() && out.is_empty() {
        out.push(Vec::new());
    }
    out.sort();
    out.dedup();
    out
}

/// Checks the program's global invariants over the union of facts given by each node.
pub struct GlobalChecker {
    program: Arc<CompiledProgram>,
    deployment: Arc<Deployment>,
}

impl GlobalChecker {
    pub fn new(program: Arc<CompiledProgram>, deployment: Arc<Deployment>) -> Self {
        GlobalChecker { program, deployment }
    }

    /// Relations the global invariants read: ask every node to snapshot these.
    pub fn relations(&self) -> Vec<RelationId> {
        let mut rels: Vec<RelationId> =
            self.program.global_invariants.iter().flat_map(|i| i.reads.iter().map(|&r| RelationId(r as u32))).collect();
        rels.sort();
        rels.dedup();
        rels
    }

    pub fn check<'a>(&self, facts: impl IntoIterator<Item = &'a (RelationId, Vec<Tuple>)>) -> Vec<Violation> {
        if self.program.global_invariants.is_empty() {
            return Vec::new();
        }
        let mut interner = Interner::default();
        for s in &self.program.strings {
            interner.intern_arc(s);
        }
        let mut stores = Stores::dense(
            self.program
                .rels
                .iter()
                .enumerate()
                .map(|(i, _)| Store::new(&self.program.indexes.per_relation[i]))
                .collect(),
        );
        for (rel, tuples) in facts {
            let types = &self.program.rels[rel.index()].types;
            for t in tuples {
                let row: Option<Vec<u64>> = t.iter().zip(types).map(|(v, &ty)| encode(&mut interner, ty, v)).collect();
                if let Some(row) = row {
                    stores[rel.index()].insert(&row);
                }
            }
        }
        // As on nodes: the deployment's built-ins only when an invariant reads them (this runs
        // after every tick that changed what the invariants read).
        let read = |rel: usize| self.program.global_invariants.iter().any(|i| i.reads.contains(&rel));
        let nodes_rel = self.program.nodes_rel;
        if read(nodes_rel) {
            for n in self.deployment.logical_nodes() {
                let name = interner.intern(&self.program.program.component(n.component).name);
                stores[nodes_rel].insert(&[name, n.addr.0 as u64]);
            }
        }
        if read(self.program.partner_rel) {
            for (a, b) in self.deployment.partners() {
                stores[self.program.partner_rel].insert(&[a.0 as u64, b.0 as u64]);
            }
        }
        let mut out = Vec::new();
        for inv in &self.program.global_invariants {
            for args in run_invariant(inv, &stores, &mut interner, &self.deployment, 0) {
                out.push(Violation { invariant: inv.name.clone(), node: None, args });
            }
        }
        out
    }
}

/// Whether a rule or an invariant of `component` reads relation `rel`.
fn reads_relation(program: &CompiledProgram, component: ComponentId, rel: usize) -> bool {
    let model = &program.program;
    let reads = |&r: &RuleId| model.rule(r).atoms().any(|a| a.relation_id.is_some_and(|x| x.index() == rel));
    model.component(component).rules.iter().any(reads)
        || program.components[component.index()].invariants.iter().any(|i| i.reads.contains(&rel))
}

/// Where a fact sent to the logical node `dest` goes: the instance [`route_index`] picks for its
/// partition column (a hash independent of the language's `hash`), every instance for a relation
/// without one (or `dest` itself when unpartitioned). The one routing function: nodes, the load
/// generator, the simulator and the explorer all call it.
pub fn route(
    program: &CompiledProgram,
    deployment: &Deployment,
    dest: NodeAddr,
    relation: RelationId,
    tuple: &[Value],
) -> Vec<NodeAddr> {
    let mut out = Vec::new();
    route_into(program, deployment, dest, relation, tuple, &mut out);
    out
}

pub fn route_into(
    program: &CompiledProgram,
    deployment: &Deployment,
    dest: NodeAddr,
    relation: RelationId,
    tuple: &[Value],
    out: &mut Vec<NodeAddr>,
) {
    out.clear();
    let logical = deployment.logical(dest);
    let instances = deployment.instances(logical);
    if instances.len() <= 1 {
        out.push(logical);
        return;
    }
    match program.partition_column(relation).and_then(|c| tuple.get(c)) {
        Some(v) => {
            out.push(instances[route_index(std::slice::from_ref(v), instances.len())].addr);
        }
        None => out.extend(instances.iter().map(|n| n.addr)),
    }
}

#[cfg(test)]
mod tests;
