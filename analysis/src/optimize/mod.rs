//! The optimizer: a cost model over components and a greedy search over rewrites (batch, decouple,
//! shared proxies, seal, grid quorums, thrifty broadcasts, then partition or replicate) that
//! maximises predicted throughput within a machine budget; each step is taken where it pays.
//!
//! Cost model, per client request, in CPU-µs with the constants of a [`Calibration`] (fitted on
//! this machine by `compart calibrate`). Each relation gets a frequency at one node of its
//! component (inputs: their share of the workload's mix; a broadcast `r@a(..) :~ .., nodes("X",
//! a)`, or through a helper `voters(a) :- nodes("X", a)`, delivers one fact to each X node; a
//! reply to one address delivers one per sending node). A rule fires as often as its rarest
//! changing body atom (tables, built-ins and helpers derived from them alone are state, not
//! events), times the share its constant filters pass (`vote(t, _, false)` and `vote(t, _,
//! true)` split the votes, and a rule its own keyed log guards, `!decision(txn, _)`, fires once
//! per request: alternative branches are not each counted in full; an aggregate with no group
//! derives once per tick at most, so traffic and ticks are settled together); its work is
//! firings × (1 + body atoms). A profile (facts derived per rule, from `compart run --report`)
//! replaces the static firings where given. One instance of a component, of `k` per logical
//! node, costs per request
//!
//! ```text
//! tick_us·T + frame_recv_us·min(in/k, φr·T) + frame_sent_us·min(out/k, φs·T)
//!   + fact_us·(in + out)/k + rule_us·work/k
//! ```
//!
//! where `in` are the facts one logical node receives and `out` those it sends or replies, and
//! `T` its ticks per request, which depend on the throughput `X` (see `settle`): an instance
//! ticks at most once per fact (`T ≤ in/k`) and at most as often as the quota left after its
//! per-fact work allows (`T ≤ (quota − v·X) / (tick cost · X)`): a saturated instance batches.
//! `X` is where the closed loop settles: `clients` requests wait about `tick_window` ticks at
//! each busy visit, `clients = X · tick_window · Σ visits / R` over the components (`R = T·X`
//! ticks/s). Instances that are not short of CPU tick when bursts arrive, at the slowest
//! component's pace per visit. Measured on the emulated cluster (bench/emulated.md), this is what
//! the plans showed: a balanced plan's instances all near their quota at 25-85 facts per tick,
//! where the original's lone bottleneck batched 700-900. Predicted throughput is `X`; the
//! costliest instance spends its whole quota there.
//!
//! Batching (`rewrite::batch`) enters the same model through the frequencies: the batch channel
//! carries one fact per batch, so what the batched component and everything downstream receive
//! and derive divides by the fill, the requests per batch. A batcher instance cuts one batch from
//! the requests each of its ticks holds, so the fill settles with the ticks (`settle_fills`): of
//! `b` instances per logical node, `n` nodes, each ticking `T` times per client request, with
//! `visits` ticks of a request at the batcher (its arrival, its batch's reply), a batch holds
//! `min(N, visits / (n·b·T))` requests. An unsaturated batcher ticks at the closed loop's pace,
//! a saturated one as its quota allows, so batches fill up as batchers near their quota (measured:
//! 26 requests per batch with 7 saturated batchers, 12 with 12 idle ones, bench/emulated.md): more
//! batcher instances, cheaper batchers but emptier batches and a costlier batched component. Where requests are handled one by one, the work stays per request (measured
//! on bench/emulated-batched, where the model had the batcher's facts at half the measured):
//! the batch send's body matches each request of its batch (one derivation per request, one
//! message per batch); the unbatching joins each batch reply with the requests the batcher holds,
//! and a rule joining an event with a table that the event consumes (`delete held(b, ..) :-
//! held(b, ..), e(b, ..)`) fires once per held row, not once per event (`held_rows`); the batch
//! reply has no partition column, so every batcher instance receives it (`facts_in_every`: the
//! runtime sends a fact without one to every instance). And a request in a batch waits for each
//! of its batch's ticks: visits count facts with batches undivided. The plan's deployment
//! records each batching (`[batches]`, `deployment::batchings`), so a plan read back from its
//! files (`compart calibrate --check`) is costed as the search costed it. The search therefore does not add batcher instances one by one;
//! [`estimate`] evaluates the whole estimate for each batcher count and keeps the best. The
//! search tries the sizes of [`BATCH_SIZES`] (or the one it is told) on the costliest sequential
//! components first. A batching spaces replies' log positions by N: it is not an equivalence, so
//! it and every later step are checked on invariants only, like a sealing.

mod calibrate;
mod grid;
mod share;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

pub use calibrate::{busy, fit, nnls, Calibration, Fit, NodeSample, TERMS};

use crate::model::{ComponentId, ExprKind, HeadArg, Program, RelationId, RelationKind, RuleId, RuleKind};
use crate::rewrite;
use crate::scaling::{Context, ScalingClass};
use crate::Analysis;

/// Measured facts per client request of each rule at one logical node, keyed by the rule's text
/// as [`crate::scaling::display::rule`] prints it: rules keep their text when a rewrite leaves
/// them in place, so the profile of the original program still applies to them after rewrites;
/// rules a rewrite changed (renamed atoms, forwarding rules) fall back to the static estimate.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub rule_facts: HashMap<String, f64>,
}

