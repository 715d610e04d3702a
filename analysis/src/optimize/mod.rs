//! The optimizer: a cost model over components and a greedy search over rewrites (decouple, then
//! partition or replicate) that maximises predicted throughput within a machine budget.
//!
//! Cost model, per client request: each relation gets a frequency at one node of its component
//! (inputs 1; a broadcast `r@a(..) :~ .., nodes("X", a)` delivers one fact to each X node; a reply
//! to one address delivers one per sending node). A rule fires as often as its most frequent
//! changing body atom, and costs 1 + its atoms + the messages it sends per firing. A component's
//! load is the sum over its rules; a parallel or partitioned component divides it among its
//! instances; predicted throughput is 1 / the largest load per instance. A profile (facts derived
//! per rule, from `compart run --report`) replaces the static frequencies where given.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::model::{ComponentId, ExprKind, Program, RelationKind, RuleId, RuleKind};
use crate::rewrite;
use crate::scaling::{Context, ScalingClass};
use crate::Analysis;

/// Measured facts per client request of each rule, keyed by the rule's text as
/// [`crate::scaling::display::rule`] prints it: rules keep their text when a rewrite leaves them
/// in place, so the profile of the original program still applies to them after rewrites; rules
/// a rewrite changed (renamed atoms, forwarding rules) fall back to the static estimate.
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
    /// Work per client request at one logical node (one instance).
    pub load: f64,
    /// Logical nodes, as in the deployment (`acceptor = 3`).
    pub logical: usize,
    /// Instances per logical node (`[partitions]`); 1 unless scalable.
    pub partitions: usize,
    pub scalable: bool,
}

impl ComponentCost {
    fn per_instance(&self) -> f64 {
        self.load / self.partitions as f64
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Estimate {
    pub components: Vec<ComponentCost>,
    /// Requests per 100 units of work of the most loaded instance (relative).
    pub throughput: f64,
    pub machines: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub description: String,
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
    /// A deployment file for the runtime: `[components]` and `[partitions]`.
    pub deployment: String,
    /// Steps the bounded check refused.
    pub refused: Vec<RefusedStep>,
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Machine budget: the sum over components of logical nodes times instances.
    pub machines: usize,
    pub profile: Option<Profile>,
    /// Logical nodes per component from the original deployment (default 1); new components get 1.
    pub logical: BTreeMap<String, usize>,
    /// Components given sealed partitioning (sequential by class, scalable all the same).
    pub sealed: Vec<String>,
}

impl Options {
    /// Logical nodes of `component`: as given, else its partner's (a decoupled part matches the
    /// component it came from node for node), else 1.
    fn logical(&self, program: &Program, component: &str) -> usize {
        match program.component_by_name(component) {
            Some(id) => program.logical_count(id, |name| self.logical.get(name).copied()),
            None => self.logical.get(component).copied().unwrap_or(1).max(1),
        }
    }
}

/// Work per client request at one node of each component, under the static cost model or a profile.
pub fn loads(program: &Program, options: &Options) -> Vec<f64> {
    let mut load = vec![0.0; program.components.len()];
    for (id, cost) in program.rule_ids().zip(rule_costs(program, options)) {
        load[program.rule(id).component.index()] += cost;
    }
    load
}

/// Work per client request of each rule (indexed by `RuleId`).
pub fn rule_costs(program: &Program, options: &Options) -> Vec<f64> {
    let fanout = |c: &str| options.logical(program, c) as f64;
    let mut freq = vec![0.0f64; program.relations.len()];
    for r in program.relation_ids() {
        let rel = program.relation(r);
        if rel.kind == RelationKind::Input && rel.arity() > 0 {
            freq[r.index()] = 1.0;
        }
    }
    // A rule runs when one of its per-tick triggers (inputs, channels, scratch) has facts, at most
    // as often as the rarest of them; rules over tables alone run when the tables change.
    let fires = |freq: &[f64], rule: RuleId| {
        let rule = program.rule(rule);
        let positive: Vec<_> = rule.atoms().filter(|a| !a.negated).filter_map(|a| a.relation_id).collect();
        let events: Vec<f64> = positive
            .iter()
            .filter(|r| !matches!(program.relation(**r).kind, RelationKind::Table | RelationKind::Builtin))
            .map(|r| freq[r.index()])
            .collect();
        if events.is_empty() {
            positive.iter().map(|r| freq[r.index()]).fold(0.0, f64::max)
        } else {
            events.into_iter().fold(f64::INFINITY, f64::min)
        }
    };
    // How many nodes of its component hold a relation's facts of one request: 1 for inputs and
    // replies, every node for a broadcast. A message is sent by each node that holds its cause.
    let mut spread = vec![1.0f64; program.relations.len()];
    let holders = |spread: &[f64], rule: &crate::model::Rule| {
        rule.atoms()
            .filter(|a| !a.negated)
            .filter_map(|a| a.relation_id)
            .filter(|r| !matches!(program.relation(*r).kind, RelationKind::Table | RelationKind::Builtin))
            .map(|r| spread[r.index()])
            .fold(1.0, f64::max)
    };
    // Frequencies settle in a few rounds (a message path is short).
    for _ in 0..12 {
        let mut next = freq.clone();
        let mut next_spread = vec![1.0f64; program.relations.len()];
        for r in program.relation_ids() {
            if program.relation(r).kind != RelationKind::Input {
                next[r.index()] = 0.0;
            }
        }
        for id in program.rule_ids() {
            let rule = program.rule(id);
            let Some(head) = rule.head.relation_id else { continue };
            if matches!(rule.kind, RuleKind::Fact | RuleKind::Delete) {
                continue;
            }
            let f = fires(&freq, id);
            let senders = holders(&spread, rule);
            let (delivered, held_by) = match (rule.kind, broadcast_target(rule)) {
                (RuleKind::Async, Some(target)) => (f * senders, fanout(&target)),
                (RuleKind::Async, None) => (f * senders, 1.0),
                _ => (f, senders),
            };
            // Max, not sum: a union of paths is at least its busiest one, and loops stay bounded.
            next[head.index()] = next[head.index()].max(delivered);
            next_spread[head.index()] = next_spread[head.index()].max(held_by);
        }
        freq = next;
        spread = next_spread;
    }
    let mut cost = vec![0.0; program.rules.len()];
    for id in program.rule_ids() {
        let rule = program.rule(id);
        if rule.kind == RuleKind::Fact {
            continue;
        }
        let f = options
            .profile
            .as_ref()
            .and_then(|p| p.rule_facts.get(&Profile::key(rule)).copied())
            .unwrap_or_else(|| fires(&freq, id));
        let sends = match (rule.kind, broadcast_target(rule)) {
            (RuleKind::Async, Some(target)) => fanout(&target),
            (RuleKind::Async, None) => 1.0,
            _ => 0.0,
        };
        cost[id.index()] = f * (1.0 + rule.atoms().count() as f64 + sends);
    }
    cost
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
            crate::model::HeadArg::Expr(e) if !matches!(e.kind, ExprKind::SelfAddr) => Some(e.as_var()),
            _ => None,
        })
        .collect();
    let body: Vec<Option<&str>> = atom.args.iter().map(|e| e.as_var()).collect();
    args == body
}

