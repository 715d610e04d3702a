//! Scaling classes: for every rule and component, whether it can run on any number of instances
//! (parallel), on instances that each own a share of the keys (partitioned by key), or only on
//! one (sequential), always with the reason that decides it, located in the source.
//!
//! Entry point: [`classify`]. Sub-analyses: [`monotone`] (negation, aggregation, deletion and
//! what flows from them), [`fd`] (functional dependencies), and co-hashing policies
//! ([`classify_rules`] for any subset of a component's rules, which the rewrites use).

pub mod display;
pub mod fd;
pub mod monotone;
mod policy;

use serde::Serialize;

use crate::model::{ComponentId, HeadArg, Program, RelationId, RuleId, RuleKind};
use crate::text::TextRange;
pub use fd::{FdOrigin, FunctionalDependency};

/// Where the facts of one relation live when a component runs as several instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RelationPlacement {
    /// On instance `hash(column) mod N`.
    Key { column: usize, name: String },
    /// On every instance (inputs and channels are then broadcast).
    Replicated,
    /// Wherever they were delivered or derived: only used one fact at a time.
    Anywhere,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlacedRelation {
    pub relation: RelationId,
    pub name: String,
    pub placement: RelationPlacement,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "class")]
pub enum ScalingClass {
    /// Monotone, one incoming fact at a time: any number of instances, any routing.
    Parallel,
    /// Valid co-hashing policy: every relation placed by a key column or replicated.
    PartitionedBy { policy: Vec<PlacedRelation> },
    /// Neither; the reasons name what forbids it.
    Sequential,
}

impl ScalingClass {
    /// `parallel`, `partitioned by slot`, `partitioned by column ballot (variable b)`, `sequential`
    /// (see [`key_label`]).
    pub fn label(&self, program: &Program) -> String {
        match self {
            ScalingClass::Parallel => "parallel".into(),
            ScalingClass::Sequential => "sequential".into(),
            ScalingClass::PartitionedBy { policy } => format!("partitioned by {}", key_label(program, policy)),
        }
    }
    pub fn is_sequential(&self) -> bool {
        matches!(self, ScalingClass::Sequential)
    }
}

/// How a column reads in explanations. A declared column is its name; an undeclared (scratch)
/// relation's column is what its first rule's head puts there (named after it by lowering): the
/// variable `b`, the aggregate `max(b)`, or, for an expression, its position (`column 2`).
/// Returns whether it is a declared column's name, and the words.
pub fn column_words(program: &Program, relation: RelationId, column: usize) -> (bool, String) {
    let rel = program.relation(relation);
    let name = rel.columns.get(column).map_or("?", |c| c.name.as_str());
    if rel.declared {
        return (true, name.to_string());
    }
    let head_arg = program.rules_deriving(relation).next().and_then(|r| program.rule(r).head.args.get(column));
    let words = match head_arg {
        Some(HeadArg::Expr(e)) if e.as_var() == Some(name) => name.to_string(),
        Some(HeadArg::Aggregate(a)) => format!("{}({})", a.func.name(), display::expr(&a.arg)),
        _ => format!("column {}", column + 1),
    };
    (false, words)
}

/// A key column in words, outside its relation: `column ballot`, `variable b`, `max(b) of
/// heard_max`, `column 2 of x`.
fn key_column_words(program: &Program, relation: RelationId, column: usize) -> (bool, String) {
    let (declared, words) = column_words(program, relation, column);
    let rel = &program.relation(relation).name;
    let is_variable = !declared && program.relation(relation).columns.get(column).is_some_and(|c| c.name == words);
    let words = match (declared, is_variable) {
        (true, _) => format!("column {words}"),
        (false, true) => format!("variable {words}"),
        (false, false) => format!("{words} of {rel}"),
    };
    (declared, words)
}