impl Profile {
    pub fn key(rule: &crate::model::Rule) -> String {
        crate::scaling::display::rule(rule)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ComponentCost {
    pub name: String,
    pub class: String,
    /// Per client request at one logical node: facts received, facts sent or replied, rule work.
    pub facts_in: f64,
    pub facts_out: f64,
    pub work: f64,
    /// Of `facts_in`, those every instance receives: a channel without a partition column
    /// reaches each instance of the logical node (a batch's reply reaches every batcher).
    pub facts_in_every: f64,
    /// CPU-µs per request of the component unpartitioned (one instance per logical node).
    pub load: f64,
    /// CPU-µs per request of one of its instances, as partitioned.
    pub instance_cpu_us: f64,
    /// Logical nodes, as in the deployment (`acceptor = 3`).
    pub logical: usize,
    /// Instances per logical node (`[partitions]`); 1 unless scalable.
    pub partitions: usize,
    pub scalable: bool,
    /// Ticks a request takes part in at one of its nodes ([`Traffic::visits`]).
    pub visits: f64,
    /// Ticks per client request of one instance, at the operating point.
    pub ticks: f64,
}

impl ComponentCost {
    /// Facts one instance of `k` per logical node receives per client request: its share of
    /// those routed by the partition column, and all of those without one.
    pub fn facts_in_per_instance(&self, k: usize) -> f64 {
        (self.facts_in - self.facts_in_every) / k.max(1) as f64 + self.facts_in_every
    }

    /// CPU-µs per client request of one instance, `k` per logical node, that does not depend on
    /// how often it ticks: its facts and its rule work, divided among the instances.
    fn variable_us(&self, k: usize, cal: &Calibration) -> f64 {
        let kf = k.max(1) as f64;
        cal.fact_us * (self.facts_in_per_instance(k) + self.facts_out / kf) + cal.rule_us * self.work / kf
    }

    /// CPU-µs per client request of one instance, `k` per logical node, ticking `ticks` times
    /// per client request (a frame received and sent per tick at most, one per fact at least).
    pub fn instance_cost(&self, k: usize, ticks: f64, cal: &Calibration) -> f64 {
        let kf = k.max(1) as f64;
        let frames_recv = self.facts_in_per_instance(k).min(cal.frames_recv_per_tick * ticks);
        let frames_sent = (self.facts_out / kf).min(cal.frames_sent_per_tick * ticks);
        cal.tick_us * ticks
            + cal.frame_recv_us * frames_recv
            + cal.frame_sent_us * frames_sent
            + self.variable_us(k, cal)
    }

    fn set_partitions(&mut self, k: usize) {
        self.partitions = k;
    }
}

/// The operating point of a deployment: the requests/s the closed loop settles at, and each
/// instance's ticks and CPU per client request there (set in `components`).
///
/// An instance ticks whenever facts wait, so its ticks per second `R` are at most its facts per
/// second (a tick per fact) and at most what its quota leaves after the per-fact work
/// (`(quota − v·X) / tick cost`): a busy instance batches, more as it nears its quota. The
/// throughput `X` follows from the closed loop: the clients' requests are the ones waiting,
/// about `tick_window` ticks at each tick a request takes part in (`visits`), so
/// `clients = X · Σ visits · tick_window / R` over the components a request passes. An instance
/// that is not short of CPU ticks when its senders' bursts arrive: as often per visit as the
/// slowest component, which paces the rest.
fn settle(components: &mut [ComponentCost], cal: &Calibration) -> f64 {
    let quota = cal.cpu_per_node * 1e6;
    let per_tick =
        cal.tick_us + cal.frame_recv_us * cal.frames_recv_per_tick + cal.frame_sent_us * cal.frames_sent_per_tick;
    // Per instance: work per request that does not tick, facts in per request, visits.
    let shape: Vec<(f64, f64, f64)> = components
        .iter()
        .map(|c| (c.variable_us(c.partitions, cal), c.facts_in_per_instance(c.partitions), c.visits))
        .collect();
    let rate = |&(v, a, _): &(f64, f64, f64), x: f64| {
        let arrivals = a * x;
        if per_tick > 0.0 {
            ((quota - v * x).max(0.0) / per_tick).min(arrivals)
        } else {
            arrivals
        }
    };
    // The most requests/s the per-fact work alone allows.
    let cpu_bound = shape.iter().filter(|s| s.0 > 0.0).map(|s| quota / s.0).fold(f64::INFINITY, f64::min);
    let throughput = if cal.clients <= 0.0 || cal.tick_window <= 0.0 || per_tick <= 0.0 {
        // No closed loop to batch: one tick per fact received.
        let worst = shape.iter().map(|&(v, a, _)| v + per_tick * a).fold(0.0, f64::max);
        if worst > 0.0 {
            quota / worst
        } else {
            0.0
        }
    } else {
        // Requests waiting at the components at `x` requests/s, less the clients: increasing in `x`.
        let excess = |x: f64| {
            let waiting: f64 = shape
                .iter()
                .filter(|s| s.2 > 0.0)
                .map(|s| {
                    let r = rate(s, x);
                    if r > 0.0 {
                        s.2 * x / r
                    } else {
                        f64::INFINITY
                    }
                })
                .sum();
            waiting * cal.tick_window - cal.clients
        };
        let mut hi = if cpu_bound.is_finite() { cpu_bound } else { quota / per_tick };
        while excess(hi) < 0.0 && !cpu_bound.is_finite() && hi < 1e12 {
            hi *= 2.0;
        }
        let mut lo = 0.0;
        for _ in 0..100 {
            let mid = (lo + hi) / 2.0;
            if excess(mid) < 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    };
    let pace = shape.iter().filter(|s| s.2 > 0.0).map(|s| rate(s, throughput) / s.2).fold(f64::INFINITY, f64::min);
    for (c, s) in components.iter_mut().zip(&shape) {
        let ticks = if throughput > 0.0 && s.2 > 0.0 {
            if cal.clients <= 0.0 || cal.tick_window <= 0.0 || per_tick <= 0.0 {
                s.1
            } else {
                rate(s, throughput).min(s.2 * pace) / throughput
            }
        } else {
            0.0
        };
        c.ticks = ticks;
        c.instance_cpu_us = c.instance_cost(c.partitions, ticks, cal);
    }
    throughput
}

#[derive(Clone, Debug, Serialize)]
pub struct Estimate {
    pub components: Vec<ComponentCost>,
    /// Predicted requests/s: `cpu_per_node · 10⁶ /` CPU-µs per request of the costliest instance.
    pub throughput: f64,
    pub machines: usize,
    /// Why no further instance was added (None for an estimate without a budget).
    pub stopped: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub description: String,
    /// Predicted requests/s after the step.
    pub throughput: f64,
    pub machines: usize,
    /// What the bounded check explored before the step was taken (None when unchecked).
    pub checked: Option<String>,
}

/// A step the search wanted but the bounded check refused, with the counterexample.
#[derive(Clone, Debug, Serialize)]
pub struct RefusedStep {
    pub description: String,
    pub counterexample: String,
}

/// The gate every step passes before the optimizer takes it: does `rewritten` refine `original`
/// (or, with `invariants_only`, keep its invariants)? Ok: what was explored; Err: the
/// counterexample. The analysis cannot run programs, so the caller (the CLI, with the runtime's
/// bounded explorer) provides it.
pub trait StepCheck {
    fn check(&self, original: &str, rewritten: &str, invariants_only: bool) -> Result<String, String>;
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub text: String,
    pub steps: Vec<Step>,
    pub estimate: Estimate,
    /// A deployment file for the runtime: `[components]` and `[partitions]`, and `[batches]` for
    /// the cost model.
    pub deployment: String,
    /// Steps the bounded check refused.
    pub refused: Vec<RefusedStep>,
    /// Why the search stopped, in words.
    pub stopped: String,
    /// What the user should know about the budget (below the original deployment, unused).
    pub notes: Vec<String>,
    /// The constants the predictions used.
    pub calibration: Calibration,
    /// Whether the plan keeps only the original's invariants (it seals, batches or arranges a
    /// grid: replies then differ in value), so a check of it must compare invariants, not outputs.
    pub invariants_only: bool,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Machine budget: the sum over components of logical nodes times instances.
    pub machines: usize,
    pub profile: Option<Profile>,
    /// Logical nodes per component from the original deployment (default 1); new components get 1.
    pub logical: BTreeMap<String, usize>,
    /// Components given sealed partitioning (sequential by class, scalable all the same).
    pub sealed: Vec<String>,
    /// Whether the search batches the costliest sequential component, and with which batch
    /// sizes. Batching spaces the log positions replies carry by the batch size
    /// (docs/compartmentalization.md), so it and every later step are checked on invariants.
    pub batch: BatchChoice,
    /// Whether the search arranges the nodes a protocol's two quorums count in a grid, and with
    /// which rows, when it pays (quorums change: checked on invariants; see `grid.rs`).
    pub grid: GridChoice,
    /// Merge stateless components into one when the machines freed raise the prediction (see
    /// `share.rs`; an equivalence, checked as one). On by default.
    pub share: bool,
    /// How the workload delivers requests (the deployment's `[workload] send_to`): a batching
    /// delivers batches the same way.
    pub delivery: rewrite::Delivery,
    /// Batchings the search took: their batch channels carry one fact per batch.
    pub batched: Vec<Batched>,
    /// Consider thrifty broadcasts (`rewrite::thrifty`) once decoupling has stopped, where one
    /// raises predicted throughput. On by default; the trade-off, said in the step: after a crash
    /// of a quorum member, answers wait for the widening timer.
    pub thrifty: bool,
    /// Requests of each input relation per client request (the workload's mix); inputs not in it
    /// (timers, operator commands) count 0. None: every input with columns counts 1.
    pub inputs: Option<BTreeMap<String, f64>>,
    pub calibration: Calibration,
}

impl Default for Options {
    /// The default search: batching, grids, thrifty broadcasts and shared proxies each
    /// considered, taken where they pay; no budget, no profile.
    fn default() -> Self {
        Options {
            machines: 0,
            profile: None,
            logical: BTreeMap::new(),
            sealed: Vec::new(),
            batch: BatchChoice::default(),
            grid: GridChoice::default(),
            share: true,
            delivery: rewrite::Delivery::default(),
            batched: Vec::new(),
            thrifty: true,
            inputs: None,
            calibration: Calibration::default(),
        }
    }
}

/// Grid rows the search tries when not told some: 2 (a phase-1 quorum of two nodes) and 3.
pub const GRID_ROWS: [usize; 2] = [2, 3];

/// Whether and with which rows the search tries grid quorums (`rewrite::grid`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GridChoice {
    /// Try each of [`GRID_ROWS`]; take the best predicted grid when it pays and passes the check.
    #[default]
    Search,
    /// Try this many rows only (`compart optimize --grid-rows R`).
    Rows(usize),
    /// Never arrange a grid (`--no-grid`).
    Off,
}

impl GridChoice {
    fn rows(self) -> Vec<usize> {
        match self {
            GridChoice::Search => GRID_ROWS.to_vec(),
            GridChoice::Rows(r) => vec![r],
            GridChoice::Off => Vec::new(),
        }
    }
}

/// Batch sizes the search tries when not told one: the prediction picks among them.
pub const BATCH_SIZES: [usize; 3] = [16, 64, 256];

/// Whether and how the search batches (`rewrite::batch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchChoice {
    /// Try each of [`BATCH_SIZES`]; take the best predicted one when it pays and passes the check.
    #[default]
    Search,
    /// Try this size only (`compart optimize --batch N`).
    Size(usize),
    /// Never batch (`--no-batch`).
    Off,
}

impl BatchChoice {
    fn sizes(self) -> Vec<usize> {
        match self {
            BatchChoice::Search => BATCH_SIZES.to_vec(),
            BatchChoice::Size(n) => vec![n],
            BatchChoice::Off => Vec::new(),
        }
    }
}

/// A batching in the program being estimated (`rewrite::batch`).
#[derive(Clone, Debug)]
pub struct Batched {
    /// The batcher component (already `partitioned by` the request key: scalable).
    pub batcher: String,
    /// The batched component's channel that receives one request per batch.
    pub channel: String,
    pub size: usize,
    /// The batcher's instances per logical node: they split each tick's requests, so they set the
    /// batch fill. The estimates take it from the instances they place.
    pub instances: usize,
    /// Requests per batch at the operating point, once an estimate has settled it from the
    /// batcher's ticks (see [`Options::batch_fill`]); None before.
    pub fill: Option<f64>,
}

impl From<&rewrite::Batcher> for Batched {
    /// One instance until an estimate places more.
    fn from(b: &rewrite::Batcher) -> Self {
        Batched { batcher: b.name.clone(), channel: b.channel.clone(), size: b.size, instances: 1, fill: None }
    }
}

impl Options {
    /// Requests per batch the cost model assumes: the batch size, or fewer when a batcher
    /// instance's tick holds fewer. A batcher instance cuts a batch from each burst of requests
    /// it receives, and bursts come at the pace of the closed loop: settled from its ticks
    /// ([`costs`]: `visits / (instances · ticks)` per request, as measured: 26 and 12 requests
    /// per batch with 7 and 12 batchers on the emulated cluster, bench/emulated.md). Before
    /// that, a first guess: the closed loop's `clients / tick_window` requests per tick, split
    /// among the batcher's logical nodes and their instances. Either way, more batcher
    /// instances, emptier batches.
    pub fn batch_fill(&self, program: &Program, b: &Batched) -> f64 {
        if let Some(fill) = b.fill {
            return fill.clamp(1.0, b.size as f64);
        }
        let cal = &self.calibration;
        let per_tick = if cal.clients > 0.0 && cal.tick_window > 0.0 { cal.clients / cal.tick_window } else { 1.0 };
        let instances = (self.logical(program, &b.batcher) * b.instances.max(1)) as f64;
        (b.size as f64).min(per_tick / instances).max(1.0)
    }

    fn is_batcher(&self, component: &str) -> bool {
        self.batched.iter().any(|b| b.batcher == component)
    }

    /// Logical nodes of `component`: as given, else its partner's (a decoupled part matches the
    /// component it came from node for node), else 1.
    fn logical(&self, program: &Program, component: &str) -> usize {
        match program.component_by_name(component) {
            Some(id) => program.logical_count(id, |name| self.logical.get(name).copied()),
            None => self.logical.get(component).copied().unwrap_or(1).max(1),
        }
    }