/// `X` when the rule sends to every node of `nodes("X", dest)` (not to one `partner`).
fn broadcast_target(rule: &crate::model::Rule) -> Option<String> {
    match rule.addressee()? {
        (component, None) => Some(component.to_string()),
        (_, Some(_)) => None,
    }
}

fn finish_estimate(components: Vec<ComponentCost>) -> Estimate {
    let worst = components.iter().map(ComponentCost::per_instance).fold(0.0, f64::max);
    let throughput = if worst > 0.0 { 100.0 / worst } else { 0.0 };
    let machines = components.iter().map(|c| c.logical * c.partitions).sum();
    Estimate { components, throughput, machines }
}

/// Spread the budget: every logical node once, then each further instance (one more per logical
/// node of the component) to the most loaded scalable component.
pub fn estimate(program: &Program, options: &Options) -> Estimate {
    let ctx = Context::new(program);
    let load = loads(program, options);
    let mut components: Vec<ComponentCost> = program
        .component_ids()
        .map(|id| {
            let c = program.component(id);
            let verdict = ctx.verdict(id, &c.rules);
            let sealed = options.sealed.contains(&c.name) && c.placement.is_some();
            let class = match &c.placement {
                Some(p) if sealed => {
                    format!("sealed, {}", p.keys.iter().map(|k| k.column.as_str()).collect::<Vec<_>>().join("/"))
                }
                _ => verdict.class.label(),
            };
            ComponentCost {
                name: c.name.clone(),
                class,
                load: load[id.index()],
                logical: options.logical(program, &c.name),
                partitions: 1,
                scalable: sealed || !matches!(verdict.class, ScalingClass::Sequential),
            }
        })
        .collect();
    let mut used: usize = components.iter().map(|c| c.logical).sum();
    // Instances beyond the slowest sequential component buy nothing.
    let floor = components.iter().filter(|c| !c.scalable).map(|c| c.load).fold(0.0, f64::max);
    while let Some(best) = components
        .iter_mut()
        .filter(|c| c.scalable && c.load > 0.0 && c.per_instance() > floor)
        .max_by(|a, b| a.per_instance().total_cmp(&b.per_instance()))
    {
        if used + best.logical > options.machines {
            break;
        }
        used += best.logical;
        best.partitions += 1;
    }
    finish_estimate(components)
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
    let mut current = baseline.clone();
    let mut steps = vec![Step {
        description: "original program, one instance per logical node".into(),
        throughput: baseline.throughput,
        machines: baseline.machines,
        checked: None,
    }];
    let mut taken: Vec<String> = Vec::new();
    for _ in 0..8 {
        let a = crate::analyze(&text);
        let scaled = estimate(&a.program, options);
        let bottleneck = scaled
            .components
            .iter()
            .max_by(|x, y| x.per_instance().total_cmp(&y.per_instance()))
            .and_then(|c| a.program.component_by_name(&c.name));
        // Every candidate that raises the prediction, best first; the first that passes the
        // check is taken.
        let mut better: Vec<(String, Estimate, String)> = Vec::new();
        if let Some(cid) = bottleneck {
            let comp_name = a.program.component(cid).name.clone();
            for set in candidates(&a.program, cid) {
                let name = part_name(&a.program, &set, &taken);
                let Ok(result) = rewrite::decouple(&a, &comp_name, &set, &name) else { continue };
                let next = crate::analyze(&result.new_text);
                let est = estimate(&next.program, options);
                if est.throughput > scaled.throughput * 1.01 {
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
        let mut chosen = None;
        for (new_text, _, description) in better {
            if let Ok(checked) = gate(&new_text, &description, invariants_only) {
                chosen = Some((new_text, description, checked));
                break;
            }
        }
        let Some((new_text, description, checked)) = chosen else { break };
        text = new_text;
        let a = crate::analyze(&text);
        taken.extend(a.program.components.iter().map(|c| c.name.clone()));
        current = estimate(&a.program, &unscaled);
        steps.push(Step { description, throughput: current.throughput, machines: current.machines, checked });
    }
    // Sealed partitioning of a sequential component, when the scale-out it allows pays.
    // Each accepted sealing is the base of the next candidate.
    let mut options = options.clone();
    let mut a = crate::analyze(&text);
    let scaled = estimate(&a.program, &options);
    let mut now = scaled.throughput;
    let sequential: Vec<String> =
        scaled.components.iter().filter(|c| !c.scalable && c.load > 0.0).map(|c| c.name.clone()).collect();
    for name in sequential {
        let Ok(result) = rewrite::partition_sealed(&a, &name, None) else { continue };
        let mut sealed = options.clone();
        sealed.sealed.push(name.clone());
        let next = crate::analyze(&result.new_text);
        let est = estimate(&next.program, &sealed);
        if est.throughput > now * 1.01 {
            let description = format!(
                "sealed partitioning of `{name}`: its aggregates over every fact held per instance, replies sealed"
            );
            let Ok(checked) = gate(&result.new_text, &description, true) else { continue };
            invariants_only = true;
            text = result.new_text;
            options = sealed;
            a = next;
            now = est.throughput;
            current = estimate(&a.program, &Options { machines: 0, ..options.clone() });
            steps.push(Step { description, throughput: current.throughput, machines: current.machines, checked });
        }
    }
    // Scale out: add instances as the budget allows, recording each component's placement.
    let mut target = estimate(&a.program, &options);
    let mut partial = current.components.clone();
    for cost in target.components.iter_mut().filter(|c| c.partitions > 1) {
        let what = if cost.class == "parallel" { "replicate" } else { "partition" };
        let description =
            format!("{what} `{}` ({}) into {} instances per node", cost.name, cost.class, cost.partitions);
        let mut checked = None;
        if options.sealed.contains(&cost.name) {
            // Already carries its `partitioned by`, checked with the sealing.
        } else if let Ok(result) = rewrite::partition(&crate::analyze(&text), &cost.name, None) {
            match gate(&result.new_text, &description, invariants_only) {
                Ok(summary) => {
                    text = result.new_text;
                    checked = summary;
                }
                Err(()) => {
                    cost.partitions = 1;
                    continue;
                }
            }
        }
        if let Some(p) = partial.iter_mut().find(|p| p.name == cost.name) {
            p.partitions = cost.partitions;
        }
        let est = finish_estimate(partial.clone());
        steps.push(Step { description, throughput: est.throughput, machines: est.machines, checked });
    }
    let target = finish_estimate(target.components);
    let deployment = deployment_toml(&target);
    Plan { text, steps, estimate: target, deployment, refused }
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

pub fn deployment_toml(estimate: &Estimate) -> String {
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
    out
}

/// The steps as an aligned table, then the final components.
pub fn render_steps(plan: &Plan) -> String {
    let base = plan.steps.first().map_or(1.0, |s| s.throughput.max(1e-9));
    let mut out = String::from("step  throughput   gain  machines  rewrite\n");
    for (i, s) in plan.steps.iter().enumerate() {
        out.push_str(&format!(
            "{:>4}  {:>10.2}  {:>4.1}x  {:>8}  {}\n",
            i,
            s.throughput,
            s.throughput / base,
            s.machines,
            s.description
        ));
    }
    let checks: Vec<(usize, &String)> =
        plan.steps.iter().enumerate().filter_map(|(i, s)| s.checked.as_ref().map(|c| (i, c))).collect();
    if !checks.is_empty() {
        out.push_str("\nchecked before each step (bounded refinement check against the original):\n");
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
    out.push_str("\ncomponent             load/request  nodes  instances  class\n");
    for c in &plan.estimate.components {
        out.push_str(&format!("{:<22} {:>11.1}  {:>5}  {:>9}  {}\n", c.name, c.load, c.logical, c.partitions, c.class));
    }
    out
}
