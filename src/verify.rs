//! `compart verify ORIGINAL REWRITTEN`: does the rewritten program refine the original, on the
//! same inputs? Two phases, both on the runtime's nodes:
//!
//! 1. Bounded: for a few small workloads (1, 2, 3 inputs), every schedule of each program is
//!    explored (`compart_runtime::explore`, within bounds). The rewritten program may only
//!    produce outputs the original can produce; every invariant must hold in every state it
//!    reaches; and every quiescent state it reaches without crashes must hold each output that
//!    all of the original's such states hold (and, coarser, an output of the same relation with
//!    the same first column, so a request the original always answers is answered even when the
//!    answer's value depends on timing). A failure shows the rewritten program's shortest trace.
//!    Where the original's exploration was cut by a bound, what it did not reach is looked for
//!    in many seeded schedules of the original before it is called a difference, and the report
//!    says that it is not a proven one.
//! 2. Sampled: longer random workloads under seeded random schedules, beyond the bound. Outputs
//!    are compared as sets where the original's sampled runs agree (no new outputs, none lost);
//!    invariants always. The rewritten program runs under the very seeds the original runs.
//!
//! In both phases and both modes (`--invariants-only` too), a relation whose requests the
//! original never answers twice (two different facts with one first column in one state or run)
//! must not be answered twice by the rewritten program. Requests reach their component's nodes
//! as the original's deployment's `[workload] send_to` says ([`delivery_to`]).
//!
//! Outputs are facts with addresses shown as node names. A violation the original shows too, on
//! the same workload, is reported but is not a difference the rewrite introduced; so verifying a
//! program against itself always passes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use compart_analysis::deployment::stated_request_delivery;
use compart_analysis::model::{Program, RelationKind, Type};
use compart_analysis::rewrite::Delivery;
use compart_analysis::{analyze, Analysis};
use compart_runtime::engine::{GlobalChecker, NodeOptions};
use compart_runtime::explore::{self, Exploration, ExploreConfig, ExploreInput, Fact, Trace};
use compart_runtime::sim::Rng;
use compart_runtime::{route, CompiledProgram, Deployment, Node, NodeAddr, Tuple, Value};

const MAX_STEPS: usize = 40_000;

/// The bounds of both phases. `Default` is what `compart verify` uses without flags.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Sampled phase: one random workload per seed.
    pub seeds: u64,
    /// Sampled phase: input facts per workload.
    pub inputs: usize,
    /// Schedules of each program per seed in the sampled phase.
    pub runs: u64,
    /// Compare only invariants (for protocols whose outputs depend on timing).
    pub invariants_only: bool,
    /// Bounded phase: workloads of 1, 2, ... this many inputs (0: no bounded phase).
    pub workloads: usize,
    /// Bounds and fault budgets of each exploration.
    pub explore: ExploreConfig,
    /// Schedules of the original sampled to look for what its cut exploration did not reach.
    pub search: u64,
    /// How requests reach their component's nodes: the original's deployment's
    /// `[workload] send_to`, `None` where it says nothing ([`delivery_to`]).
    pub delivery: Option<Delivery>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            seeds: 10,
            inputs: 12,
            runs: 6,
            invariants_only: false,
            workloads: 3,
            explore: ExploreConfig { max_states: 20_000, max_depth: 1_000, duplicates: 0, crashes: 0 },
            search: 200,
            delivery: None,
        }
    }
}

/// `compart verify`'s flags for the bounded phase (defaults: [`VerifyOptions::default`]).
#[derive(clap::Args, Debug)]
pub struct Bounds {
    /// Bounded phase: distinct states explored per program and workload.
    #[arg(long, default_value_t = 20_000)]
    pub max_states: usize,
    /// Bounded phase: longest schedule explored, in ticks and faults.
    #[arg(long, default_value_t = 1_000)]
    pub max_depth: usize,
    /// Bounded phase: workloads of 1, 2, ... N inputs (0 skips the bounded phase).
    #[arg(long, default_value_t = 3)]
    pub workloads: usize,
    /// Bounded phase: deliveries per schedule after which the network keeps a copy of the
    /// message to deliver again (the runtime drops duplicates by sequence number; a node that
    /// crashes after a tick but before acknowledging gets its messages again).
    #[arg(long, default_value_t = 0)]
    pub duplicates: u32,
    /// Bounded phase: node crashes per schedule (a crashed node restarts with its tables).
    #[arg(long, default_value_t = 0)]
    pub crashes: u32,
    /// Schedules of the original sampled to look for what its bounded exploration did not reach.
    #[arg(long, default_value_t = 200)]
    pub search: u64,
    /// Run only the quick check done for each rewrite step (bounds scaled to the deployment;
    /// the flags above and --seeds/--inputs are ignored).
    #[arg(long)]
    pub quick: bool,
}

struct Loaded {
    analysis: Analysis,
    program: Arc<CompiledProgram>,
}