    fn input_rate(&self, program: &Program, r: RelationId) -> f64 {
        let rel = program.relation(r);
        match &self.inputs {
            Some(mix) => mix.get(&rel.name).copied().unwrap_or(0.0),
            None if rel.arity() > 0 => 1.0,
            None => 0.0,
        }
    }
}

/// Per client request at one logical node of a component: facts received, facts sent or
/// replied, and rule work (firings × (1 + body atoms)).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Traffic {
    pub facts_in: f64,
    pub facts_out: f64,
    pub work: f64,
    /// Of `facts_in`, those of channels without a partition column: every instance gets them.
    pub facts_in_every: f64,
    /// Ticks a request takes part in at the node: one per relation it receives for the request
    /// (the three votes of one request arrive for one tick; a request and its votes are two), its
    /// batch's facts counting as its own.
    pub visits: f64,
}

/// CPU-µs per client request at one node of each component (one instance per logical node), at
/// the operating point of that deployment, under the static frequencies or a profile.
pub fn loads(program: &Program, options: &Options) -> Vec<f64> {
    costs(program, options, &classes(program, options), &BTreeMap::new()).iter().map(|c| c.instance_cpu_us).collect()
}

/// Relations whose facts are state, not events, in a tick: tables, the built-ins, and what
/// same-tick rules derive from those alone (`voters(p) :- nodes("participant", p)`), which is
/// recomputed from the same facts every tick.
fn state_relations(program: &Program) -> Vec<bool> {
    let mut state: Vec<bool> = program
        .relation_ids()
        .map(|r| matches!(program.relation(r).kind, RelationKind::Table | RelationKind::Builtin))
        .collect();
    loop {
        let mut changed = false;
        for r in program.relation_ids() {
            if state[r.index()] || program.relation(r).kind != RelationKind::Scratch {
                continue;
            }
            let mut rules = program.rule_ids().filter(|&id| program.rule(id).head.relation_id == Some(r)).peekable();
            if rules.peek().is_none() {
                continue;
            }
            let derived_from_state = rules.all(|id| {
                let rule = program.rule(id);
                matches!(rule.kind, RuleKind::SameTick | RuleKind::Fact)
                    && rule.atoms().filter(|a| !a.negated).all(|a| a.relation_id.is_some_and(|b| state[b.index()]))
            });
            if derived_from_state {
                state[r.index()] = true;
                changed = true;
            }
        }
        if !changed {
            return state;
        }
    }
}

/// Per logical node of each component (indexed by `ComponentId`): what it receives, sends and
/// derives per client request.
pub fn traffic(program: &Program, options: &Options) -> Vec<Traffic> {
    traffic_at(program, options, None)
}

/// [`traffic`], with each component's ticks per client request at one logical node when known: an
/// aggregate with no group (`heard_max(max(b))`) derives once per tick, not once per input.
fn traffic_at(program: &Program, options: &Options, ticks: Option<&[f64]>) -> Vec<Traffic> {
    let fanout = |c: &str| options.logical(program, c) as f64;
    // Nodes of `target` one firing of a send to them reaches: every one, or a quorum for a
    // thrifty broadcast (`rewrite::thrifty`), each node then getting that share of the messages.
    let destinations = |rule: &crate::model::Rule, target: &str| {
        let n = options.logical(program, target);
        rewrite::quorum_destinations(program, rule, n).unwrap_or(n) as f64
    };
    let state = state_relations(program);
    let mut freq = vec![0.0f64; program.relations.len()];
    for r in program.relation_ids() {
        if program.relation(r).kind == RelationKind::Input {
            freq[r.index()] = options.input_rate(program, r);
        }
    }
    let events = |rule: &crate::model::Rule| -> Vec<RelationId> {
        rule.atoms().filter(|a| !a.negated).filter_map(|a| a.relation_id).filter(|r| !state[r.index()]).collect()
    };
    let selectivity = constant_selectivity(program, &state);
    let once = once_per_key(program);
    let held = held_rows(program, &state);
    let per_tick: Vec<bool> = program
        .rules
        .iter()
        .map(|rule| {
            rule.head.args.iter().any(|a| matches!(a, HeadArg::Aggregate(_)))
                && rule.head.args.iter().all(|a| match a {
                    HeadArg::Aggregate(_) => true,
                    HeadArg::Expr(e) => e.as_var().is_none() && !matches!(e.kind, ExprKind::SelfAddr),
                })
        })
        .collect();
    // The share of requests a node of the component takes part in: at most one per request.
    let reach = |freq: &[f64], c: ComponentId| {
        program
            .component(c)
            .relations
            .iter()
            .filter(|&&r| matches!(program.relation(r).kind, RelationKind::Input | RelationKind::Channel))
            .map(|&r| freq[r.index()].min(1.0))
            .fold(0.0, f64::max)
    };
    // A rule runs when one of its per-tick triggers (inputs, channels, scratch) has facts, at most
    // as often as the rarest of them; rules over state alone run when the state changes, as
    // often as the rarest state that changes (a join of `pending` and a vote count completes
    // once per request, not once per vote).
    let fires_unguarded = |freq: &[f64], id: RuleId| {
        let rule = program.rule(id);
        let events = events(rule);
        if events.is_empty() {
            let changing: Vec<f64> = rule
                .atoms()
                .filter(|a| !a.negated)
                .filter_map(|a| a.relation_id)
                .map(|r| freq[r.index()])
                .filter(|f| *f > 0.0)
                .collect();
            // State that changes once per tick (`next_slot` after a per-tick count) changes in
            // every busy tick: it is not what completes a request, unless nothing else changes.
            let tick = ticks.map_or(0.0, |t| t[rule.component.index()]);
            let per_request: Vec<f64> = changing.iter().copied().filter(|f| *f > tick * (1.0 + 1e-9)).collect();
            let pool = if per_request.is_empty() { changing } else { per_request };
            let rarest = pool.into_iter().fold(f64::INFINITY, f64::min);
            if rarest.is_finite() {
                rarest
            } else {
                0.0
            }
        } else {
            // Likewise a per-tick trigger (`promised(max(b))`) is there in every busy tick.
            let tick = ticks.map_or(0.0, |t| t[rule.component.index()]);
            let all: Vec<f64> = events.into_iter().map(|r| freq[r.index()]).collect();
            let per_request: Vec<f64> = all.iter().copied().filter(|f| *f > tick * (1.0 + 1e-9)).collect();
            let pool = if per_request.is_empty() { all } else { per_request };
            pool.into_iter().fold(f64::INFINITY, f64::min) * selectivity[id.index()]
        }
    };
    // A rule its own keyed log guards fires at most once per key, taken as once per request.
    // An aggregate with no group derives one fact per tick at most.
    let fires = |freq: &[f64], id: RuleId| {
        let c = program.rule(id).component;
        let mut f = fires_unguarded(freq, id);
        if let Some(h) = held[id.index()] {
            f = f.max(freq[h.index()]);
        }
        if once[id.index()] {
            f = f.min(reach(freq, c));
        }
        match ticks {
            Some(ticks) if per_tick[id.index()] => f.min(ticks[c.index()]),
            _ => f,
        }
    };
    // A profile's facts of a rule per request replace its static firings; a send's facts are its
    // messages, one per destination.
    // Rules left unchanged by a batching keep their text but fire per batch, not per request as
    // in a profile of the unbatched program: with batching, static frequencies outside batchers.
    let measured = |id: RuleId| {
        let rule = program.rule(id);
        if !options.batched.is_empty() && !options.is_batcher(&program.component(rule.component).name) {
            return None;
        }
        let facts = options.profile.as_ref()?.rule_facts.get(&Profile::key(rule)).copied()?;
        let per_firing = match (rule.kind, broadcast_target(program, rule)) {
            (RuleKind::Async, Some(target)) => destinations(rule, &target),
            _ => 1.0,
        };
        Some(facts / per_firing)
    };
    // How many nodes of its component hold a relation's facts of one request: 1 for inputs and
    // replies, every node for a broadcast. A message is sent by each node that holds its cause.
    let mut spread = vec![1.0f64; program.relations.len()];
    let holders =
        |spread: &[f64], rule: &crate::model::Rule| events(rule).iter().map(|r| spread[r.index()]).fold(1.0, f64::max);
    // The same frequencies with batches undivided: the facts a request takes part in, one batch
    // fact for each request it holds. Its visits are counted in these: a request in a batch waits
    // for each tick of its batch's.
    let mut unbatched = freq.clone();
    // Frequencies settle in a few rounds (a message path is short).
    for _ in 0..12 {
        let mut next = freq.clone();
        let mut next_unbatched = unbatched.clone();
        let mut next_spread = vec![1.0f64; program.relations.len()];
        for r in program.relation_ids() {
            if program.relation(r).kind != RelationKind::Input {
                next[r.index()] = 0.0;
                next_unbatched[r.index()] = 0.0;
            }
        }
        for id in program.rule_ids() {
            let rule = program.rule(id);
            let Some(head) = rule.head.relation_id else { continue };
            if matches!(rule.kind, RuleKind::Fact | RuleKind::Delete) {
                continue;
            }
            let senders = holders(&spread, rule);
            let (per_firing, held_by) = match (rule.kind, broadcast_target(program, rule)) {
                (RuleKind::Async, Some(target)) => {
                    let reached = destinations(rule, &target);
                    (senders * reached / fanout(&target).max(1.0), reached)
                }
                (RuleKind::Async, None) => (senders, 1.0),
                _ => (1.0, senders),
            };
            let mut delivered = measured(id).unwrap_or_else(|| fires(&freq, id)) * per_firing;
            // A batch channel carries one fact per batch: the batched component's per-request
            // work, and everything downstream of it, divides by the batch.
            if let Some(b) = options.batched.iter().find(|b| b.channel == rule.head.relation) {
                delivered /= options.batch_fill(program, b);
            }
            let per_request = measured(id).unwrap_or_else(|| fires(&unbatched, id)) * per_firing;
            // Max, not sum: a union of paths is at least its busiest one, and loops stay bounded.
            next[head.index()] = next[head.index()].max(delivered);
            next_unbatched[head.index()] = next_unbatched[head.index()].max(per_request);
            next_spread[head.index()] = next_spread[head.index()].max(held_by);
        }
        freq = next;
        unbatched = next_unbatched;
        spread = next_spread;
    }
    let mut out = vec![Traffic::default(); program.components.len()];
    let sends = |rule: &crate::model::Rule| match (rule.kind, broadcast_target(program, rule)) {
        (RuleKind::Async, Some(target)) => destinations(rule, &target),
        (RuleKind::Async, None) => 1.0,
        _ => 0.0,
    };
    for r in program.relation_ids() {
        let rel = program.relation(r);
        let Some(c) = rel.component else { continue };
        match rel.kind {
            RelationKind::Input | RelationKind::Channel => {
                out[c.index()].facts_in += freq[r.index()];
                if program.component(c).placement.is_some() && program.partition_column(r).is_none() {
                    out[c.index()].facts_in_every += freq[r.index()];
                }
                out[c.index()].visits += unbatched[r.index()].min(1.0);
            }
            RelationKind::Output => out[c.index()].facts_out += freq[r.index()],
            _ => {}
        }
    }
    for id in program.rule_ids() {
        let rule = program.rule(id);
        if rule.kind == RuleKind::Fact {
            continue;
        }
        let firings = measured(id).unwrap_or_else(|| fires(&freq, id));
        let sends = sends(rule);
        // Facts derived: one per destination for a send (as the run report counts them).
        let derived = firings * sends.max(1.0);
        let t = &mut out[rule.component.index()];
        t.work += derived * (1.0 + rule.atoms().count() as f64);
        // The batcher's send derives its batch fact once per request of the batch (its body
        // matches each), but the copies are one fact: one message per batch and destination.
        let per_message = options.batched.iter().find(|b| b.channel == rule.head.relation);
        t.facts_out += firings * sends / per_message.map_or(1.0, |b| options.batch_fill(program, b));
    }
    out
}