/// The key of a partitioning in words. One value flows through the keyed relations' columns,
/// which may be named differently: the most common declared column's name leads, the others follow
/// in parentheses (`column ballot (variable b)`); a key that has one name everywhere is just that
/// name (`slot`), and an aggregate's column says so (`max(b) of heard_max`).
pub fn key_label(program: &Program, policy: &[PlacedRelation]) -> String {
    // (words, declared, how many relations) per distinct name.
    let mut names: Vec<(&str, String, bool, usize)> = Vec::new();
    for p in policy {
        if let RelationPlacement::Key { name, column } = &p.placement {
            match names.iter_mut().find(|(n, ..)| n == name) {
                Some(entry) => entry.3 += 1,
                None => {
                    let (declared, words) = key_column_words(program, p.relation, *column);
                    names.push((name, words, declared, 1));
                }
            }
        }
    }
    names.sort_by_key(|(name, _, declared, count)| (!declared, std::cmp::Reverse(*count), *name));
    match names.as_slice() {
        [] => String::new(),
        // One name for the key, a declared column's or a variable's: nothing to tell apart.
        [(name, words, ..)] if [format!("column {name}"), format!("variable {name}")].contains(words) => {
            name.to_string()
        }
        [(_, first, ..)] => first.clone(),
        [(_, first, ..), rest @ ..] => {
            format!("{first} ({})", rest.iter().map(|(_, w, ..)| w.as_str()).collect::<Vec<_>>().join(", "))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    // Not monotone.
    Negation,
    Aggregation,
    Deletion,
    // No co-hashing.
    JoinAcrossKeys,
    ScatteredJoin,
    NegationAcrossInstances,
    AggregateAcrossKeys,
    AggregateAcrossInstances,
    HeadKeyMismatch,
    ReplicatedFromPartitioned,
    DeleteAcrossInstances,
    KeyNotVariable,
    ReplicatedNotMonotone,
    // Explanations of a positive class.
    AgreesOnKey,
    OneFactAtATime,
}

/// One fact about the program that decides a class: which rule, which atom or head (the range),
/// which relation, in a sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub kind: ReasonKind,
    pub rule: Option<RuleId>,
    pub relation: Option<RelationId>,
    pub range: TextRange,
    pub message: String,
}

impl Reason {
    pub fn new(
        kind: ReasonKind,
        rule: Option<RuleId>,
        relation: Option<RelationId>,
        range: TextRange,
        message: String,
    ) -> Self {
        Reason { kind, rule, relation, range, message }
    }
    /// The message prefixed with the rule it is about.
    pub fn render(&self, program: &Program) -> String {
        match self.rule {
            Some(rule) => format!("`{}` {}", display::rule(program.rule(rule)), self.message),
            None => self.message.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub class: ScalingClass,
    /// For parallel and partitioned: why not better (empty when parallel). For sequential: what
    /// forbids partitioning.
    pub reasons: Vec<Reason>,
    /// One sentence for a hover or the CLI.
    pub summary: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleScaling {
    pub rule: RuleId,
    pub component: ComponentId,
    pub range: TextRange,
    /// The rule's own verdict; in a sequential component, what the rule would be on its own.
    pub verdict: Verdict,
    /// Negation, aggregation over growing facts, deletion (empty: monotone).
    pub nonmonotone: Vec<Reason>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ComponentScaling {
    pub component: ComponentId,
    pub name: String,
    pub range: TextRange,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, Serialize)]
pub struct RelationScaling {
    pub relation: RelationId,
    pub name: String,
    pub dependencies: Vec<FunctionalDependency>,
    /// Never changes after start (facts, `nodes`, and what only they derive).
    pub is_static: bool,
    /// The first non-monotone rule upstream, through rules and messages.
    pub nonmonotone: Option<Reason>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScalingReport {
    pub components: Vec<ComponentScaling>,
    /// Indexed by `RuleId`.
    pub rules: Vec<RuleScaling>,
    /// Indexed by `RelationId`.
    pub relations: Vec<RelationScaling>,
}

impl ScalingReport {
    pub fn rule(&self, rule: RuleId) -> &RuleScaling {
        &self.rules[rule.index()]
    }
    pub fn component(&self, component: ComponentId) -> &ComponentScaling {
        &self.components[component.index()]
    }
}

/// Shared facts every verdict needs; computed once per program.
pub struct Context<'p> {
    pub program: &'p Program,
    pub is_static: Vec<bool>,
    pub fds: Vec<Vec<FunctionalDependency>>,
    pub causes: Vec<Vec<Reason>>,
    /// Variable classes of every rule, computed once.
    vars: Vec<fd::RuleVars>,
    /// Verdicts of single rules, asked for by both component and rule classification.
    alone: std::cell::RefCell<std::collections::HashMap<RuleId, Verdict>>,
}

impl<'p> Context<'p> {
    pub fn new(program: &'p Program) -> Self {
        let is_static = monotone::static_relations(program);
        let fds = fd::dependencies(program);
        let causes = program.rule_ids().map(|r| monotone::rule_causes(program, r, &is_static)).collect();
        let vars = program.rules.iter().map(fd::RuleVars::new).collect();
        Context { program, is_static, fds, causes, vars, alone: Default::default() }
    }

    /// The verdict of one rule on its own (memoised).
    pub fn rule_alone(&self, component: ComponentId, rule: RuleId) -> Verdict {
        if let Some(v) = self.alone.borrow().get(&rule) {
            return v.clone();
        }
        let v = self.verdict(component, &[rule]);
        self.alone.borrow_mut().insert(rule, v.clone());
        v
    }

    fn scope(&self, component: ComponentId, rules: &[RuleId]) -> policy::Scope<'_> {
        policy::Scope {
            program: self.program,
            component,
            rules: rules.to_vec(),
            is_static: &self.is_static,
            fds: &self.fds,
            causes: &self.causes,
            vars: &self.vars,
        }
    }

    /// The verdict for a set of rules of one component run as one unit (a whole component, or
    /// the part a rewrite would move). Relations the rules read but do not derive count as inputs.
    pub fn verdict(&self, component: ComponentId, rules: &[RuleId]) -> Verdict {
        let scope = self.scope(component, rules);
        let causes: Vec<Reason> = rules.iter().flat_map(|r| self.causes[r.index()].iter().cloned()).collect();
        let anywhere = scope.attempt(None);
        // A deletion of the very facts the rule reads (`delete booting() :- booting()`) only
        // ever removes facts from the instance that holds them: per fact, like a monotone rule.
        let self_cleanup = |r: &RuleId| {
            let rule = self.program.rule(*r);
            rule.kind == RuleKind::Delete
                && rule.atoms().all(|a| !a.negated && a.relation_id == rule.head.relation_id)
                && self.causes[r.index()].iter().all(|c| c.kind == ReasonKind::Deletion)
        };
        if (causes.is_empty() || rules.iter().all(self_cleanup)) && anywhere.is_valid() {
            return Verdict {
                class: ScalingClass::Parallel,
                reasons: Vec::new(),
                summary:
                    "parallel: monotone, and every rule reads one incoming fact at a time besides replicated state"
                        .into(),
            };
        }
        let (valid, failed) = policy::search(&scope);
        if let Some(best) = valid.into_iter().next() {
            let policy: Vec<PlacedRelation> = best
                .placements
                .iter()
                .map(|(&relation, placement)| PlacedRelation {
                    relation,
                    name: self.program.relation(relation).name.clone(),
                    placement: placement.clone(),
                })
                .collect();
            let replicated: Vec<String> = policy
                .iter()
                .filter(|p| p.placement == RelationPlacement::Replicated)
                .map(|p| p.name.clone())
                .collect();
            let class = ScalingClass::PartitionedBy { policy };
            let mut summary = format!(
                "{}: every join, aggregate, negation and deletion combines facts that agree on the key",
                class.label(self.program)
            );
            if !replicated.is_empty() {
                summary.push_str(&format!(" (replicated: {})", replicated.join(", ")));
            }
            let mut reasons = causes;
            if reasons.is_empty() {
                reasons = anywhere.conflicts;
            }
            if let Some(why) = reasons.first() {
                summary.push_str(&format!("; not parallel: {}", why.render(self.program)));
            }
            return Verdict { class, reasons, summary };
        }
        // Best reasons first: rules that cannot be split even on their own, then what the
        // closest policy tripped over, then non-monotonicity.
        let mut reasons: Vec<Reason> = Vec::new();
        if rules.len() > 1 {
            for &rule in rules {
                let alone = self.rule_alone(component, rule);
                let intrinsic = alone.reasons.first().filter(|r| {
                    !matches!(r.kind, ReasonKind::Negation | ReasonKind::Aggregation | ReasonKind::Deletion)
                });
                if let (true, Some(reason)) = (alone.class.is_sequential(), intrinsic) {
                    reasons.push(reason.clone());
                }
            }
        }
        if reasons.is_empty() {
            reasons = failed.into_iter().next().map(|a| a.conflicts).unwrap_or_default();
        }
        if reasons.is_empty() {
            reasons = anywhere.conflicts;
        }
        if reasons.is_empty() {
            reasons = causes;
        }
        reasons.truncate(4);
        let summary = match reasons.first() {
            Some(why) => format!("sequential: {}", why.render(self.program)),
            None => "sequential".into(),
        };
        Verdict { class: ScalingClass::Sequential, reasons, summary }
    }
}

impl Context<'_> {
    /// Why no policy keyed by a column named `key` works: the conflicts of the attempts seeded
    /// with each input of the rules that has such a column (fewest conflicts first).
    pub fn key_conflicts(&self, component: ComponentId, rules: &[RuleId], key: &str) -> Vec<Reason> {
        let scope = self.scope(component, rules);
        let mut attempts: Vec<_> = scope
            .seeds()
            .into_iter()
            .filter(|&(r, c)| self.program.relation(r).columns[c].name == key)
            .map(|seed| scope.attempt(Some(seed)))
            .filter(|a| !a.is_valid())
            .collect();
        attempts.sort_by_key(|a| a.conflicts.len());
        attempts.into_iter().next().map(|a| a.conflicts).unwrap_or_default()
    }

    /// Every valid co-hashing policy for these rules, best first (most rules partitioned).
    pub fn policies(&self, component: ComponentId, rules: &[RuleId]) -> Vec<Vec<PlacedRelation>> {
        self.policies_in(&self.scope(component, rules))
    }

    /// Like [`Context::policies`], with `per_instance` relations held by each instance for itself
    /// (sealed partitioning): like replicated ones, any instance may join with them, and the rules
    /// deriving them are not in `rules`.
    pub fn policies_with_per_instance(
        &self,
        component: ComponentId,
        rules: &[RuleId],
        per_instance: &[RelationId],
    ) -> Vec<Vec<PlacedRelation>> {
        let mut fixed = self.is_static.clone();
        for r in per_instance {
            fixed[r.index()] = true;
        }
        let scope = policy::Scope { is_static: &fixed, ..self.scope(component, rules) };
        self.policies_in(&scope)
    }

    fn policies_in(&self, scope: &policy::Scope<'_>) -> Vec<Vec<PlacedRelation>> {
        policy::search(scope)
            .0
            .into_iter()
            .map(|a| {
                a.placements
                    .into_iter()
                    .map(|(relation, placement)| PlacedRelation {
                        relation,
                        name: self.program.relation(relation).name.clone(),
                        placement,
                    })
                    .collect()
            })
            .collect()
    }
}

/// Classify every rule and component of a program.
pub fn classify(program: &Program) -> ScalingReport {
    classify_in(&Context::new(program))
}

/// [`classify`] with a context the caller keeps for more questions about the same program.
pub fn classify_in(ctx: &Context<'_>) -> ScalingReport {
    let program = ctx.program;
    let (components, mut rules) = classify_with(ctx, program.component_ids());
    rules.sort_by_key(|r| r.rule);
    let nonmonotone = monotone::nonmonotone_relations(program, &ctx.causes);
    let relations = program
        .relation_ids()
        .map(|id| RelationScaling {
            relation: id,
            name: program.relation(id).name.clone(),
            dependencies: ctx.fds[id.index()].clone(),
            is_static: ctx.is_static[id.index()],
            nonmonotone: nonmonotone[id.index()].clone(),
        })
        .collect();
    ScalingReport { components, rules, relations }
}

/// The verdicts of some components and of their rules, as [`classify`] gives them: what an editor
/// needs for the lines on screen, without judging every other component after each keystroke.
pub fn classify_components(program: &Program, ids: &[ComponentId]) -> (Vec<ComponentScaling>, Vec<RuleScaling>) {
    classify_with(&Context::new(program), ids.iter().copied())
}

fn classify_with(
    ctx: &Context<'_>,
    ids: impl Iterator<Item = ComponentId>,
) -> (Vec<ComponentScaling>, Vec<RuleScaling>) {
    let program = ctx.program;
    let mut components = Vec::new();
    let mut rules = Vec::new();
    for id in ids {
        let component = program.component(id);
        let verdict = ctx.verdict(id, &component.rules);
        for &rule_id in &component.rules {
            rules.push(RuleScaling {
                rule: rule_id,
                component: id,
                range: program.rule(rule_id).range,
                verdict: rule_verdict(ctx, rule_id, &verdict),
                nonmonotone: ctx.causes[rule_id.index()].clone(),
            });
        }
        components.push(ComponentScaling {
            component: id,
            name: component.name.clone(),
            range: component.name_range,
            verdict,
        });
    }
    (components, rules)
}

/// A rule inside a parallel or partitioned component shares the component's policy; inside a
/// sequential one it is judged on its own, and is sequential where the component's reasons point.
fn rule_verdict(ctx: &Context<'_>, id: RuleId, component: &Verdict) -> Verdict {
    let program = ctx.program;
    let rule = program.rule(id);
    let own_conflicts: Vec<Reason> = component.reasons.iter().filter(|r| r.rule == Some(id)).cloned().collect();
    match &component.class {
        ScalingClass::Sequential if !own_conflicts.is_empty() => {
            let summary = format!("sequential: {}", own_conflicts[0].message);
            Verdict { class: ScalingClass::Sequential, reasons: own_conflicts, summary }
        }
        ScalingClass::Sequential => {
            let mut alone = ctx.rule_alone(rule.component, id);
            alone.summary = format!("on its own (its component is sequential): {}", alone.summary);
            alone
        }
        ScalingClass::Parallel => component.clone(),
        ScalingClass::PartitionedBy { policy } => {
            let used: Vec<RelationId> =
                rule.atoms().filter_map(|a| a.relation_id).chain(rule.head.relation_id).collect();
            let own: Vec<PlacedRelation> = policy.iter().filter(|p| used.contains(&p.relation)).cloned().collect();
            let keyed = rule.atoms().any(|a| {
                own.iter()
                    .any(|p| Some(p.relation) == a.relation_id && matches!(p.placement, RelationPlacement::Key { .. }))
            });
            if keyed && rule.kind != RuleKind::Fact {
                let class = ScalingClass::PartitionedBy { policy: own };
                let summary = format!("{} (as part of the component's policy)", class.label(program));
                Verdict { class, reasons: ctx.causes[id.index()].clone(), summary }
            } else {
                ctx.rule_alone(rule.component, id)
            }
        }
    }
}

/// The report as plain text: one block per component, one line per rule (`compart explain`).
pub fn render(program: &Program, report: &ScalingReport) -> String {
    let mut out = String::new();
    for c in &report.components {
        out.push_str(&format!("component {}: {}\n", c.name, c.verdict.class.label(program)));
        if let ScalingClass::PartitionedBy { policy } = &c.verdict.class {
            for p in policy {
                let placement = match &p.placement {
                    RelationPlacement::Key { column, .. } => {
                        format!("by {}", column_words(program, p.relation, *column).1)
                    }
                    RelationPlacement::Replicated => "replicated".into(),
                    RelationPlacement::Anywhere => "anywhere".into(),
                };
                out.push_str(&format!("    {}: {placement}\n", p.name));
            }
        }
        for reason in &c.verdict.reasons {
            out.push_str(&format!("    because {}\n", reason.render(program)));
        }
        for &rule in &program.component(c.component).rules {
            let r = report.rule(rule);
            if program.rule(rule).kind == RuleKind::Fact {
                continue;
            }
            out.push_str(&format!("  {:<24} {}\n", r.verdict.class.label(program), display::rule(program.rule(rule))));
            if r.verdict.class.is_sequential() {
                if let Some(why) = r.verdict.reasons.first() {
                    out.push_str(&format!("  {:<24}   because {}\n", "", why.message));
                }
            }
        }
    }
    for r in &report.relations {
        for fd in &r.dependencies {
            if fd.origin == FdOrigin::DeclaredKey {
                continue;
            }
            let words = |c: usize| column_words(program, r.relation, c).1;
            let rhs = words(fd.rhs);
            let line = match fd.lhs.as_slice() {
                [] => format!("{rhs} has a single value"),
                [one] => format!("{} determines {rhs}", words(*one)),
                lhs => format!("{} determine {rhs}", lhs.iter().map(|&c| words(c)).collect::<Vec<_>>().join(", ")),
            };
            out.push_str(&format!("dependency {}: {line}\n", r.name));
        }
    }
    out
}