fn load(path: &Path) -> Result<Loaded, String> {
    let text = compart_runtime::options::read_text(path)?;
    compile(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn compile(text: &str) -> Result<Loaded, String> {
    let analysis = analyze(text);
    if analysis.has_errors() {
        return Err("the program has errors; run `compart check`".into());
    }
    let program =
        CompiledProgram::new(&analysis).map_err(|d| d.first().map_or(String::new(), |d| d.message.clone()))?;
    Ok(Loaded { analysis, program: Arc::new(program) })
}

/// The deployment beside the program, else: logical node counts of `like` for shared
/// components, one node otherwise, and for every partitioned component the instances `like`
/// gives it, or 3.
fn deployment(
    path: Option<&Path>,
    program: &Program,
    like: Option<&(Deployment, &Program)>,
) -> Result<Deployment, String> {
    if let Some(toml) = path.map(compart_analysis::deployment::beside) {
        if let Ok(text) = compart_runtime::options::read_text(&toml) {
            return Deployment::from_toml(&text, program).map_err(|e| format!("{}: {e}", toml.display()));
        }
    }
    Ok(default_deployment(program, like))
}

/// The smallest deployment that still exercises every component: one logical node each, two
/// instances for a partitioned one. Schedules are shorter there, so the bounded phase reaches
/// replies it cannot reach in a full deployment (Paxos with one proposer and one acceptor commits
/// in a few ticks); a difference found there is a difference of the rewrite.
fn minimal_deployment(program: &Program) -> Deployment {
    let counts: Vec<(&str, u32, u32)> =
        program.components.iter().map(|c| (c.name.as_str(), 1, if c.placement.is_some() { 2 } else { 1 })).collect();
    Deployment::local_partitioned(program, &counts)
}

fn default_deployment(program: &Program, like: Option<&(Deployment, &Program)>) -> Deployment {
    let nodes_of = |name: &str| -> Vec<&compart_runtime::NodeSpec> {
        like.map(|(d, p)| d.nodes.iter().filter(|n| p.component(n.component).name == name).collect())
            .unwrap_or_default()
    };
    let counts: Vec<(String, u32, u32)> = program
        .component_ids()
        .map(|id| {
            let c = program.component(id);
            let nodes = nodes_of(&c.name);
            // A decoupled part has as many nodes as the component it forwards from (`partner`).
            let logical = program.logical_count(id, |name| {
                let n = nodes_of(name).iter().filter(|n| n.logical == n.addr).count();
                (n > 0).then_some(n)
            });
            let like_parts = nodes.iter().map(|n| n.partitions).max().unwrap_or(1);
            let parts = match c.placement {
                Some(_) if like_parts > 1 => like_parts,
                Some(_) => 3,
                None => 1,
            };
            (c.name.clone(), logical as u32, parts)
        })
        .collect();
    let refs: Vec<(&str, u32, u32)> = counts.iter().map(|(n, l, p)| (n.as_str(), *l, *p)).collect();
    Deployment::local_partitioned(program, &refs)
}

/// An input fact of a workload: which relation, its values, and which logical nodes of the
/// relation's component receive it.
#[derive(Clone, Debug)]
struct Input {
    relation: String,
    tuple: Tuple,
    to: To,
}

/// The logical nodes of an input's component that receive it; both programs get the same.
#[derive(Clone, Copy, Debug)]
enum To {
    /// One: an index taken modulo their number.
    One(u64),
    /// Every one.
    Every,
}

/// How requests (inputs whose first column is an int id, as the load generator sends them)
/// reach the nodes of their component: the original's deployment's `[workload] send_to`
/// (`deployment::stated_request_delivery`), for both programs. Where it says nothing, each input
/// goes to one node drawn at random; other inputs (`timeout()`) always do.
fn delivery_to(delivery: Option<Delivery>, index: usize, drawn: u64) -> To {
    match delivery {
        None => To::One(drawn),
        Some(Delivery::One) => To::One(index as u64),
        Some(Delivery::Every) => To::Every,
    }
}

/// `count` input facts drawn by `seed`, given to both programs. Every input relation is driven,
/// zero-column ones (`timeout()`) included; relations with address columns are left out.
/// `rotate`: the i-th fact is of the (rotate + i)-th input relation instead of one drawn at
/// random, so that small workloads cover every relation.
fn workload(
    program: &Program,
    seed: u64,
    count: usize,
    rotate: Option<usize>,
    delivery: Option<Delivery>,
) -> Vec<Input> {
    let mut rng = Rng::new(seed);
    let strings: Vec<String> = {
        let mut out: BTreeSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        for rule in &program.rules {
            collect_strings(rule, &mut out);
        }
        out.into_iter().collect()
    };
    let inputs: Vec<_> = program
        .relations
        .iter()
        .filter(|r| r.kind == RelationKind::Input && r.columns.iter().all(|c| c.ty != Type::Addr && c.ty.is_known()))
        .collect();
    let mut next_id = 1;
    let mut out = Vec::new();
    for i in 0..count {
        if inputs.is_empty() {
            break;
        }
        let pick = match rotate {
            Some(first) => (first + i) % inputs.len(),
            None => rng.below(inputs.len() as u64) as usize,
        };
        let relation = inputs[pick];
        let key = relation.key.clone().unwrap_or_else(|| vec![0]);
        // Different string columns of one fact get different strings, so that a rewrite mixing
        // up two columns shows.
        let mut used: Vec<usize> = Vec::new();
        let tuple = relation
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| match c.ty {
                Type::Int if key.contains(&i) => {
                    next_id += 1;
                    Value::Int(next_id)
                }
                Type::Int => Value::Int(rng.below(4) as i64),
                Type::Bool => Value::Bool(rng.chance(0.5)),
                _ => {
                    let free: Vec<usize> = (0..strings.len()).filter(|k| !used.contains(k)).collect();
                    let k = match free.len() {
                        0 => rng.below(strings.len() as u64) as usize,
                        n => free[rng.below(n as u64) as usize],
                    };
                    used.push(k);
                    Value::str(&strings[k])
                }
            })
            .collect();
        // Drawn whatever the delivery, so that the facts are the same for every delivery.
        let drawn = rng.below(1 << 20);
        let request = relation.columns.first().is_some_and(|c| c.ty == Type::Int);
        let to = if request { delivery_to(delivery, i, drawn) } else { To::One(drawn) };
        out.push(Input { relation: relation.name.clone(), tuple, to });
    }
    out
}

fn collect_strings(rule: &compart_analysis::model::Rule, out: &mut BTreeSet<String>) {
    fn walk(e: &compart_analysis::model::Expr, out: &mut BTreeSet<String>) {
        use compart_analysis::model::ExprKind;
        match &e.kind {
            ExprKind::Str(s) => {
                out.insert(s.clone());
            }
            ExprKind::Neg(i) => walk(i, out),
            ExprKind::Binary(_, l, r) => {
                walk(l, out);
                walk(r, out);
            }
            ExprKind::Call(_, args) => args.iter().for_each(|a| walk(a, out)),
            _ => {}
        }
    }
    for atom in rule.atoms() {
        if atom.relation != compart_analysis::model::NODES_RELATION {
            atom.args.iter().for_each(|a| walk(a, out));
        }
    }
}

/// The workload's facts for `loaded`'s program on `deployment`: relations by name, one fact per
/// receiving node.
fn resolve(loaded: &Loaded, deployment: &Deployment, inputs: &[Input]) -> Result<Vec<ExploreInput>, String> {
    let model = &loaded.analysis.program;
    let mut out = Vec::new();
    for input in inputs {
        let relation = model
            .relation_by_name(&input.relation)
            .filter(|&r| model.relation(r).kind == RelationKind::Input)
            .ok_or_else(|| format!("the rewritten program has no input `{}`", input.relation))?;
        let component = model.relation(relation).component.ok_or("input without component")?;
        let candidates: Vec<NodeAddr> =
            deployment.logical_nodes().filter(|n| n.component == component).map(|n| n.addr).collect();
        if candidates.is_empty() {
            return Err(format!("no node runs the component of `{}`", input.relation));
        }
        let nodes = match input.to {
            To::One(k) => vec![candidates[(k % candidates.len() as u64) as usize]],
            To::Every => candidates,
        };
        out.extend(nodes.into_iter().map(|node| ExploreInput { node, relation, tuple: input.tuple.clone() }));
    }
    Ok(out)
}

fn show_input(loaded: &Loaded, deployment: &Deployment, input: &ExploreInput) -> String {
    let fact = Fact::new(deployment, &loaded.analysis.program.relation(input.relation).name, &input.tuple);
    format!("{fact} -> {}", explore::logical_name(deployment, input.node))
}

struct RunResult {
    outputs: BTreeSet<Fact>,
    /// (invariant name, `invariant(args)`); `settle` when the run did not settle.
    violations: Vec<(String, String)>,
    /// The run ended with nothing in flight and no node wanting a tick.
    settled: bool,
}

/// One schedule: inputs injected, messages delivered and nodes ticked in a seeded random order,
/// until every node is quiet.
fn run(loaded: &Loaded, deployment: &Arc<Deployment>, inputs: &[ExploreInput], seed: u64) -> RunResult {
    let program = &loaded.program;
    let model = &loaded.analysis.program;
    let checker = GlobalChecker::new(program.clone(), deployment.clone());
    let mut nodes: Vec<Node> = deployment
        .nodes
        .iter()
        .map(|spec| {
            let mut node = Node::with_options(
                program.clone(),
                spec.addr,
                deployment.clone(),
                NodeOptions { check_invariants: true },
            );
            node.set_snapshot(&checker.relations());
            node
        })
        .collect();
    let mut inbox: Vec<Vec<(compart_analysis::model::RelationId, Tuple)>> = vec![Vec::new(); nodes.len()];
    let mut flight: Vec<(NodeAddr, compart_analysis::model::RelationId, Tuple)> = Vec::new();
    // Inputs arrive in any order, like messages (language.md): each injection takes one of the
    // pending inputs at random.
    let mut pending: Vec<&ExploreInput> = inputs.iter().collect();
    let mut rng = Rng::new(seed);
    let mut result = RunResult { outputs: BTreeSet::new(), violations: Vec::new(), settled: false };
    let mut ticked_once = vec![false; nodes.len()];
    for _ in 0..MAX_STEPS {
        let busy: Vec<usize> =
            (0..nodes.len()).filter(|&i| !ticked_once[i] || !inbox[i].is_empty() || nodes[i].wants_tick()).collect();
        let action = rng.below(10);
        if !pending.is_empty() && (action < 3 || (busy.is_empty() && flight.is_empty())) {
            let input = pending.swap_remove(rng.below(pending.len() as u64) as usize);
            for to in route(program, deployment, input.node, input.relation, &input.tuple) {
                inbox[to.index()].push((input.relation, input.tuple.clone()));
            }
        } else if !flight.is_empty() && (action < 7 || busy.is_empty()) {
            let (to, rel, tuple) = flight.swap_remove(rng.below(flight.len() as u64) as usize);
            inbox[to.index()].push((rel, tuple));
        } else if !busy.is_empty() {
            let i = busy[rng.below(busy.len() as u64) as usize];
            ticked_once[i] = true;
            let out = nodes[i].tick(std::mem::take(&mut inbox[i]));
            for (rel, tuple) in out.outputs {
                result.outputs.insert(Fact::new(deployment, &model.relation(rel).name, &tuple));
            }
            for (dest, rel, tuple) in out.sends {
                for to in route(program, deployment, dest, rel, &tuple) {
                    flight.push((to, rel, tuple.clone()));
                }
            }
            let mut violations = out.violations;
            violations.extend(checker.check(nodes.iter().flat_map(|n| n.snapshot())));
            for v in violations {
                result.violations.push((v.invariant.clone(), explore::show_violation(deployment, &v)));
            }
        } else if pending.is_empty() {
            result.settled = true;
            return result;
        }
    }
    result.violations.push(("settle".into(), format!("did not settle within {MAX_STEPS} steps")));
    result
}

/// What seeded schedules of a program did on one workload.
#[derive(Default)]
struct Sampled {
    outputs: BTreeSet<Fact>,
    /// Outputs of each run.
    runs: Vec<BTreeSet<Fact>>,
    /// Outputs of each run that settled.
    settled: Vec<BTreeSet<Fact>>,
    invariants: BTreeSet<String>,
    /// (invariant, `invariant(args)`) of every violation.
    violations: Vec<(String, String)>,
    /// By relation, the first request some run answered twice ([`answered_twice`]).
    twice: BTreeMap<String, (Fact, Fact)>,
}

/// By relation, one request `facts` answer twice ([`Fact::same_request`]): two different facts
/// of one relation with one first column, which sorted facts hold side by side.
fn answered_twice(facts: &BTreeSet<Fact>) -> BTreeMap<String, (Fact, Fact)> {
    let mut out = BTreeMap::new();
    for (a, b) in facts.iter().zip(facts.iter().skip(1)) {
        if a.same_request(b) {
            out.entry(a.relation.clone()).or_insert_with(|| (a.clone(), b.clone()));
        }
    }
    out
}

fn show_twice((a, b): &(Fact, Fact)) -> String {
    format!("request {} answered twice: {a} and {b}", a.args[0])
}

fn sample(
    loaded: &Loaded,
    deployment: &Arc<Deployment>,
    inputs: &[ExploreInput],
    seeds: std::ops::Range<u64>,
) -> Sampled {
    let mut s = Sampled::default();
    for seed in seeds {
        let r = run(loaded, deployment, inputs, seed);
        s.invariants.extend(r.violations.iter().map(|(name, _)| name.clone()));
        for (relation, pair) in answered_twice(&r.outputs) {
            s.twice.entry(relation).or_insert(pair);
        }
        s.violations.extend(r.violations);
        if r.settled {
            s.settled.push(r.outputs.clone());
        }
        s.outputs.extend(r.outputs.iter().cloned());
        s.runs.push(r.outputs);
    }
    s
}

/// `compart verify` with the default bounds (the command's form before the bounds had flags).
#[allow(dead_code)]
pub fn verify(original: &Path, rewritten: &Path, seeds: u64, inputs: usize, invariants_only: bool) -> u8 {
    verify_with(original, rewritten, &VerifyOptions { seeds, inputs, invariants_only, ..Default::default() })
}

/// `compart verify` as the command line gives it.
pub fn verify_command(
    original: &Path,
    rewritten: &Path,
    seeds: u64,
    inputs: usize,
    invariants_only: bool,
    bounds: &Bounds,
) -> u8 {
    if bounds.quick {
        return quick(original, rewritten, invariants_only);
    }
    let options = VerifyOptions {
        seeds,
        inputs,
        invariants_only,
        workloads: bounds.workloads,
        explore: ExploreConfig {
            max_states: bounds.max_states,
            max_depth: bounds.max_depth,
            duplicates: bounds.duplicates,
            crashes: bounds.crashes,
        },
        search: bounds.search,
        ..Default::default()
    };
    verify_with(original, rewritten, &options)
}

/// `compart verify --quick`: [`check_rewrite`] on two files.
fn quick(original: &Path, rewritten: &Path, invariants_only: bool) -> u8 {
    let read = |p: &Path| compart_runtime::options::read_text(p);
    let texts = read(original).and_then(|o| Ok((o, read(rewritten)?)));
    let (orig, new) = match texts {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let deploy = compart_runtime::options::read_text(&compart_analysis::deployment::beside(original)).ok();
    match check_rewrite(&orig, &new, deploy.as_deref(), invariants_only) {
        Ok(s) => {
            crate::explain::emit(&s.report);
            crate::explain::emit(&format!(
                "quick check passed: {} states explored ({}) in {:.1}s\n",
                s.states,
                if s.exhausted { "exhausted" } else { "bounded" },
                s.elapsed.as_secs_f64()
            ));
            0
        }
        Err(c) => {
            crate::explain::emit(&c.report);
            crate::explain::emit(&format!(
                "quick check failed: {} (a counterexample of {} steps)\n",
                c.what,
                c.trace.len()
            ));
            1
        }
    }
}

/// `compart verify` with every bound given.
pub fn verify_with(original: &Path, rewritten: &Path, options: &VerifyOptions) -> u8 {
    match verify_files_with(original, rewritten, options) {
        Ok((ok, out)) => {
            crate::explain::emit(&out);
            if ok {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// The comparison behind `compart verify` (also `compart bench`): Ok((no difference found, the
/// report)); Err when a program cannot be loaded or run.
pub fn verify_files(
    original: &Path,
    rewritten: &Path,
    seeds: u64,
    inputs: usize,
    invariants_only: bool,
) -> Result<(bool, String), String> {
    verify_files_with(original, rewritten, &VerifyOptions { seeds, inputs, invariants_only, ..Default::default() })
}

pub fn verify_files_with(original: &Path, rewritten: &Path, options: &VerifyOptions) -> Result<(bool, String), String> {
    let (orig, new) = (load(original)?, load(rewritten)?);
    let deployments = deployments(&orig, &new, (Some(original), Some(rewritten)))?;
    let options = VerifyOptions { delivery: delivery_beside(original)?, ..options.clone() };
    let mut out = String::new();
    let verdict = compare_with(&orig, &new, &deployments, &options, &mut out)?;
    Ok((verdict.ok, out))
}

/// What [`check_rewrite`] explored and sampled, when it found no difference.
#[derive(Clone, Debug)]
pub struct CheckSummary {
    /// The report, as `compart verify` prints it.
    pub report: String,
    /// Distinct states explored, over both programs and every bounded workload.
    pub states: usize,
    /// Every bounded exploration covered all schedules of its workload.
    pub exhausted: bool,
    pub elapsed: Duration,
}

/// Why [`check_rewrite`] rejects a rewrite.
#[derive(Clone, Debug)]
pub struct Counterexample {
    /// What differs, in one line (or why the programs could not be compared).
    pub what: String,
    /// The rewritten program's shortest schedule showing it; empty when the difference was
    /// found by sampling only, or the programs could not be loaded.
    pub trace: Trace,
    /// The whole report.
    pub report: String,
}

/// The check for one rewrite step (for the optimizer and `compart rewrite`): the bounded phase
/// and a short sampled phase, with bounds lowered for large deployments so that it takes about
/// a second or two in a debug build. `original_deploy` is the original's deployment file text
/// (else one node per component); the rewritten program gets the same node counts.
pub fn check_rewrite(
    original_text: &str,
    rewritten_text: &str,
    original_deploy: Option<&str>,
    invariants_only: bool,
) -> Result<CheckSummary, Counterexample> {
    let fail = |what: String| Counterexample { what: what.clone(), trace: Vec::new(), report: what };
    let orig = compile(original_text).map_err(|e| fail(format!("the original program: {e}")))?;
    let new = compile(rewritten_text).map_err(|e| fail(format!("the rewritten program: {e}")))?;
    let orig_dep = match original_deploy {
        Some(text) => Deployment::from_toml(text, &orig.analysis.program)
            .map_err(|e| fail(format!("the original's deployment: {e}")))?,
        None => default_deployment(&orig.analysis.program, None),
    };
    let new_dep = default_deployment(&new.analysis.program, Some(&(orig_dep.clone(), &orig.analysis.program)));
    let nodes = orig_dep.nodes.len().max(new_dep.nodes.len()).max(1);
    let delivery =
        stated_request_delivery(original_deploy).map_err(|e| fail(format!("the original's deployment: {e}")))?;
    let options = VerifyOptions { delivery, ..quick_options(nodes, invariants_only) };
    let deployments = (Arc::new(orig_dep), Arc::new(new_dep));
    let mut report = String::new();
    let verdict = compare_with(&orig, &new, &deployments, &options, &mut report).map_err(fail)?;
    if verdict.ok {
        Ok(CheckSummary { report, states: verdict.states, exhausted: verdict.exhausted, elapsed: verdict.elapsed })
    } else {
        let (what, trace) = verdict.counterexample.unwrap_or_else(|| ("the programs differ".into(), Vec::new()));
        Err(Counterexample { what, trace, report })
    }
}

/// [`check_rewrite`]'s bounds: each explored state costs a tick of one node, whose price grows
/// with the deployment, and the sampled phase is short.
fn quick_options(nodes: usize, invariants_only: bool) -> VerifyOptions {
    VerifyOptions {
        seeds: 3,
        inputs: 8,
        runs: 3,
        invariants_only,
        workloads: 3,
        explore: ExploreConfig { max_states: (10_000 / nodes).clamp(500, 4_000), ..VerifyOptions::default().explore },
        search: 40,
        delivery: None,
    }
}

type Deployments = (Arc<Deployment>, Arc<Deployment>);

/// The `[workload] send_to` of the deployment file beside `program`, if it says.
fn delivery_beside(program: &Path) -> Result<Option<Delivery>, String> {
    let toml = compart_analysis::deployment::beside(program);
    let text = compart_runtime::options::read_text(&toml).ok();
    stated_request_delivery(text.as_deref()).map_err(|e| format!("{}: {e}", toml.display()))
}

fn deployments(orig: &Loaded, new: &Loaded, paths: (Option<&Path>, Option<&Path>)) -> Result<Deployments, String> {
    let orig_dep = deployment(paths.0, &orig.analysis.program, None)?;
    let new_dep = deployment(paths.1, &new.analysis.program, Some(&(orig_dep.clone(), &orig.analysis.program)))?;
    Ok((Arc::new(orig_dep), Arc::new(new_dep)))
}

struct Verdict {
    ok: bool,
    /// The first difference found, with the rewritten program's trace when it has one.
    counterexample: Option<(String, Trace)>,
    states: usize,
    exhausted: bool,
    elapsed: Duration,
}

impl Verdict {
    fn fail(&mut self, what: String, trace: &[String]) {
        self.ok = false;
        if self.counterexample.is_none() {
            self.counterexample = Some((what, trace.to_vec()));
        }
    }
}

fn summary(e: &Exploration) -> String {
    format!(
        "{} states, {} transitions, depth {}, {}; {} output(s), {} quiescent outcome(s)",
        e.states,
        e.transitions,
        e.max_depth,
        if e.exhausted { "exhausted" } else { "bounded" },
        e.outputs.len(),
        e.terminals.len()
    )
}

fn write_trace(out: &mut String, title: &str, trace: &[String]) {
    let _ = writeln!(out, "    {title}:");
    for (i, step) in trace.iter().enumerate() {
        let _ = writeln!(out, "      {:>2}. {step}", i + 1);
    }
}

/// An answer, the coarse form of outputs for liveness: some output of a relation with a given
/// first column (a reply to that request), or (`None`) some output of the relation at all.
type Answer = (String, Option<String>);

fn coarse_set(facts: &BTreeSet<Fact>) -> BTreeSet<Answer> {
    let mut out = BTreeSet::new();
    for f in facts {
        out.insert((f.relation.clone(), Some(f.args.first().cloned().unwrap_or_default())));
        out.insert((f.relation.clone(), None));
    }
    out
}

fn show_answer((rel, first): &Answer) -> String {
    match first {
        Some(id) => format!("{rel}({id}, ...) (no {rel} fact with first column {id})"),
        None => format!("{rel}(...) (no {rel} fact at all)"),
    }
}

fn intersect<T: Ord + Clone>(sets: impl IntoIterator<Item = BTreeSet<T>>) -> BTreeSet<T> {
    let mut it = sets.into_iter();
    let first = it.next().unwrap_or_default();
    it.fold(first, |acc, s| acc.intersection(&s).cloned().collect())
}

/// Both phases; the report goes to `out`.
fn compare_with(
    orig: &Loaded,
    new: &Loaded,
    (orig_dep, new_dep): &Deployments,
    options: &VerifyOptions,
    out: &mut String,
) -> Result<Verdict, String> {
    let start = Instant::now();
    let mut verdict = Verdict { ok: true, counterexample: None, states: 0, exhausted: true, elapsed: Duration::ZERO };
    let ex = &options.explore;
    match options.delivery {
        Some(Delivery::One) => {
            let _ = writeln!(out, "requests go to one node of their component each, round-robin ([workload] send_to)");
        }
        Some(Delivery::Every) => {
            let _ = writeln!(out, "requests go to every node of their component ([workload] send_to)");
        }
        None => {}
    }
    if options.workloads > 0 {
        let _ = writeln!(
            out,
            "bounded phase: every schedule of each program, up to {} states and depth {}, {} duplicate(s), {} crash(es)",
            ex.max_states, ex.max_depth, ex.duplicates, ex.crashes
        );
    }
    // The given deployments, and the minimal one where it is smaller (it reaches deeper).
    let small: Deployments =
        (Arc::new(minimal_deployment(&orig.analysis.program)), Arc::new(minimal_deployment(&new.analysis.program)));
    let smaller = small.0.nodes.len() < orig_dep.nodes.len() || small.1.nodes.len() < new_dep.nodes.len();
    // Each pass draws its own workloads (another seed): more inputs covered for the same bounds.
    let mut passes: Vec<(&str, Deployments, u64)> = vec![("", (orig_dep.clone(), new_dep.clone()), 0)];
    if smaller && options.workloads > 0 {
        passes.push(("one node per component: ", small, 1000));
    }
    for (label, (orig_dep, new_dep), seed) in &passes {
        for n in 1..=options.workloads {
            let w = workload(&orig.analysis.program, seed + n as u64, n, Some(n - 1), options.delivery);
            if w.is_empty() {
                let _ = writeln!(out, "no input relation to drive: the bounded phase explores the programs alone");
            }
            let (oi, ni) = (resolve(orig, orig_dep, &w)?, resolve(new, new_dep, &w)?);
            let shown: Vec<String> = ni.iter().map(|i| show_input(new, new_dep, i)).collect();
            let shown = if shown.is_empty() { "no input".into() } else { shown.join(", ") };
            let _ = writeln!(out, "{label}workload {n}: {shown}");
            let o = explore::explore(orig.program.clone(), orig_dep.clone(), &oi, ex)?;
            let r = explore::explore(new.program.clone(), new_dep.clone(), &ni, ex)?;
            let _ = writeln!(out, "  original:  {}", summary(&o));
            let _ = writeln!(out, "  rewritten: {}", summary(&r));
            verdict.states += o.states + r.states;
            verdict.exhausted &= o.exhausted && r.exhausted;
            bounded_check(orig, orig_dep, &oi, &o, &r, options, &mut verdict, out);
            if w.is_empty() {
                break;
            }
        }
    }
    if options.seeds > 0 {
        let _ = writeln!(
            out,
            "sampled phase: {} schedule(s) of each program per seed, the same seeds for both",
            options.runs
        );
    }
    for seed in 0..options.seeds {
        sampled_check(orig, new, (orig_dep, new_dep), seed, options, &mut verdict, out)?;
    }
    verdict.elapsed = start.elapsed();
    let time = format!("{:.1}s", verdict.elapsed.as_secs_f64());
    let explored = match (options.workloads, verdict.exhausted) {
        (0, _) => String::new(),
        (_, true) => format!(" ({} states, every exploration exhausted)", verdict.states),
        (_, false) => format!(" ({} states, some explorations bounded)", verdict.states),
    };
    let _ = if verdict.ok {
        writeln!(
            out,
            "no difference found over {} seed(s) and {} bounded workload(s){explored} in {time}",
            options.seeds, options.workloads,
        )
    } else {
        writeln!(out, "the rewritten program differs from the original (checked in {time})")
    };
    Ok(verdict)
}

/// The bounded phase's checks of one workload, given both explorations.
#[allow(clippy::too_many_arguments)]
fn bounded_check(
    orig: &Loaded,
    orig_dep: &Arc<Deployment>,
    inputs: &[ExploreInput],
    o: &Exploration,
    r: &Exploration,
    options: &VerifyOptions,
    verdict: &mut Verdict,
    out: &mut String,
) {
    let outputs = !options.invariants_only;
    let orig_invariants: BTreeSet<&str> = o.violations.iter().map(|v| v.invariant.as_str()).collect();
    let extra: Vec<(&Fact, &Trace)> =
        r.outputs.iter().filter(|(f, _)| outputs && !o.outputs.contains_key(*f)).collect();
    let violated: Vec<_> = r.violations.iter().collect();
    // Liveness: what every crash-free quiescent state of the original holds; with invariants
    // only, just the coarse form (a request always answered is answered, whatever the value).
    let live = !o.terminals.is_empty();
    let must = if outputs { intersect(o.terminals.iter().map(|t| t.outputs.clone())) } else { BTreeSet::new() };
    let must_coarse = intersect(o.terminals.iter().map(|t| coarse_set(&t.outputs)));
    let lacks = |t: &explore::Terminal, must: &BTreeSet<Fact>, must_coarse: &BTreeSet<Answer>| {
        !must.is_subset(&t.outputs) || !must_coarse.is_subset(&coarse_set(&t.outputs))
    };
    let unexplained_violation = violated.iter().any(|v| !orig_invariants.contains(v.invariant.as_str()));
    // One answer per request where the original gives one, in both modes: answering twice is an
    // output difference invariants do not see (a request committed in two slots).
    let twice: Vec<&explore::AnsweredTwice> =
        r.answered_twice.iter().filter(|(rel, _)| !o.answered_twice.contains_key(*rel)).map(|(_, t)| t).collect();
    let any_lacking = live && r.terminals.iter().any(|t| lacks(t, &must, &must_coarse));
    let odd_ending = outputs && live && r.terminals.iter().any(|t| !o.terminals.iter().any(|e| e.outputs == t.outputs));
    // What the cut exploration of the original did not reach may still be reachable: sample.
    let sampled = (!o.exhausted
        && (!extra.is_empty() || unexplained_violation || any_lacking || odd_ending || !twice.is_empty()))
    .then(|| sample(orig, orig_dep, inputs, 1_000_000..1_000_000 + options.search));
    let bound_note = |found: &str| match &sampled {
        Some(_) => format!(
            "not proven: the original's exploration was bounded, and {} sampled schedule(s) of it {found}",
            options.search
        ),
        None => "the original's exploration was exhausted: a proven difference".into(),
    };
    let mut ok = true;
    for (f, trace) in &extra {
        if sampled.as_ref().is_some_and(|s| s.outputs.contains(*f)) {
            continue;
        }
        let shown = f.to_string();
        let _ = writeln!(out, "  new output: {shown} ({})", bound_note("did not produce it either"));
        write_trace(out, "shortest trace of the rewritten program", trace);
        verdict.fail(format!("new output: {shown}"), trace);
        ok = false;
    }
    for v in &violated {
        let by_original = orig_invariants.contains(v.invariant.as_str())
            || sampled.as_ref().is_some_and(|s| s.invariants.contains(&v.invariant));
        if by_original {
            let _ = writeln!(
                out,
                "  violated in both programs: {} (the original violates `{}` too: not a difference)",
                v.shown, v.invariant
            );
            continue;
        }
        let _ = writeln!(out, "  violated in the rewritten program: {}", v.shown);
        if !o.exhausted {
            let _ = writeln!(out, "    ({})", bound_note("did not violate it"));
        }
        write_trace(out, "shortest trace of the rewritten program", &v.trace);
        verdict.fail(format!("invariant violated: {}", v.shown), &v.trace);
        ok = false;
    }
    for t in &twice {
        let relation = &t.answers.0.relation;
        if sampled.as_ref().is_some_and(|s| s.twice.contains_key(relation)) {
            continue;
        }
        let shown = show_twice(&t.answers);
        let _ = writeln!(
            out,
            "  {shown} (no explored state of the original has two `{relation}` answers to one request; {})",
            bound_note("did not either")
        );
        write_trace(out, "shortest trace of the rewritten program", &t.trace);
        verdict.fail(shown, &t.trace);
        ok = false;
    }
    if live {
        // A bounded original may have quiescent states its exploration did not reach: its
        // settled sampled runs count too.
        let settled = sampled.as_ref().map(|s| s.settled.clone()).unwrap_or_default();
        let must = if outputs {
            intersect(std::iter::once(must.clone()).chain(settled.iter().cloned()))
        } else {
            must.clone()
        };
        let must_coarse = intersect(std::iter::once(must_coarse.clone()).chain(settled.iter().map(coarse_set)));
        let lacking: Vec<&explore::Terminal> = r.terminals.iter().filter(|t| lacks(t, &must, &must_coarse)).collect();
        if let Some(t) = lacking.first() {
            let coarse_held = coarse_set(&t.outputs);
            let _ = writeln!(
                out,
                "  {} quiescent state(s) of the rewritten program lack outputs every quiescent state of the original has{}",
                lacking.len(),
                if o.exhausted { "".to_string() } else { format!(" ({})", bound_note("agree")) }
            );
            let mut first = None;
            for f in must.difference(&t.outputs).take(5) {
                let _ = writeln!(out, "  missing output: {f}");
                first.get_or_insert_with(|| format!("missing output: {f}"));
            }
            for answer in must_coarse.difference(&coarse_held).take(5) {
                let shown = show_answer(answer);
                let _ = writeln!(out, "  missing output: {shown}");
                first.get_or_insert_with(|| format!("missing output: {shown}"));
            }
            write_trace(out, "shortest trace of the rewritten program to such a state", &t.trace);
            verdict.fail(first.unwrap_or_else(|| "missing output".into()), &t.trace);
            ok = false;
        }
        // Every way the rewritten program can end is a way the original can end.
        let endings: Vec<&BTreeSet<Fact>> = o.terminals.iter().map(|t| &t.outputs).chain(settled.iter()).collect();
        let odd: Vec<&explore::Terminal> = r
            .terminals
            .iter()
            .filter(|t| outputs && !lacks(t, &must, &must_coarse) && !endings.contains(&&t.outputs))
            .collect();
        if let Some(t) = odd.first() {
            let shown: Vec<String> = t.outputs.iter().map(|f| f.to_string()).collect();
            let shown = format!("{{{}}}", shown.join(", "));
            let _ = writeln!(
                out,
                "  {} quiescent state(s) of the rewritten program end with outputs no quiescent state of the original \
                 ends with{}",
                odd.len(),
                if o.exhausted { "".to_string() } else { format!(" ({})", bound_note("did not end so either")) }
            );
            let _ = writeln!(out, "  unexpected ending: {shown}");
            write_trace(out, "shortest trace of the rewritten program to such a state", &t.trace);
            verdict.fail(format!("unexpected ending: {shown}"), &t.trace);
            ok = false;
        }
        if r.terminals.is_empty() {
            let _ = writeln!(
                out,
                "  liveness not checked: the rewritten program reached no quiescent state within the bound"
            );
        }
    } else {
        let _ = writeln!(out, "  liveness not checked: the original reached no quiescent state within the bound");
    }
    for w in r.warnings.iter().take(3) {
        let _ = writeln!(out, "  warning (rewritten): {w}");
    }
    if ok {
        let _ = writeln!(out, "  ok");
    }
}

/// The sampled phase for one seed: several schedules of the original on a random workload, and
/// the rewritten program under the same seeds.
///
/// Outputs are compared answer by answer (facts of one relation with one first column, the
/// reply to one request): where every run of the original outputs the same facts for an answer,
/// so must every run of the rewritten program. An original's few runs may agree by chance, so a
/// difference is confirmed on many more first. Answers whose facts depend on timing, and all
/// answers with `--invariants-only`, are compared coarsely: one every run of the original gives
/// is given in every settled run of the rewritten program, whatever its value; and a relation
/// the original outputs some fact of in every run (and nearly every one of many more: a protocol
/// that may drop requests, like Paxos, still answers something) is output by some settled run of
/// the rewritten program.
fn sampled_check(
    orig: &Loaded,
    new: &Loaded,
    (orig_dep, new_dep): (&Arc<Deployment>, &Arc<Deployment>),
    seed: u64,
    options: &VerifyOptions,
    verdict: &mut Verdict,
    out: &mut String,
) -> Result<(), String> {
    let w = workload(&orig.analysis.program, seed, options.inputs, None, options.delivery);
    let (oi, ni) = (resolve(orig, orig_dep, &w)?, resolve(new, new_dep, &w)?);
    let seeds = seed * 1000..seed * 1000 + options.runs.max(1);
    let o = sample(orig, orig_dep, &oi, seeds.clone());
    let r = sample(new, new_dep, &ni, seeds);
    let agreed = intersect(o.runs.iter().cloned());
    let first_search = 2_000_000 + seed * 10_000;
    let mut more: Option<Sampled> = None;
    let more_runs = |more: &mut Option<Sampled>| -> Sampled {
        more.take().unwrap_or_else(|| sample(orig, orig_dep, &oi, first_search..first_search + options.search))
    };
    // Exact comparison, answer by answer.
    let answer_of = |f: &Fact| -> Answer { (f.relation.clone(), Some(f.args.first().cloned().unwrap_or_default())) };
    let facts_for = |run: &BTreeSet<Fact>, a: &Answer| -> BTreeSet<Fact> {
        run.iter().filter(|f| answer_of(f) == *a).cloned().collect()
    };
    let mut exact_answers: BTreeSet<Answer> = BTreeSet::new();
    let (mut extra, mut missing) = (BTreeSet::new(), BTreeSet::new());
    let mut varying = 0;
    if !options.invariants_only && !o.runs.is_empty() {
        let answers: BTreeSet<Answer> = o.outputs.iter().chain(r.outputs.iter()).map(answer_of).collect();
        let mut differing = Vec::new();
        for a in answers {
            let expected = facts_for(&o.runs[0], &a);
            if o.runs.iter().any(|run| facts_for(run, &a) != expected) {
                varying += 1;
                continue;
            }
            if r.runs.iter().any(|run| facts_for(run, &a) != expected) {
                differing.push((a.clone(), expected));
            }
            exact_answers.insert(a);
        }
        if !differing.is_empty() {
            let m = more_runs(&mut more);
            for (a, expected) in differing {
                if m.runs.iter().any(|run| facts_for(run, &a) != expected) {
                    varying += 1;
                    exact_answers.remove(&a);
                    continue;
                }
                for run in &r.runs {
                    let got = facts_for(run, &a);
                    extra.extend(got.difference(&expected).cloned());
                    missing.extend(expected.difference(&got).cloned());
                }
            }
            more = Some(m);
        }
    }
    // A request answered twice where no run of the original, nor any of many more, does.
    let mut twice: Vec<&(Fact, Fact)> =
        r.twice.iter().filter(|(rel, _)| !o.twice.contains_key(*rel)).map(|(_, pair)| pair).collect();
    if !twice.is_empty() {
        let m = more_runs(&mut more);
        twice.retain(|(a, _)| !m.twice.contains_key(&a.relation));
        more = Some(m);
    }
    // Coarse comparison of the other answers, and of relations.
    let mut unanswered: BTreeSet<Answer> = BTreeSet::new();
    let (orig_settled, new_settled): (Vec<_>, Vec<_>) =
        (o.settled.iter().map(coarse_set).collect(), r.settled.iter().map(coarse_set).collect());
    if !orig_settled.is_empty() && !new_settled.is_empty() {
        let must = intersect(orig_settled.iter().cloned());
        let mut any: BTreeSet<Answer> = BTreeSet::new();
        new_settled.iter().for_each(|run| any.extend(run.iter().cloned()));
        unanswered = must
            .iter()
            .filter(|a| match a.1 {
                Some(_) => !exact_answers.contains(*a) && new_settled.iter().any(|run| !run.contains(*a)),
                None => !any.contains(*a),
            })
            .cloned()
            .collect();
        if !unanswered.is_empty() {
            let m = more_runs(&mut more);
            let settled: Vec<BTreeSet<Answer>> = m.settled.iter().map(coarse_set).collect();
            let given = |c: &Answer| settled.iter().filter(|run| run.contains(c)).count();
            // A request must be answered in every run; a relation, the protocol may on rare
            // schedules leave without any fact (Paxos preempted before any commit), so it must
            // be output in nearly every run of the original while the rewritten never does.
            unanswered.retain(|c| match c.1 {
                Some(_) => given(c) == settled.len(),
                None => given(c) * 10 >= settled.len() * 9,
            });
        }
    }
    let new_violations: Vec<&(String, String)> =
        r.violations.iter().filter(|(n, _)| !o.invariants.contains(n)).collect();
    let ok = new_violations.is_empty()
        && unanswered.is_empty()
        && extra.is_empty()
        && missing.is_empty()
        && twice.is_empty();
    let verdict_text = match (ok, options.invariants_only, varying) {
        (false, _, _) => String::new(),
        (true, true, _) | (true, false, 0) => ", ok".into(),
        (true, false, n) => format!(", ok ({n} answer(s) depend on timing: compared as answers)"),
    };
    let _ = writeln!(
        out,
        "seed {seed}: {} inputs, {} outputs (original: {} agreed, {} possible){verdict_text}",
        w.len(),
        r.outputs.len(),
        agreed.len(),
        o.outputs.len()
    );
    for (_, v) in new_violations.iter().take(3) {
        let _ = writeln!(out, "  violated in the rewritten program: {v}");
        verdict.fail(format!("invariant violated: {v}"), &[]);
    }
    if let Some((_, v)) = r.violations.iter().find(|(n, _)| o.invariants.contains(n)) {
        let _ = writeln!(out, "  violated in both programs: {v} (the original violates it too: not a difference)");
    }
    for answer in unanswered.iter().take(5) {
        let shown = show_answer(answer);
        let runs = if answer.1.is_some() { "a run" } else { "every run" };
        let _ = writeln!(
            out,
            "  missing output: {shown} in {runs} of the rewritten program; every run of the original has one"
        );
        verdict.fail(format!("missing output: {shown}"), &[]);
    }
    for pair in &twice {
        let shown = show_twice(pair);
        let _ = writeln!(out, "  {shown}; no run of the original has two `{}` answers to one request", pair.0.relation);
        verdict.fail(shown, &[]);
    }
    for f in extra.iter().take(5) {
        let _ = writeln!(out, "  new output: {f}");
        verdict.fail(format!("new output: {f}"), &[]);
    }
    for f in missing.iter().take(5) {
        let _ = writeln!(out, "  missing output: {f}");
        verdict.fail(format!("missing output: {f}"), &[]);
    }
    Ok(())
}

/// `compare_with` with [`check_rewrite`]'s bounded phase and the given sampled phase (tests).
#[cfg(test)]
fn compare(
    orig: &Loaded,
    new: &Loaded,
    paths: (Option<&Path>, Option<&Path>),
    seeds: u64,
    inputs: usize,
    invariants_only: bool,
    out: &mut String,
) -> Result<bool, String> {
    let deployments = deployments(orig, new, paths)?;
    let nodes = deployments.0.nodes.len().max(deployments.1.nodes.len());
    let delivery = match paths.0 {
        Some(p) => delivery_beside(p)?,
        None => None,
    };
    let options =
        VerifyOptions { seeds, inputs, runs: 6, search: 200, delivery, ..quick_options(nodes, invariants_only) };
    Ok(compare_with(orig, new, &deployments, &options, out)?.ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOTING: &str = include_str!("../examples/voting.ded");

    fn check(rewritten: &str) -> (bool, String) {
        let orig = compile(VOTING).unwrap();
        let new = compile(rewritten).unwrap();
        let mut out = String::new();
        let ok = compare(&orig, &new, (None, None), 3, 8, false, &mut out).unwrap();
        (ok, out)
    }

    #[test]
    fn decoupled_and_partitioned_voting_behave_like_the_original() {
        let analysis = analyze(VOTING);
        let rules = compart_analysis::rewrite::select_rules(&analysis, "leader", &["ballot"]).unwrap();
        let decoupled = compart_analysis::rewrite::decouple(&analysis, "leader", &rules, "broadcaster").unwrap();
        let (ok, out) = check(&decoupled.new_text);
        assert!(ok, "{out}");
        let partitioned = compart_analysis::rewrite::partition(&analysis, "leader", Some("id")).unwrap();
        let (ok, out) = check(&partitioned.new_text);
        assert!(ok, "{out}");
    }

    #[test]
    fn a_wrong_rewrite_is_caught() {
        // Replies need one vote more than there are participants: nothing is ever answered.
        let broken =
            VOTING.replace("vote_count(id, n), n_participants(n).", "vote_count(id, n), n_participants(m), n > m.");
        assert_ne!(broken, VOTING);
        let (ok, out) = check(&broken);
        assert!(!ok, "{out}");
        assert!(out.contains("missing output: client_reply("), "{out}");
    }

    /// The commit path decoupled, with nacks only for real preemptions: invariants kept, and
    /// requests still committed.
    #[test]
    fn paxos_with_filtered_nacks_keeps_the_invariants() {
        let path = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/paxos.ded"));
        let text = std::fs::read_to_string(&path).unwrap();
        let analysis = analyze(&text);
        let selectors = ["proposals", "accepted_by", "accept_count", "commit", "committed", "reply"];
        let rules = compart_analysis::rewrite::select_rules(&analysis, "proposer", &selectors).unwrap();
        let decoupled = compart_analysis::rewrite::decouple(&analysis, "proposer", &rules, "commit_part").unwrap();
        assert!(decoupled.new_text.contains("max_ballot > ballot."));
        let (orig, new) = (compile(&text).unwrap(), compile(&decoupled.new_text).unwrap());
        let mut out = String::new();
        let ok = compare(&orig, &new, (Some(&path), None), 8, 20, true, &mut out).unwrap();
        assert!(ok, "{out}");
        assert!(committed(&out) > 0, "nothing committed: {out}");
    }

    /// Outputs of the rewritten program over every seed of a `compare` report.
    fn committed(out: &str) -> usize {
        out.lines().filter_map(|l| l.split(" inputs, ").nth(1)?.split(' ').next()?.parse::<usize>().ok()).sum()
    }

    /// Acceptors partitioned by slot with sealing keep Paxos' invariants, and still commit: a
    /// p1b that never sealed would elect no leader and produce no output at all.
    #[test]
    fn sealed_paxos_acceptors_keep_the_invariants() {
        let path = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/paxos.ded"));
        let text = std::fs::read_to_string(&path).unwrap();
        let analysis = analyze(&text);
        let sealed = compart_analysis::rewrite::partition_sealed(&analysis, "acceptor", Some("slot")).unwrap();
        let (orig, new) = (compile(&text).unwrap(), compile(&sealed.new_text).unwrap());
        let mut out = String::new();
        let ok = compare(&orig, &new, (Some(&path), None), 8, 20, true, &mut out).unwrap();
        assert!(ok, "{out}");
        assert!(committed(&out) > 0, "nothing committed: {out}");
    }

    /// Jobs with priorities; each answered with the running maximum, its own priority included.
    const JOBS: &str = "
        component front {
            input job(id: int, p: int) key(id)
            output prio_ok(id: int, m: int)
            table seen(p: int)
            seen(p) :- job(_, p).
            top(max(p)) :- seen(p).
            prio_ok(id, m) :- job(id, _), top(m).
        }
    ";

    /// A wrong decoupling: `job` and `seen` reach the back end as two channels, so a job can
    /// arrive before its own priority is recorded.
    const JOBS_RACY: &str = "
        component front {
            input job(id: int, p: int) key(id)
            job_in@b(id, p) :~ job(id, p), nodes(\"back\", b).
            seen_in@b(p) :~ job(_, p), nodes(\"back\", b).
        }
        component back {
            channel job_in(id: int, p: int)
            channel seen_in(p: int)
            output prio_ok(id: int, m: int)
            table seen(p: int)
            seen(p) :- seen_in(p).
            top(max(p)) :- seen(p).
            prio_ok(id, m) :- job_in(id, _), top(m).
        }
    ";

    /// The same decoupling with one channel carrying both: no race.
    const JOBS_DECOUPLED: &str = "
        component front {
            input job(id: int, p: int) key(id)
            job_in@b(id, p) :~ job(id, p), nodes(\"back\", b).
        }
        component back {
            channel job_in(id: int, p: int)
            output prio_ok(id: int, m: int)
            table seen(p: int)
            seen(p) :- job_in(_, p).
            top(max(p)) :- seen(p).
            prio_ok(id, m) :- job_in(id, _), top(m).
        }
    ";

    fn bounded_only(orig: &str, new: &str) -> (Verdict, String) {
        let (orig, new) = (compile(orig).unwrap(), compile(new).unwrap());
        let deployments = deployments(&orig, &new, (None, None)).unwrap();
        let options = VerifyOptions { seeds: 0, ..quick_options(2, false) };
        let mut out = String::new();
        let verdict = compare_with(&orig, &new, &deployments, &options, &mut out).unwrap();
        (verdict, out)
    }

    #[test]
    fn a_race_between_forwarded_relations_is_caught_with_a_shortest_trace() {
        let (verdict, out) = bounded_only(JOBS, JOBS_RACY);
        assert!(!verdict.ok, "{out}");
        // One job: the back end ticks over `job_in` before `seen_in`, finds no maximum, and the
        // job is never answered.
        let (what, trace) = verdict.counterexample.unwrap();
        assert!(what.starts_with("missing output: prio_ok(2, "), "{what}\n{out}");
        let p = what.trim_start_matches("missing output: prio_ok(2, ").trim_end_matches(')');
        assert_eq!(
            trace,
            [
                format!("input job(2, {p}) -> front/0"),
                "tick front/0".into(),
                format!("deliver job_in(2, {p}) -> back/0"),
                "tick back/0".into(),
                format!("deliver seen_in({p}) -> back/0"),
                "tick back/0".into(),
                // Its table changed: one more tick until it is quiet.
                "tick back/0".into(),
            ],
            "{out}"
        );
        // Two jobs: the second can be answered with the first one's lower priority, which the
        // original never does.
        assert!(out.contains("new output: prio_ok(3, "), "{out}");
        assert!(out.contains("a proven difference"), "{out}");
        // The same through the library entry point.
        let c = check_rewrite(JOBS, JOBS_RACY, None, false).unwrap_err();
        assert_eq!(c.what, what);
        assert_eq!(c.trace, trace);
        let (verdict, out) = bounded_only(JOBS, JOBS_DECOUPLED);
        assert!(verdict.ok && verdict.exhausted, "{out}");
    }

    fn self_check(text: &str, toml: Option<&str>, options: &VerifyOptions) -> (bool, String) {
        let (orig, new) = (compile(text).unwrap(), compile(text).unwrap());
        let dep = |l: &Loaded| match toml {
            Some(t) => Deployment::from_toml(t, &l.analysis.program).unwrap(),
            None => default_deployment(&l.analysis.program, None),
        };
        let deployments = (Arc::new(dep(&orig)), Arc::new(dep(&new)));
        let mut out = String::new();
        let verdict = compare_with(&orig, &new, &deployments, options, &mut out).unwrap();
        (verdict.ok, out)
    }

    /// Outputs of the examples depend on timing (Paxos) and some runs violate nothing only by
    /// luck of the schedule; none of that may make a program differ from itself.
    #[test]
    fn every_example_verifies_against_itself() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"));
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "ded") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let toml = std::fs::read_to_string(path.with_extension("toml")).ok();
            let options = VerifyOptions {
                seeds: 2,
                inputs: 8,
                search: 20,
                explore: ExploreConfig { max_states: 1_500, ..VerifyOptions::default().explore },
                ..Default::default()
            };
            let (ok, out) = self_check(&text, toml.as_deref(), &options);
            assert!(ok, "{}:\n{out}", path.display());
            checked += 1;
        }
        assert!(checked >= 4, "examples not found in {}", dir.display());
    }

    /// Small random programs: two components, a channel each way, tables, aggregates, negation,
    /// `:+`, deletes and invariants, drawn from rule templates that keep them well-formed.
    fn generate(seed: u64) -> String {
        let mut rng = Rng::new(seed);
        let mut pick = |options: &[&str]| -> Vec<String> {
            options.iter().filter(|_| rng.chance(0.5)).map(|s| s.to_string()).collect()
        };
        let front = pick(&[
            "t(id, v) :- req(id, v).",
            "tmax(max(v)) :- t(_, v).\n out(id, m) :- req(id, _), tmax(m).",
            "cnt(count(id)) :- t(id, _).\n out(n, n) :- cnt(n).",
            "pend(id, v) :+ req(id, v).\n out(id, v) :- pend(id, v), !t(id, v).",
            "delete t(id, v) :- t(id, v), back(id, _).",
            "out(id, v) :- back(id, v).",
            "invariant big(id) :- t(id, v), v > 50.",
            "timer() :- tick().\n out(0, n) :- timer(), cnt2(n).\n cnt2(count(id)) :- t(id, _).",
        ]);
        let back = pick(&[
            "s(id, v) :- fwd(id, v, _).",
            "back@from(id, v) :~ fwd(id, v, from).",
            "back@from(id, v + 1) :~ fwd(id, v, from), !s(id, v).",
            "smax(max(v)) :- s(_, v).\n back@from(id, m) :~ fwd(id, _, from), smax(m).",
            "invariant neg(id) :- s(id, v), v < 0.",
        ]);
        format!(
            "component front {{
                input req(id: int, v: int) key(id)
                input tick()
                output out(id: int, v: int)
                channel back(id: int, v: int)
                table t(id: int, v: int)
                fwd@p(id, v, self) :~ req(id, v), nodes(\"back\", p).
                {}
            }}
            component back {{
                channel fwd(id: int, v: int, from: addr)
                table s(id: int, v: int)
                {}
            }}",
            front.join("\n"),
            back.join("\n")
        )
    }

    #[test]
    fn generated_programs_verify_against_themselves() {
        let options = VerifyOptions {
            seeds: 2,
            inputs: 6,
            search: 20,
            explore: ExploreConfig { max_states: 1_000, ..VerifyOptions::default().explore },
            ..Default::default()
        };
        let toml = "[components]\nfront = 1\nback = 2\n";
        let mut checked = 0;
        for seed in 0..24 {
            let text = generate(seed);
            let analysis = analyze(&text);
            if analysis.has_errors() {
                continue;
            }
            let (ok, out) = self_check(&text, Some(toml), &options);
            assert!(ok, "{text}\n{out}");
            checked += 1;
        }
        assert!(checked >= 16, "only {checked} of 24 generated programs are well-formed");
    }

    /// The first vote decides, once. Each single output of the broken version is one the
    /// original can produce, and nothing the original always outputs is missing; only how it
    /// can end differs: deciding twice.
    #[test]
    fn an_ending_the_original_never_has_is_caught() {
        let once = "
            component c {
                input vote(v: int)
                output decided(v: int)
                table done(v: int)
                pick(min(v)) :- vote(v), !done(_).
                done(v) :+ pick(v).
                decided(v) :- pick(v).
            }
        ";
        let twice = once.replace("pick(min(v)) :- vote(v), !done(_).", "pick(min(v)) :- vote(v).");
        let (verdict, out) = bounded_only(once, &twice);
        assert!(!verdict.ok, "{out}");
        assert!(!out.contains("new output") && !out.contains("missing output"), "{out}");
        let (what, trace) = verdict.counterexample.unwrap();
        assert_eq!(what, "unexpected ending: {decided(2), decided(3)}", "{out}");
        assert_eq!(trace.iter().filter(|s| s.starts_with("tick")).count(), 3, "{trace:?}");
    }

    /// Each front node answers the requests it receives; the broken rewrite has every front
    /// node answer every request (as a batch sent to every Mencius leader was).
    const FRONT: &str = "
        component front {
            input req(id: int) key(id)
            input poke()
            output ans(id: int, by: addr)
            ans(id, self) :- req(id).
        }
    ";
    const FRONT_EVERY: &str = "
        component front {
            input req(id: int) key(id)
            input poke()
            output ans(id: int, by: addr)
            channel peer(id: int)
            peer@p(id) :~ req(id), nodes(\"front\", p).
            ans(id, self) :- peer(id).
        }
    ";

    fn front_toml(send_to: Option<&str>) -> String {
        let workload = send_to.map_or(String::new(), |s| format!("[workload]\nsend_to = \"{s}\"\n"));
        format!("[components]\nfront = 3\n{workload}")
    }

    #[test]
    fn requests_go_where_the_workload_sends_them() {
        let loaded = compile(FRONT).unwrap();
        let program = &loaded.analysis.program;
        let dep = Deployment::from_toml(&front_toml(None), program).unwrap();
        let nodes = |delivery| {
            let w = workload(program, 7, 6, Some(0), delivery);
            let inputs = resolve(&loaded, &dep, &w).unwrap();
            let show = |i: &ExploreInput| (program.relation(i.relation).name.as_str(), i.node.index());
            (w, inputs.iter().map(show).collect::<Vec<_>>())
        };
        // Round-robin: the i-th input, a request, goes to node i mod 3; `poke()` is no request.
        let (w, rr) = nodes(Some(Delivery::One));
        assert_eq!(rr, [("req", 0), ("poke", rr[1].1), ("req", 2), ("poke", rr[3].1), ("req", 1), ("poke", rr[5].1)]);
        // All: each request to every node; the facts are the same whatever the delivery.
        let (all_w, all) = nodes(Some(Delivery::Every));
        assert_eq!(all.iter().filter(|(r, _)| *r == "req").count(), 9, "{all:?}");
        assert_eq!(all.iter().filter(|(r, _)| *r == "poke").count(), 3, "{all:?}");
        let facts = |w: &[Input]| w.iter().map(|i| (i.relation.clone(), i.tuple.clone())).collect::<Vec<_>>();
        assert_eq!(facts(&w), facts(&all_w));
        // Unsaid: one node each, as drawn (the check's behaviour before it read `send_to`).
        let (_, drawn) = nodes(None);
        assert_eq!(drawn.len(), 6);
    }

    #[test]
    fn a_request_answered_twice_is_caught_unless_the_original_does_too() {
        for send_to in [Some("round-robin"), None] {
            let c = check_rewrite(FRONT, FRONT_EVERY, Some(&front_toml(send_to)), true).unwrap_err();
            assert!(c.what.starts_with("request ") && c.what.contains(" answered twice: ans("), "{}", c.report);
            // From the bounded phase: the rewritten program's shortest trace, to a second answer.
            assert_eq!(c.trace.iter().filter(|s| s.starts_with("tick front/")).count(), 3, "{:?}", c.trace);
            assert!(c.report.contains("a proven difference"), "{}", c.report);
        }
        // Sent to every node, the original answers each request three times: nothing to keep.
        let all = check_rewrite(FRONT, FRONT_EVERY, Some(&front_toml(Some("all"))), true);
        assert!(all.is_ok(), "{}", all.unwrap_err().report);
        assert!(check_rewrite(FRONT, FRONT, Some(&front_toml(Some("round-robin"))), true).is_ok());
    }

    /// A partitioned rewrite runs each logical node as several instances; outputs naming a node
    /// (`self`) still name the same logical node as in the original.
    #[test]
    fn outputs_naming_nodes_compare_across_partitionings() {
        let orig = "
            component registry {
                input hit(id: int, name: string) key(id)
                output seen_at(id: int, name: string, at: addr)
                table names(name: string)
                names(name) :- hit(_, name).
                seen_at(id, name, self) :- hit(id, name), names(name).
            }
        ";
        let analysis = analyze(orig);
        let partitioned = compart_analysis::rewrite::partition(&analysis, "registry", Some("name")).unwrap();
        assert!(partitioned.new_text.contains("partitioned by"), "{}", partitioned.new_text);
        let (verdict, out) = bounded_only(orig, &partitioned.new_text);
        assert!(verdict.ok, "{out}");
        // Replies were produced and compared (a wrong name would be a new output).
        assert!(out.contains("rewritten: ") && !out.contains("0 output(s)"), "{out}");
        let (o, n) = (compile(orig).unwrap(), compile(&partitioned.new_text).unwrap());
        let (od, nd) = deployments(&o, &n, (None, None)).unwrap();
        assert_eq!((od.nodes.len(), nd.nodes.len()), (1, 3));
    }
}