/// Per rule, the share of its trigger's facts that pass its constant filters: an event atom with
/// a literal in a column (`vote(txn, _, false)`) takes one of the values the program's rules tell
/// apart there (at least two: the literal and the rest), uniformly, as a query planner would
/// without statistics. So alternative branches (a commit path on `true` votes, an abort path on
/// `false` ones) share their trigger's frequency instead of each taking all of it.
fn constant_selectivity(program: &Program, state: &[bool]) -> Vec<f64> {
    let literal = |e: &crate::model::Expr| match &e.kind {
        ExprKind::Int(v) => Some(v.to_string()),
        ExprKind::Str(v) => Some(format!("{v:?}")),
        ExprKind::Bool(v) => Some(v.to_string()),
        _ => None,
    };
    let mut values: HashMap<(RelationId, usize), Vec<String>> = HashMap::new();
    for rule in &program.rules {
        for atom in rule.atoms().filter(|a| !a.negated) {
            let Some(r) = atom.relation_id else { continue };
            for (col, arg) in atom.args.iter().enumerate() {
                if let Some(v) = literal(arg) {
                    let seen = values.entry((r, col)).or_default();
                    if !seen.contains(&v) {
                        seen.push(v);
                    }
                }
            }
        }
    }
    program
        .rules
        .iter()
        .map(|rule| {
            let mut share = 1.0;
            for atom in rule.atoms().filter(|a| !a.negated) {
                let Some(r) = atom.relation_id.filter(|r| !state[r.index()]) else { continue };
                for (col, arg) in atom.args.iter().enumerate() {
                    if literal(arg).is_some() {
                        share /= values[&(r, col)].len().max(2) as f64;
                    }
                }
            }
            share
        })
        .collect()
}

/// Per rule: the table whose rows its event consumes, when one does: with `delete held(b, ..) :-
/// held(b, ..), e(b, ..)`, each row waits for the event that matches it and goes with it, so a
/// rule joining `e` with `held` matches each row once. It fires once per row held, not once per
/// event: a batch's reply unbatched into one reply per request it held, and each of those rows
/// deleted (`rewrite::batch`), is work per request, though the reply channel carries one fact
/// per batch.
fn held_rows(program: &Program, state: &[bool]) -> Vec<Option<RelationId>> {
    let positive = |rule: &crate::model::Rule| -> Vec<RelationId> {
        rule.atoms().filter(|a| !a.negated).filter_map(|a| a.relation_id).collect()
    };
    let deletes = |h: RelationId| {
        program.rules.iter().filter(move |r| r.kind == RuleKind::Delete && r.head.relation_id == Some(h))
    };
    // (held table, consuming event) of each delete rule of that shape, when it is the table's only
    // one: rows another rule may delete first (a thrifty broadcast's unanswered messages, gone
    // when a quorum answers, else on the widening timer) do not all wait for the event.
    let consumed: Vec<(RelationId, RelationId)> = program
        .rules
        .iter()
        .filter(|r| r.kind == RuleKind::Delete)
        .filter_map(|r| {
            let h = r.head.relation_id.filter(|h| program.relation(*h).kind == RelationKind::Table)?;
            if deletes(h).count() > 1 {
                return None;
            }
            let body = positive(r);
            let event = body.iter().copied().find(|e| !state[e.index()])?;
            body.contains(&h).then_some((h, event))
        })
        .collect();
    program
        .rules
        .iter()
        .map(|rule| {
            let body = positive(rule);
            consumed.iter().find(|(h, e)| body.contains(h) && body.contains(e)).map(|&(h, _)| h)
        })
        .collect()
}

/// Per rule: whether a keyed table that its own head feeds guards it (`decide(txn, ..) :- ..,
/// !decision(txn, _)` with `decision(txn, o) :+ decide(txn, o)` and `key(txn)`): the first
/// decision per key wins, so the rule derives once per key, whichever of its alternatives
/// (commit on the last yes vote, abort on a no) fires.
fn once_per_key(program: &Program) -> Vec<bool> {
    program
        .rules
        .iter()
        .map(|rule| {
            let Some(head) = rule.head.relation_id else { return false };
            rule.atoms().filter(|a| a.negated).any(|a| {
                let Some(t) = a.relation_id else { return false };
                let table = program.relation(t);
                let keyed = table.kind == RelationKind::Table
                    && table.key.as_ref().is_some_and(|key| {
                        !key.is_empty() && key.iter().all(|&col| a.args.get(col).is_some_and(|e| e.as_var().is_some()))
                    });
                keyed
                    && program.rules.iter().any(|r| {
                        r.kind == RuleKind::NextTick
                            && r.head.relation_id == Some(t)
                            && r.atoms().any(|b| !b.negated && b.relation_id == Some(head))
                    })
            })
        })
        .collect()
}

/// A forwarding rule `r@d(x, y[, self]) :~ q(x, y), nodes(..)`: decoupling it only adds a hop.
fn is_relay(rule: &crate::model::Rule) -> bool {
    let atoms: Vec<_> = rule
        .atoms()
        .filter(|a| a.relation != crate::model::NODES_RELATION && a.relation != crate::model::PARTNER_RELATION)
        .collect();
    let [atom] = atoms[..] else { return false };
    let args: Vec<Option<&str>> = rule
        .head
        .args
        .iter()
        .filter_map(|a| match a {
            HeadArg::Expr(e) if !matches!(e.kind, ExprKind::SelfAddr) => Some(e.as_var()),
            _ => None,
        })
        .collect();
    let body: Vec<Option<&str>> = atom.args.iter().map(|e| e.as_var()).collect();
    args == body
}

/// `X` when the rule sends to every node of `nodes("X", dest)` (not to one `partner`), directly
/// or through a helper that holds X's addresses (`voters(p) :- nodes("X", p)`).
fn broadcast_target(program: &Program, rule: &crate::model::Rule) -> Option<String> {
    match rule.addressee() {
        Some((component, None)) => return Some(component.to_string()),
        Some((_, Some(_))) => return None,
        None => {}
    }
    let dest = rule.head.destination.as_ref()?.as_var()?;
    rule.atoms().filter(|a| !a.negated && a.relation != crate::model::PARTNER_RELATION).find_map(|a| {
        let col = a.args.iter().position(|e| e.as_var() == Some(dest))?;
        nodes_column(program, a.relation_id?, col, 4)
    })
}

/// The component whose every address column `col` of `rel` holds, when each rule deriving `rel`
/// binds that column from `nodes("X", _)` (directly or through another such helper).
fn nodes_column(program: &Program, rel: RelationId, col: usize, depth: usize) -> Option<String> {
    if depth == 0
        || program.relation(rel).kind != RelationKind::Scratch && program.relation(rel).kind != RelationKind::Table
    {
        return None;
    }
    let mut found: Option<String> = None;
    for id in program.rule_ids() {
        let rule = program.rule(id);
        if rule.head.relation_id != Some(rel) || rule.kind == RuleKind::Delete {
            continue;
        }
        let var = match rule.head.args.get(col) {
            Some(HeadArg::Expr(e)) => e.as_var()?,
            _ => return None,
        };
        let component = rule.atoms().filter(|a| !a.negated).find_map(|a| {
            let at = a.args.iter().position(|e| e.as_var() == Some(var))?;
            if a.relation == crate::model::NODES_RELATION {
                match (at, a.args.first().map(|e| &e.kind)) {
                    (1, Some(ExprKind::Str(name))) => Some(name.clone()),
                    _ => None,
                }
            } else {
                nodes_column(program, a.relation_id?, at, depth - 1)
            }
        })?;
        match &found {
            Some(f) if *f != component => return None,
            _ => found = Some(component),
        }
    }
    found
}

fn finish_estimate(mut components: Vec<ComponentCost>, cal: &Calibration, stopped: Option<String>) -> Estimate {
    let throughput = settle(&mut components, cal);
    let machines = components.iter().map(|c| c.logical * c.partitions).sum();
    Estimate { components, throughput, machines, stopped }
}

/// Every component of `program` with its traffic and class, `partitions` instances per logical
/// node (1 for the rest), settled. Traffic and ticks depend on each other (an aggregate with no
/// group fires once per tick; ticks follow the load): a few rounds of each settle them.
fn costs(
    program: &Program,
    options: &Options,
    classes: &[Class],
    partitions: &BTreeMap<String, usize>,
) -> Vec<ComponentCost> {
    // A batcher's instances, where placed, set its batches' fill; so do its ticks, settled below.
    let mut options = std::borrow::Cow::Borrowed(options);
    if options.batched.iter().any(|b| partitions.contains_key(&b.batcher)) {
        for b in &mut options.to_mut().batched {
            if let Some(&k) = partitions.get(&b.batcher) {
                b.instances = k.max(1);
            }
        }
    }
    let mut components = costs_at(program, &options, classes, None);
    let mut last: Vec<f64> = Vec::new();
    let rounds = if options.batched.is_empty() { 4 } else { 12 };
    for _ in 0..rounds {
        for c in &mut components {
            c.set_partitions(partitions.get(&c.name).copied().unwrap_or(1).max(1));
        }
        settle(&mut components, &options.calibration);
        let ticks: Vec<f64> = components.iter().map(|c| c.ticks * c.partitions as f64).collect();
        // Only a batching needs its own copy of the options (its fill changes).
        let fills_settled = options.batched.is_empty() || settle_fills(program, options.to_mut(), &components);
        let settled = fills_settled
            && ticks.len() == last.len()
            && ticks.iter().zip(&last).all(|(a, b)| (a - b).abs() <= 1e-3 * b.abs());
        if settled {
            return components;
        }
        last = ticks.clone();
        let next = costs_at(program, &options, classes, Some(&ticks));
        for (c, n) in components.iter_mut().zip(next) {
            (c.facts_in, c.facts_out, c.work, c.visits) = (n.facts_in, n.facts_out, n.work, n.visits);
            c.facts_in_every = n.facts_in_every;
        }
    }
    settle(&mut components, &options.calibration);
    components
}

/// Each batching's fill from its batcher's settled ticks: an instance cuts one batch from each
/// burst of requests, and a request takes part in `visits` of its ticks (its arrival, its batch's
/// reply), so a batch holds `visits / (instances · ticks)` requests, `ticks` per client request
/// of one instance. Moved half way (geometrically) each round, as fill and ticks depend on each
/// other. Whether every fill had settled.
fn settle_fills(program: &Program, options: &mut Options, components: &[ComponentCost]) -> bool {
    let mut settled = true;
    for i in 0..options.batched.len() {
        let b = &options.batched[i];
        let Some(c) = components.iter().find(|c| c.name == b.batcher) else { continue };
        let instances = (c.logical * c.partitions).max(1) as f64;
        if c.ticks <= 0.0 || c.visits <= 0.0 {
            continue;
        }
        let target = (c.visits / (instances * c.ticks)).clamp(1.0, b.size as f64);
        let current = options.batch_fill(program, b);
        let next = (current * target).sqrt();
        settled &= (next - current).abs() <= 1e-3 * current;
        options.batched[i].fill = Some(next);
    }
    settled
}

/// Each component's class, as the estimate shows it, and whether it can take more instances.
struct Class {
    label: String,
    scalable: bool,
}

/// The scaling analysis behind each component's [`Class`]: the costliest part of costing a
/// program, and the same for every deployment of it, so computed once per estimate.
fn classes(program: &Program, options: &Options) -> Vec<Class> {
    let ctx = Context::new(program);
    program
        .component_ids()
        .map(|id| {
            let c = program.component(id);
            let verdict = ctx.verdict(id, &c.rules);
            let sealed = options.sealed.contains(&c.name) && c.placement.is_some();
            let batcher = options.is_batcher(&c.name) && c.placement.is_some();
            let label = match &c.placement {
                Some(p) if batcher => {
                    format!("batcher, {}", p.keys.iter().map(|k| k.column.as_str()).collect::<Vec<_>>().join("/"))
                }
                Some(p) if sealed => {
                    format!("sealed, {}", p.keys.iter().map(|k| k.column.as_str()).collect::<Vec<_>>().join("/"))
                }
                _ => verdict.class.label(program),
            };
            Class { label, scalable: sealed || batcher || !matches!(verdict.class, ScalingClass::Sequential) }
        })
        .collect()
}

fn costs_at(program: &Program, options: &Options, classes: &[Class], ticks: Option<&[f64]>) -> Vec<ComponentCost> {
    let traffic = traffic_at(program, options, ticks);
    program
        .component_ids()
        .map(|id| {
            let c = program.component(id);
            let class = &classes[id.index()];
            let t = traffic[id.index()];
            ComponentCost {
                name: c.name.clone(),
                class: class.label.clone(),
                facts_in: t.facts_in,
                facts_in_every: t.facts_in_every,
                facts_out: t.facts_out,
                work: t.work,
                visits: t.visits,
                ticks: 0.0,
                load: 0.0,
                instance_cpu_us: 0.0,
                logical: options.logical(program, &c.name),
                partitions: 1,
                scalable: class.scalable,
            }
        })
        .collect()
}

/// The prediction for `program` as deployed: instances per logical node as in `partitions`
/// (`[partitions]` of its deployment file; 1 for the rest), no search. What the optimizer
/// predicts for a plan it wrote, given the same options.
pub fn estimate_deployed(program: &Program, options: &Options, partitions: &BTreeMap<String, usize>) -> Estimate {
    let classes = classes(program, options);
    let loads: Vec<f64> =
        costs(program, options, &classes, &BTreeMap::new()).iter().map(|c| c.instance_cpu_us).collect();
    deployed(program, options, &classes, partitions, &loads, None)
}

/// [`estimate_deployed`], given each component's unpartitioned cost and why a search stopped.
fn deployed(
    program: &Program,
    options: &Options,
    classes: &[Class],
    partitions: &BTreeMap<String, usize>,
    loads: &[f64],
    stopped: Option<String>,
) -> Estimate {
    let mut components = costs(program, options, classes, partitions);
    for (c, load) in components.iter_mut().zip(loads) {
        c.load = *load;
    }
    finish_estimate(components, &options.calibration, stopped)
}

/// Spread the budget: every logical node once, then each further instance (one more per logical
/// node of the component) to the costliest instance while that lowers its cost by 1% or more;
/// then give back instances the throughput does not need (a tie broken one way, the budget run
/// out before the other).
///
/// A batcher's instance count is not added greedily: it sets the batch fill
/// ([`Options::batch_fill`]), so the batched component's cost rises with it. Each count is
/// tried with the whole estimate around it (one batcher after the other), and the best kept; a
/// larger count only when it raises the prediction by 1% or more.
pub fn estimate(program: &Program, options: &Options) -> Estimate {
    let classes = classes(program, options);
    // Unpartitioned costs (the batchers' too, one instance each): the same for every count tried.
    let mut unpartitioned = costs(program, options, &classes, &BTreeMap::new());
    settle(&mut unpartitioned, &options.calibration);
    let loads: Vec<f64> = unpartitioned.iter().map(|c| c.instance_cpu_us).collect();
    let spread = |fixed: &BTreeMap<String, usize>| spread(program, options, &classes, fixed, &loads);
    let mut fixed: BTreeMap<String, usize> = BTreeMap::new();
    if options.machines == 0 || options.batched.is_empty() {
        return spread(&fixed);
    }
    for b in &options.batched {
        let logical = options.logical(program, &b.batcher);
        let mut best: Option<(usize, f64)> = None;
        for k in (1..).take_while(|k| k * logical <= options.machines) {
            fixed.insert(b.batcher.clone(), k);
            let est = spread(&fixed);
            if est.machines > options.machines {
                break;
            }
            match best {
                Some((_, t)) if est.throughput <= t * 1.01 => {}
                _ => best = Some((k, est.throughput)),
            }
        }
        fixed.insert(b.batcher.clone(), best.map_or(1, |(k, _)| k));
    }
    spread(&fixed)
}

/// [`estimate`] with the batchers' instances fixed as in `fixed`, given each component's
/// unpartitioned cost (`loads`).
fn spread(
    program: &Program,
    options: &Options,
    classes: &[Class],
    fixed: &BTreeMap<String, usize>,
    loads: &[f64],
) -> Estimate {
    let cal = &options.calibration;
    let mut components = costs(program, options, classes, fixed);
    let mut throughput = settle(&mut components, cal);
    for (c, load) in components.iter_mut().zip(loads) {
        c.load = *load;
    }
    let mut used: usize = components.iter().map(|c| c.logical * c.partitions).sum();
    if options.machines == 0 {
        return finish_estimate(components, cal, None);
    }
    let stopped = loop {
        let Some(best) = (0..components.len())
            .max_by(|&a, &b| components[a].instance_cpu_us.total_cmp(&components[b].instance_cpu_us))
        else {
            break "the program has no components".to_string();
        };
        let c = &components[best];
        if !c.scalable {
            break format!("`{}` ({}) is the costliest instance and cannot be split", c.name, c.class);
        }
        if options.is_batcher(&c.name) {
            break format!(
                "`{}` ({}) is the costliest instance; its {} instance(s) are the count that predicts best \
                 (more would empty its batches)",
                c.name, c.class, c.partitions
            );
        }
        if used + c.logical > options.machines {
            break format!("the budget is spent: another instance of `{}` needs {} machine(s)", c.name, c.logical);
        }
        let mut next = components.clone();
        next[best].set_partitions(c.partitions + 1);
        let more = settle(&mut next, cal);
        if more < throughput * 1.01 {
            break format!(
                "another instance of `{}` would raise predicted throughput by less than 1% (its ticks do not \
                 shrink with its share, and the other components' ticks pace it)",
                c.name
            );
        }
        used += c.logical;
        components = next;
        throughput = more;
    };
    // Give back instances the throughput does not need (a tie broken one way, the budget run out
    // before the other): each removal may cost at most half a percent of the throughput reached.
    let reached = throughput;
    loop {
        let spare = (0..components.len())
            .filter(|&i| components[i].partitions > 1 && !options.is_batcher(&components[i].name))
            .find_map(|i| {
                let mut fewer = components.clone();
                fewer[i].set_partitions(components[i].partitions - 1);
                (settle(&mut fewer, cal) >= reached * 0.995).then_some(fewer)
            });
        let Some(fewer) = spare else { break };
        components = fewer;
    }
    // The instances chosen, costed with the traffic their own ticks give.
    let partitions = components.iter().map(|c| (c.name.clone(), c.partitions)).collect();
    deployed(program, options, classes, &partitions, loads, Some(stopped))
}

/// Candidate rule sets to decouple from one component: each asynchronous send alone (a
/// broadcaster), and for each rule the part downstream of it, closed so that every relation it
/// derives moves with all its derivations and deletions, and taking along upstream relations
/// that only it reads.
pub fn candidates(program: &Program, component: ComponentId) -> Vec<Vec<RuleId>> {
    let comp = program.component(component);
    let mut out: Vec<Vec<RuleId>> = Vec::new();
    let head_of = |r: RuleId| program.rule(r).head.relation_id;
    let reads = |r: RuleId, rel| program.rule(r).atoms().any(|a| a.relation_id == Some(rel));
    for &seed in &comp.rules {
        let rule = program.rule(seed);
        if rule.kind == RuleKind::Fact || (rule.kind == RuleKind::Async && is_relay(rule)) {
            continue;
        }
        if rule.kind == RuleKind::Async {
            out.push(vec![seed]);
        }
        let mut set = vec![seed];
        loop {
            let before = set.len();
            let derived: Vec<_> = set.iter().filter_map(|&r| head_of(r)).collect();
            for &r in &comp.rules {
                if set.contains(&r) {
                    continue;
                }
                let joins = head_of(r).is_some_and(|h| derived.contains(&h))
                    || derived.iter().any(|&d| reads(r, d) && program.relation(d).component == Some(component));
                if joins {
                    set.push(r);
                }
            }
            // Upstream relations read only inside the set come along.
            for &r in &comp.rules {
                let Some(h) = head_of(r) else { continue };
                if set.contains(&r)
                    || program.rule(r).kind == RuleKind::Fact
                    || program.relation(h).component != Some(component)
                {
                    continue;
                }
                let read_in = set.iter().any(|&s| reads(s, h));
                let read_out =
                    comp.rules.iter().any(|&o| !set.contains(&o) && o != r && reads(o, h) && head_of(o) != Some(h));
                if read_in && !read_out && program.rule(r).kind != RuleKind::Async {
                    set.push(r);
                }
            }
            if set.len() == before {
                break;
            }
        }
        // The seed stays first: it names the new component.
        let mut key = set.clone();
        key.sort();
        let duplicate = out.iter().any(|o| {
            let mut k = o.clone();
            k.sort();
            k == key
        });
        if set.len() < comp.rules.len() && !duplicate {
            out.push(set);
        }
    }
    out
}

/// Greedy search: at each step, try every candidate decoupling of the bottleneck component and
/// keep the one that most raises predicted throughput for the budget; stop when nothing helps.
/// Then partition every component that got more than one instance per logical node.
pub fn optimize(analysis: &Analysis, options: &Options) -> Plan {
    optimize_checked(analysis, options, None)
}

/// [`optimize`], with every step checked by `check` against the original program first: a step
/// with a counterexample is not taken (the next best candidate is tried) and is listed in
/// `Plan::refused`.
pub fn optimize_checked(analysis: &Analysis, options: &Options, check: Option<&dyn StepCheck>) -> Plan {
    let original = analysis.text();
    let cal = options.calibration.clone();
    let mut refused: Vec<RefusedStep> = Vec::new();
    // Sealed partitioning is checked on invariants only, and so is everything after it.
    let mut invariants_only = false;
    let mut gate = |candidate: &str, description: &str, invariants_only: bool| -> Result<Option<String>, ()> {
        let Some(check) = check else { return Ok(None) };
        match check.check(original, candidate, invariants_only) {
            Ok(summary) => Ok(Some(summary)),
            Err(counterexample) => {
                refused.push(RefusedStep { description: description.to_string(), counterexample });
                Err(())
            }
        }
    };
    let mut text = analysis.text().to_string();
    let unscaled = Options { machines: 0, ..options.clone() };
    let baseline = estimate(&analysis.program, &unscaled);
    let mut notes = Vec::new();
    if options.machines < baseline.machines {
        notes.push(format!(
            "--machines {} is below the original deployment's {} machines (one per logical node): nothing can \
             be added, so the plan is the original program",
            options.machines, baseline.machines
        ));
    }
    let mut current = baseline.clone();
    let mut steps = vec![Step {
        description: "original program, one instance per logical node".into(),
        throughput: baseline.throughput,
        machines: baseline.machines,
        checked: None,
    }];
    // Batching of the costliest sequential component that a batching pays for, first: after
    // decoupling, the reply path it needs may have left the component. Each batch size is
    // estimated with its best batcher count, and the best predicted one is checked (a larger
    // size only when it predicts 1% more: it spaces positions further).
    let mut options = options.clone();
    let sizes = options.batch.sizes();
    // Why each sequential component could not be batched: said when a size was forced.
    let mut not_batched: Vec<String> = Vec::new();
    let mut batched = false;
    if !sizes.is_empty() {
        let a = crate::analyze(&text);
        let scaled = estimate(&a.program, &options);
        let mut sequential: Vec<&ComponentCost> =
            scaled.components.iter().filter(|c| !c.scalable && c.load > 0.0).collect();
        sequential.sort_by(|x, y| y.instance_cpu_us.total_cmp(&x.instance_cpu_us));
        for name in sequential.iter().map(|c| c.name.clone()) {
            // The best predicted size; sizes ascend, and a larger one replaces a smaller only
            // when it predicts 1% more.
            let mut best: Option<(usize, String, Options, f64)> = None;
            for &size in &sizes {
                let result = match rewrite::batch(&a, &name, size, options.delivery) {
                    Ok(result) => result,
                    Err(refusal) => {
                        not_batched.push(format!("`{name}`: {}", refusal.reason));
                        break;
                    }
                };
                let Some(batcher) = &result.batcher else { continue };
                let next = crate::analyze(&result.new_text);
                let mut with = options.clone();
                with.batched.push(Batched::from(batcher));
                let est = estimate(&next.program, &with);
                let pays = est.throughput > scaled.throughput * 1.01 && est.machines <= options.machines;
                if pays && best.as_ref().is_none_or(|b| est.throughput > b.3 * 1.01) {
                    best = Some((size, result.new_text, with, est.throughput));
                }
            }
            let Some((size, new_text, with, _)) = best else { continue };
            let description = format!(
                "batching of `{name}` (size {size}): batchers in front, one request per batch of up to {size}, \
                 replies unbatched; replies' log positions are spaced by {size}, so not an equivalence: checked \
                 on invariants"
            );
            // The sizes differ only in N: when the best is refused, the others are not tried.
            let Ok(checked) = gate(&new_text, &description, true) else { continue };
            invariants_only = true;
            text = new_text;
            options = with;
            let next = crate::analyze(&text);
            current = estimate(&next.program, &Options { machines: 0, ..options.clone() });
            steps.push(Step { description, throughput: current.throughput, machines: current.machines, checked });
            batched = true;
            break;
        }
    }
    if let (BatchChoice::Size(size), false) = (options.batch, batched) {
        let why = if not_batched.is_empty() {
            "it does not raise the prediction by 1% within the budget, or the bounded check refused it".to_string()
        } else {
            not_batched.join("; ")
        };
        notes.push(format!("no component was batched with size {size}: {why}"));
    }
    let unscaled = Options { machines: 0, ..options.clone() };
    let mut taken: Vec<String> = Vec::new();
    let mut stopped = None;
    for _ in 0..8 {
        let a = crate::analyze(&text);
        let scaled = estimate(&a.program, &options);
        let bottleneck = scaled
            .components
            .iter()
            .max_by(|x, y| x.instance_cpu_us.total_cmp(&y.instance_cpu_us))
            .and_then(|c| a.program.component_by_name(&c.name));
        // Every candidate that raises the prediction within the budget, best first; the first
        // that passes the check is taken.
        let mut better: Vec<(String, Estimate, String)> = Vec::new();
        if let Some(cid) = bottleneck {
            let comp_name = a.program.component(cid).name.clone();
            for set in candidates(&a.program, cid) {
                let name = part_name(&a.program, &set, &taken);
                let Ok(result) = rewrite::decouple(&a, &comp_name, &set, &name) else { continue };
                let next = crate::analyze(&result.new_text);
                let est = estimate(&next.program, &options);
                if est.throughput > scaled.throughput * 1.01 && est.machines <= options.machines {
                    let mut heads: Vec<String> = Vec::new();
                    for &r in &set {
                        let head = &a.program.rule(r).head.relation;
                        if !heads.contains(head) {
                            heads.push(head.clone());
                        }
                    }
                    let kind = result.explanation[0].split(':').next().unwrap_or("decoupling").to_string();
                    let description = format!("{kind}: move {} from `{comp_name}` into `{name}`", heads.join(", "));
                    better.push((result.new_text, est, description));
                }
            }
        }
        better.sort_by(|x, y| y.1.throughput.total_cmp(&x.1.throughput));
        let tried = better.len();
        let mut chosen = None;
        for (new_text, _, description) in better {
            if let Ok(checked) = gate(&new_text, &description, invariants_only) {
                chosen = Some((new_text, description, checked));
                break;
            }
        }
        let Some((new_text, description, checked)) = chosen else {
            let name = bottleneck.map_or(String::new(), |c| a.program.component(c).name.clone());
            stopped = Some(if tried > 0 {
                format!("every decoupling of `{name}` that would pay was refused by the bounded check")
            } else {
                format!("no decoupling of the costliest component `{name}` raises throughput by 1% within the budget")
            });
            break;
        };
        text = new_text;
        let a = crate::analyze(&text);
        taken.extend(a.program.components.iter().map(|c| c.name.clone()));
        current = estimate(&a.program, &unscaled);
        steps.push(Step { description, throughput: current.throughput, machines: current.machines, checked });
    }
    // Shared proxies, while a merge frees machines that pay (each merge removes a component).
    let mut options = options.clone();
    while options.share {
        let Some(shared) = share::share_step(&text, &options, invariants_only, &mut gate) else { break };
        text = shared.text;
        options = *shared.options;
        current = estimate(&crate::analyze(&text).program, &Options { machines: 0, ..options.clone() });
        let checked = shared.checked;
        // The search stopped on the program before the merge: say so where it names a part.
        stopped = stopped.map(|why| format!("{why} (before merging {})", shared.merged));
        steps.push(Step {
            description: shared.description,
            throughput: current.throughput,
            machines: current.machines,
            checked,
        });
    }
    // Sealed partitioning of a sequential component, when the scale-out it allows pays.
    // Each accepted sealing is the base of the next candidate.
    let mut a = crate::analyze(&text);
    let scaled = estimate(&a.program, &options);
    let mut now = scaled.throughput;
    // The budgeted estimate of the program as it stands, for the grid and thrifty steps.
    let mut here = scaled.clone();
    let sequential: Vec<String> =
        scaled.components.iter().filter(|c| !c.scalable && c.load > 0.0).map(|c| c.name.clone()).collect();
    for name in sequential {
        let Ok(result) = rewrite::partition_sealed(&a, &name, None) else { continue };
        let mut sealed = options.clone();
        sealed.sealed.push(name.clone());
        let next = crate::analyze(&result.new_text);
        let est = estimate(&next.program, &sealed);
        if est.throughput > now * 1.01 && est.machines <= options.machines {
            let description = format!(
                "sealed partitioning of `{name}`: its aggregates over every fact held per instance, replies sealed"
            );
            let Ok(checked) = gate(&result.new_text, &description, true) else { continue };
            invariants_only = true;
            text = result.new_text;
            options = sealed;
            a = next;
            now = est.throughput;
            here = est;
            current = estimate(&a.program, &Options { machines: 0, ..options.clone() });
            steps.push(Step { description, throughput: current.throughput, machines: current.machines, checked });
        }
    }
    // Grid quorums, then thrifty broadcasts, once decoupling has stopped: taken first, a thrifty
    // broadcast keeps the count of its answers in the sender and so blocks the decouplings that
    // pay more (Paxos' commit part). The grid goes first (thrifty over a grid sends phase 2 to one
    // row; the grid refuses a majority send), priced with the thrifty step that follows it.
    let mut grids = Vec::new();
    let rows = options.grid.rows();
    // A grid that pays only with the row send that follows it: the state before it, to return to
    // when the check refuses that send.
    let mut before_grid = None;
    if !rows.is_empty() {
        match grid::grid_step(&text, &options, &here, &rows, &mut gate) {
            grid::GridStep::Taken {
                text: new_text,
                options: with,
                description,
                checked,
                grid,
                estimate: after,
                needs_thrifty,
            } => {
                if needs_thrifty {
                    before_grid = Some((text.clone(), options.clone(), here.clone(), invariants_only, steps.len()));
                }
                here = *after;
                invariants_only = true;
                text = new_text;
                options = *with;
                a = crate::analyze(&text);
                current = estimate(&a.program, &Options { machines: 0, ..options.clone() });
                steps.push(Step { description, throughput: current.throughput, machines: current.machines, checked });
                grids.push(grid);
            }
            grid::GridStep::NotTaken(why) => notes.extend(why),
        }
    }
    if options.thrifty {
        let (mut next_text, mut taken) = thrifty_steps(&text, &options, here.throughput, invariants_only, &mut gate);
        let row_send = |t: &ThriftySteps| t.iter().any(|(d, _, _)| d.contains("to one row of"));
        if let Some((old_text, old_options, old_here, old_invariants, old_steps)) = before_grid.take() {
            if !row_send(&taken) {
                let (name, _, _) = grids.pop().unwrap_or_default();
                notes.push(format!(
                    "grid quorums over `{name}` dropped: the grid paid only with the thrifty broadcast to one row that \
                     follows it, which was not taken"
                ));
                steps.truncate(old_steps);
                (text, options, here, invariants_only) = (old_text, old_options, old_here, old_invariants);
                current = estimate(&crate::analyze(&text).program, &Options { machines: 0, ..options.clone() });
                (next_text, taken) = thrifty_steps(&text, &options, here.throughput, invariants_only, &mut gate);
            }
        }
        for (description, est, checked) in taken {
            current = est;
            steps.push(Step { description, throughput: current.throughput, machines: current.machines, checked });
        }
        text = next_text;
        a = crate::analyze(&text);
        // Over a grid, say why the broadcasts to it stay whole.
        for (name, _, _) in &grids {
            for c in a.program.component_ids() {
                for rule in rewrite::broadcasts(&a, c) {
                    if a.program.rule(rule).addressee().is_some_and(|(to, _)| to == name) {
                        if let Err(refusal) = rewrite::thrifty_rule(&a, rule) {
                            notes.push(format!(
                                "thrifty broadcast of `{}` over the grid of `{name}` does not apply: {}",
                                a.program.rule(rule).head.relation,
                                refusal.reason
                            ));
                        }
                    }
                }
            }
        }
    }
    // Scale out: add instances as the budget allows, recording each component's placement.
    let mut target = estimate(&a.program, &options);
    let mut placed: BTreeMap<String, usize> = BTreeMap::new();
    let mut partial = current.components.clone();
    for cost in target.components.iter_mut().filter(|c| c.partitions > 1) {
        let what = if cost.class == "parallel" { "replicate" } else { "partition" };
        let description =
            format!("{what} `{}` ({}) into {} instances per node", cost.name, cost.class, cost.partitions);
        let mut checked = None;
        if options.sealed.contains(&cost.name) || options.is_batcher(&cost.name) {
            // Already carries its `partitioned by`, checked with the sealing or the batching.
        } else if let Ok(result) = rewrite::partition(&crate::analyze(&text), &cost.name, None) {
            match gate(&result.new_text, &description, invariants_only) {
                Ok(summary) => {
                    text = result.new_text;
                    checked = summary;
                }
                Err(()) => {
                    cost.set_partitions(1);
                    continue;
                }
            }
        }
        placed.insert(cost.name.clone(), cost.partitions);
        if let Some(p) = partial.iter_mut().find(|p| p.name == cost.name) {
            p.set_partitions(cost.partitions);
        }
        // Part way through scaling out; with a batching, re-costed as deployed so far: a
        // batcher's count sets its fill, so the other components' traffic.
        let est = if options.batched.is_empty() {
            finish_estimate(partial.clone(), &cal, None)
        } else {
            estimate_deployed(&a.program, &Options { machines: 0, ..options.clone() }, &placed)
        };
        steps.push(Step { description, throughput: est.throughput, machines: est.machines, checked });
    }
    let target = finish_estimate(target.components, &cal, target.stopped);
    let stopped = match (stopped, &target.stopped) {
        (Some(search), Some(scale)) => format!("{search}; scaling out stopped because {scale}"),
        (Some(search), None) => search,
        (None, Some(scale)) => format!("the search ran its 8 rounds; scaling out stopped because {scale}"),
        (None, None) => "the search ran its 8 rounds".to_string(),
    };
    if target.machines < options.machines && options.machines >= baseline.machines {
        notes.push(format!(
            "the plan uses {} of the {} machines: more would not raise throughput (see why the search stopped)",
            target.machines, options.machines
        ));
    }
    let mut deployment = deployment_toml(&target, &options.batched);
    for (name, rows, columns) in grids {
        deployment.push_str(&format!("\n[grids]\n{name} = {{ rows = {rows}, columns = {columns} }}\n"));
    }
    Plan {
        text,
        steps: fold_flat_steps(steps),
        estimate: target,
        deployment,
        refused,
        stopped,
        notes,
        calibration: cal,
        invariants_only,
    }
}

/// Every broadcast whose thrifty rewrite raises predicted throughput by 1% and passes the gate,
/// one after the other, from `now` predicted: the program after them, and each step with its
/// estimate (unscaled).
///
/// The bounded check is the slow part, so the steps the model picks are checked together first,
/// the program after all of them against the original (one check; each step's summary is that
/// one); only when that is refused is each checked on its own, to find which one is in the way.
fn thrifty_steps(
    text: &str,
    options: &Options,
    now: f64,
    invariants_only: bool,
    gate: &mut grid::Gate<'_>,
) -> (String, ThriftySteps) {
    let (together, steps, sends) =
        thrifty_each(text, options, now, invariants_only, &mut |_, _, _| Ok(None), Vec::new());
    if steps.is_empty() {
        return (together, steps);
    }
    let description = steps.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(", then ");
    if let Ok(checked) = gate(&together, &description, invariants_only) {
        let steps = steps.into_iter().map(|(d, est, _)| (d, est, checked.clone())).collect();
        return (together, steps);
    }
    // A lone step refused is not tried again; of several, each is checked again on its own.
    let refused = if sends.len() == 1 { sends } else { Vec::new() };
    let (text, steps, _) = thrifty_each(text, options, now, invariants_only, gate, refused);
    (text, steps)
}

/// A thrifty broadcast by its sender and message.
type Send = (String, String);

/// Thrifty steps taken: description, estimate (unscaled), what the check explored.
type ThriftySteps = Vec<(String, Estimate, Option<String>)>;

/// [`thrifty_steps`], each step gated on its own, the sends in `refused` not tried; also the sends
/// taken.
fn thrifty_each(
    text: &str,
    options: &Options,
    mut now: f64,
    invariants_only: bool,
    gate: &mut grid::Gate<'_>,
    mut refused: Vec<Send>,
) -> (String, ThriftySteps, Vec<Send>) {
    let mut text = text.to_string();
    let mut out = Vec::new();
    let mut sends = Vec::new();
    // Each rewrite removes one broadcast; the program has finitely many.
    loop {
        let a = crate::analyze(&text);
        let mut chosen = None;
        for c in a.program.component_ids() {
            for rule in rewrite::broadcasts(&a, c) {
                let r = a.program.rule(rule);
                let key = (a.program.component(c).name.clone(), r.head.relation.clone());
                if refused.contains(&key) {
                    continue;
                }
                let Ok(result) = rewrite::thrifty_rule(&a, rule) else { continue };
                let next = crate::analyze(&result.new_text);
                let est = estimate(&next.program, options);
                if est.throughput <= now * 1.01 || est.machines > options.machines {
                    continue;
                }
                let to = r.addressee().map_or("", |(c, _)| c);
                let m = &r.head.relation;
                // Over a grid the send goes to one row (`rewrite::thrifty`).
                let quorum = if rewrite::grid_rows_of(&a.program, to).is_some() {
                    format!("one row of `{to}`'s grid")
                } else {
                    format!("a quorum of `{to}`")
                };
                let description = format!(
                    "thrifty broadcast: `{}` sends `{m}` to {quorum}, the rest on `{m}_widen()` (after a crash of a \
                     quorum member, its answers wait for that timer)",
                    key.0,
                );
                match gate(&result.new_text, &description, invariants_only) {
                    Ok(checked) => {
                        chosen = Some((result.new_text, description, checked, est.throughput));
                        sends.push(key);
                        break;
                    }
                    Err(()) => refused.push(key),
                }
            }
            if chosen.is_some() {
                break;
            }
        }
        let Some((new_text, description, checked, throughput)) = chosen else { break };
        now = throughput;
        text = new_text;
        let est = estimate(&crate::analyze(&text).program, &Options { machines: 0, ..options.clone() });
        out.push((description, est, checked));
    }
    (text, out, sends)
}

/// Steps that do not raise predicted throughput by 1% (a decoupling that pays only once its
/// part is partitioned, the first of two components that tie) are merged into the step they
/// enable, so every step listed is a gain; trailing ones join the last step.
fn fold_flat_steps(steps: Vec<Step>) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut pending: Vec<Step> = Vec::new();
    for step in steps {
        let Some(last) = out.last() else {
            out.push(step);
            continue;
        };
        if step.throughput <= last.throughput * 1.01 {
            pending.push(step);
            continue;
        }
        out.push(merge(std::mem::take(&mut pending), step));
    }
    if !pending.is_empty() {
        if out.len() > 1 {
            let last = out.pop().expect("checked");
            let mut all = vec![last];
            all.extend(pending);
            let final_step = all.pop().expect("non-empty");
            out.push(merge(all, final_step));
        } else {
            // Only flat steps after the original: keep them as one, so the plan says what it did.
            let final_step = pending.pop().expect("non-empty");
            out.push(merge(pending, final_step));
        }
    }
    out
}

fn merge(before: Vec<Step>, step: Step) -> Step {
    if before.is_empty() {
        return step;
    }
    let describe = |s: &Step| s.description.clone();
    let description = before.iter().map(describe).chain(std::iter::once(step.description.clone())).collect::<Vec<_>>();
    let checks: Vec<String> = before.iter().chain(std::iter::once(&step)).filter_map(|s| s.checked.clone()).collect();
    Step {
        description: description.join(", then "),
        throughput: step.throughput,
        machines: step.machines,
        checked: if checks.is_empty() { None } else { Some(checks.join("; ")) },
    }
}

/// `<head>_proxy` for a broadcast, `<head>_part` otherwise: stable across runs.
fn part_name(program: &Program, set: &[RuleId], taken: &[String]) -> String {
    let first = program.rule(set[0]);
    let async_only = set.iter().all(|&r| program.rule(r).kind == RuleKind::Async);
    let base =
        if async_only { format!("{}_proxy", first.head.relation) } else { format!("{}_part", first.head.relation) };
    rewrite::unused_name(&base, |n| {
        program.component_by_name(n).is_some() || program.relation_by_name(n).is_some() || taken.iter().any(|t| t == n)
    })
}

/// The plan's deployment file: logical nodes, instances, and the batchings (`[batches]`) that let
/// whatever reads the plan cost it as this estimate did.
pub fn deployment_toml(estimate: &Estimate, batched: &[Batched]) -> String {
    let mut out = String::from(
        "# Written by `compart optimize`: logical nodes per component, and instances per node.\n[components]\n",
    );
    for c in &estimate.components {
        out.push_str(&format!("{} = {}\n", c.name, c.logical));
    }
    if estimate.components.iter().any(|c| c.partitions > 1) {
        out.push_str("\n[partitions]\n");
        for c in estimate.components.iter().filter(|c| c.partitions > 1) {
            out.push_str(&format!("{} = {}\n", c.name, c.partitions));
        }
    }
    out.push_str(&crate::deployment::batches_section(batched));
    out
}

/// `12345.6` as `12,346`.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The steps as an aligned table, why the search stopped, then the final components.
pub fn render_steps(plan: &Plan) -> String {
    let base = plan.steps.first().map_or(1.0, |s| s.throughput.max(1e-9));
    let cal = &plan.calibration;
    let mut out = format!(
        "predicted requests/s with {} core(s) per machine and {} closed-loop clients (calibration: {:.1} \
         CPU-µs/tick, {:.2}/fact, {:.3}/rule work, {:.1} ticks waited per busy visit x clients)\n\n",
        cal.cpu_per_node, cal.clients, cal.tick_us, cal.fact_us, cal.rule_us, cal.tick_window
    );
    out.push_str("step      req/s   gain  machines  rewrite\n");
    for (i, s) in plan.steps.iter().enumerate() {
        out.push_str(&format!(
            "{:>4}  {:>9}  {:>4.1}x  {:>8}  {}\n",
            i,
            thousands(s.throughput),
            s.throughput / base,
            s.machines,
            s.description
        ));
    }
    out.push_str(&format!("\nsearch stopped: {}\n", plan.stopped));
    for note in &plan.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    let checks: Vec<(usize, &String)> =
        plan.steps.iter().enumerate().filter_map(|(i, s)| s.checked.as_ref().map(|c| (i, c))).collect();
    if !checks.is_empty() {
        // A refinement check unless the step or an earlier one seals, batches or arranges a
        // grid: then the summary starts with "invariants:".
        out.push_str(if plan.invariants_only {
            "\nchecked before each step (bounded check against the original: refinement, or its invariants \
             where marked):\n"
        } else {
            "\nchecked before each step (bounded refinement check against the original):\n"
        });
        for (i, c) in checks {
            out.push_str(&format!("{i:>4}  {c}\n"));
        }
    }
    for r in &plan.refused {
        out.push_str(&format!("\nrefused by the bounded check: {}\n", r.description));
        for line in r.counterexample.lines() {
            out.push_str(&format!("      {line}\n"));
        }
    }
    out.push_str(
        "\ncomponent             facts/req  work/req  CPU-µs/req  nodes  instances  CPU-µs/req/instance  class\n",
    );
    for c in &plan.estimate.components {
        out.push_str(&format!(
            "{:<22} {:>8.2}  {:>8.1}  {:>10.2}  {:>5}  {:>9}  {:>19.2}  {}\n",
            c.name,
            c.facts_in + c.facts_out,
            c.work,
            c.load,
            c.logical,
            c.partitions,
            c.instance_cpu_us,
            c.class
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers each request, batched by 8: what the batching's costing is about.
    fn batched_server() -> (Program, Options) {
        let text = "component server {\n    input req(id: int, v: string) key(id)\n    output rep(id: int, v: string)\n    rep(i, v) :- req(i, v).\n}\n";
        let result = rewrite::batch(&crate::analyze(text), "server", 8, rewrite::Delivery::Every).unwrap();
        let batcher = result.batcher.as_ref().unwrap();
        let options = Options { batched: vec![Batched::from(batcher)], ..Options::default() };
        let program = crate::analyze(&result.new_text).program;
        // The calibration's clients fill every batch of one instance.
        assert_eq!(options.batch_fill(&program, &options.batched[0]), 8.0);
        (program, options)
    }

    /// Per request: the unbatching rule fires once (one reply per request held, though the batch
    /// reply is one fact per batch), the batch send once per batch, and the batched server
    /// receives one fact per batch but takes part in its ticks as a request does.
    #[test]
    fn a_batching_is_costed_per_request_where_requests_are_handled() {
        let (program, options) = batched_server();
        let traffic = traffic(&program, &options);
        let at = |name: &str| traffic[program.component_by_name(name).unwrap().index()];
        let (server, batcher) = (at("server"), at("server_batcher"));
        assert_eq!((server.facts_in, server.visits), (1.0 / 8.0, 1.0));
        // Replies, one per request; the batch's messages, one per batch.
        assert_eq!(batcher.facts_out, 1.0 + 1.0 / 8.0);
        // The batch reply has no partition column: every batcher instance receives it.
        assert_eq!((batcher.facts_in, batcher.facts_in_every), (1.0 + 1.0 / 8.0, 1.0 / 8.0));
        assert_eq!(batcher.visits, 2.0);
        // Rule work: the unbatching join and the deletion of what it held fire per request, and so
        // does the batch send's body; with all three per batch, the work would be far lower.
        let held = held_rows(&program, &state_relations(&program));
        let consuming: Vec<String> = program
            .rule_ids()
            .filter(|r| held[r.index()].is_some())
            .map(|r| program.rule(r).head.relation.clone())
            .collect();
        // (The counter the batcher replaces each tick is consumed by its tick's count alike.)
        assert!(consuming.ends_with(&["rep".to_string(), "batch_held".to_string()]), "{consuming:?}");
        // Per request: numbering (2 + 2), forming (7), holding (2), the counter (3 + 3), and the
        // three with two body atoms each (3): the send, the unbatching, the deletion. Were those
        // three costed per batch, 9/8 instead of 9.
        assert_eq!(batcher.work, 28.0, "{batcher:?}");
    }
}
