//! Co-hashing: distribution policies for a set of rules of one component.
//!
//! A policy places every relation the rules touch: by one of its columns (`Key`: instance
//! `hash(column) mod N`), on every instance (`Replicated`), or wherever its facts were derived or
//! delivered (`Anywhere`). It is valid when every join, negation, aggregate group-by and deletion
//! only combines facts that land on the same instance. The search seeds one (relation, column),
//! propagates through the rules (a variable at the key column must sit at the key column of every
//! other atom, or the other relation must be replicated), then checks every rule.

use std::collections::{BTreeMap, HashSet};

use crate::model::{Atom, ComponentId, HeadArg, Program, RelationId, RelationKind, Rule, RuleId, RuleKind, Type};
use crate::scaling::fd::{expr_vars, FunctionalDependency, RuleVars};
use crate::scaling::{Reason, ReasonKind, RelationPlacement};

pub(crate) struct Scope<'p> {
    pub program: &'p Program,
    pub component: ComponentId,
    pub rules: Vec<RuleId>,
    pub is_static: &'p [bool],
    pub fds: &'p [Vec<FunctionalDependency>],
    /// Non-monotone causes of every rule of the program.
    pub causes: &'p [Vec<Reason>],
    /// Variable classes of every rule of the program.
    pub vars: &'p [RuleVars],
}

#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    pub placements: BTreeMap<RelationId, RelationPlacement>,
    pub conflicts: Vec<Reason>,
    /// Rules whose body reads a relation placed by key: the work the policy spreads out.
    pub partitioned_rules: usize,
    /// Inputs and channels that must be broadcast to every instance.
    pub broadcast_sources: usize,
}

impl Attempt {
    pub fn is_valid(&self) -> bool {
        self.conflicts.is_empty()
    }
    pub fn has_key(&self) -> bool {
        self.placements.values().any(|p| matches!(p, RelationPlacement::Key { .. }))
    }
}

impl<'p> Scope<'p> {
    fn fixed(&self, relation: RelationId) -> bool {
        let r = self.program.relation(relation);
        r.kind == RelationKind::Builtin || self.is_static[relation.index()]
    }

    /// The head relation when the rule writes a relation of this component (not a message or an output).
    fn local_head(&self, rule: &Rule) -> Option<RelationId> {
        let head = rule.head.relation_id?;
        let rel = self.program.relation(head);
        let local =
            rule.kind != RuleKind::Async && rel.component == Some(self.component) && rel.kind != RelationKind::Output;
        local.then_some(head)
    }

    fn derived_in_scope(&self, relation: RelationId) -> bool {
        self.rules.iter().any(|&r| {
            let rule = self.program.rule(r);
            rule.kind != RuleKind::Fact && rule.kind != RuleKind::Delete && self.local_head(rule) == Some(relation)
        })
    }

    /// Relations the rules read or write locally, in first-use order.
    pub fn relations(&self) -> Vec<RelationId> {
        let mut out = Vec::new();
        for &r in &self.rules {
            let rule = self.program.rule(r);
            let ids = rule.atoms().filter_map(|a| a.relation_id).chain(self.local_head(rule));
            for id in ids {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    fn placement(
        &self,
        p: &BTreeMap<RelationId, RelationPlacement>,
        relation: RelationId,
    ) -> Option<RelationPlacement> {
        if self.fixed(relation) {
            return Some(RelationPlacement::Replicated);
        }
        p.get(&relation).cloned()
    }

    fn key(&self, relation: RelationId, column: usize) -> RelationPlacement {
        let name = self.program.relation(relation).columns.get(column).map_or(String::new(), |c| c.name.clone());
        RelationPlacement::Key { column, name }
    }

    /// Every seed worth trying: each column (not boolean) of each relation the rules read but do not
    /// derive (their inputs); derived relations follow from the rules.
    pub fn seeds(&self) -> Vec<(RelationId, usize)> {
        let mut out = Vec::new();
        for relation in self.relations() {
            if self.fixed(relation) || self.derived_in_scope(relation) {
                continue;
            }
            for (c, column) in self.program.relation(relation).columns.iter().enumerate() {
                if column.ty != Type::Bool {
                    out.push((relation, c));
                }
            }
        }
        out
    }

    pub fn attempt(&self, seed: Option<(RelationId, usize)>) -> Attempt {
        let mut p = BTreeMap::new();
        let relations = self.relations();
        if let Some((relation, column)) = seed {
            p.insert(relation, self.key(relation, column));
            self.propagate(&mut p);
            // Parts not connected to the seed: a column of the same name is the natural key.
            let seed_name = &self.program.relation(relation).columns[column].name;
            for &r in &relations {
                if !self.fixed(r) && !p.contains_key(&r) && !self.derived_in_scope(r) {
                    if let Some(c) = self.program.relation(r).column_index(seed_name) {
                        p.insert(r, self.key(r, c));
                        self.propagate(&mut p);
                    }
                }
            }
        }
        self.propagate(&mut p);
        for &r in &relations {
            if !self.fixed(r) && !p.contains_key(&r) && !self.derived_in_scope(r) {
                p.insert(r, RelationPlacement::Anywhere);
                self.propagate(&mut p);
            }
        }
        for &r in &relations {
            if !self.fixed(r) && !p.contains_key(&r) {
                p.insert(r, RelationPlacement::Replicated);
                self.propagate(&mut p);
            }
        }
        let conflicts = self.rules.iter().flat_map(|&r| self.validate(r, &p)).collect();
        let partitioned_rules = self
            .rules
            .iter()
            .filter(|&&r| {
                self.program.rule(r).atoms().any(|a| {
                    a.relation_id
                        .is_some_and(|id| matches!(self.placement(&p, id), Some(RelationPlacement::Key { .. })))
                })
            })
            .count();
        let broadcast_sources = p
            .iter()
            .filter(|(r, pl)| {
                matches!(pl, RelationPlacement::Replicated)
                    && matches!(self.program.relation(**r).kind, RelationKind::Input | RelationKind::Channel)
            })
            .count();
        Attempt { placements: p, conflicts, partitioned_rules, broadcast_sources }
    }

    /// The variable at the key column of the first keyed atom, or of a keyed local head.
    fn location_var<'r>(&self, rule: &'r Rule, p: &BTreeMap<RelationId, RelationPlacement>) -> Option<&'r str> {
        for atom in rule.atoms() {
            if let Some(RelationPlacement::Key { column, .. }) = atom.relation_id.and_then(|r| self.placement(p, r)) {
                if let Some(v) = atom.args.get(column).and_then(|e| e.as_var()) {
                    return Some(v);
                }
            }
        }
        let head = self.local_head(rule)?;
        if let Some(RelationPlacement::Key { column, .. }) = self.placement(p, head) {
            if let Some(HeadArg::Expr(e)) = rule.head.args.get(column) {
                return e.as_var();
            }
        }
        None
    }

    fn propagate(&self, p: &mut BTreeMap<RelationId, RelationPlacement>) {
        for _ in 0..64 {
            let mut changed = false;
            for &rule_id in &self.rules {
                let rule = self.program.rule(rule_id);
                if rule.kind == RuleKind::Fact {
                    continue;
                }
                let vars = &self.vars[rule_id.index()];
                let head = self.local_head(rule);
                let mut set =
                    |p: &mut BTreeMap<RelationId, RelationPlacement>, r: RelationId, pl: RelationPlacement| {
                        if !self.fixed(r) && !p.contains_key(&r) {
                            p.insert(r, pl);
                            changed = true;
                        }
                    };
                if let Some(v) = self.location_var(rule, p) {
                    for atom in rule.atoms() {
                        let Some(r) = atom.relation_id else { continue };
                        let column = self.column_of(atom, vars, v, r);
                        let pl = column.map_or(RelationPlacement::Replicated, |c| self.key(r, c));
                        set(p, r, pl);
                    }
                    if let Some(h) = head {
                        let column = rule.head.args.iter().position(|a| match a {
                            HeadArg::Expr(e) => e.as_var().is_some_and(|x| vars.same(x, v)),
                            HeadArg::Aggregate(_) => false,
                        });
                        set(p, h, column.map_or(RelationPlacement::Anywhere, |c| self.key(h, c)));
                    }
                    continue;
                }
                let body: Vec<Option<RelationPlacement>> = rule
                    .atoms()
                    .filter_map(|a| Some((a, a.relation_id?)))
                    .map(|(a, r)| match self.placement(p, r) {
                        Some(RelationPlacement::Key { column, .. })
                            if a.args.get(column).and_then(|e| e.as_var()).is_none() =>
                        {
                            Some(RelationPlacement::Anywhere)
                        }
                        other => other,
                    })
                    .collect();
                let head_placement = head.and_then(|h| self.placement(p, h));
                if head_placement == Some(RelationPlacement::Replicated) && rule.kind != RuleKind::Delete {
                    for r in rule.atoms().filter_map(|a| a.relation_id) {
                        set(p, r, RelationPlacement::Replicated);
                    }
                } else if let Some(h) = head {
                    if body.contains(&Some(RelationPlacement::Anywhere)) {
                        set(p, h, RelationPlacement::Anywhere);
                    } else if body.iter().all(|b| b == &Some(RelationPlacement::Replicated)) {
                        set(p, h, RelationPlacement::Replicated);
                    }
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// Where variable `v` (or an equal one) sits in `atom`, preferring a declared key column.
    fn column_of(&self, atom: &Atom, vars: &RuleVars, v: &str, relation: RelationId) -> Option<usize> {
        let matches: Vec<usize> =
            (0..atom.args.len()).filter(|&i| atom.args[i].as_var().is_some_and(|x| vars.same(x, v))).collect();
        let key = self.program.relation(relation).key.clone().unwrap_or_default();
        matches.iter().copied().find(|c| key.contains(c)).or(matches.first().copied())
    }

    fn validate(&self, rule_id: RuleId, p: &BTreeMap<RelationId, RelationPlacement>) -> Vec<Reason> {
        let rule = self.program.rule(rule_id);
        let mut out = Vec::new();
        if rule.kind == RuleKind::Fact {
            // Every instance starts with the initial facts: a relation placed by key would hold
            // this one on instances that do not own its key, and compute with it there.
            let keyed = self.local_head(rule).and_then(|h| self.placement(p, h).map(|pl| (h, pl)));
            if let Some((h, RelationPlacement::Key { name, .. })) = keyed {
                out.push(Reason::new(
                    ReasonKind::HeadKeyMismatch,
                    Some(rule_id),
                    Some(h),
                    rule.head.range,
                    format!(
                        "is an initial fact of `{}`, placed by `{name}`: every instance would start with it",
                        rule.head.relation
                    ),
                ));
            }
            return out;
        }
        let vars = &self.vars[rule_id.index()];
        let conflict = |kind, relation: Option<RelationId>, range, message: String| {
            Reason::new(kind, Some(rule_id), relation, range, message)
        };
        let mut keyed: Vec<(&Atom, &str)> = Vec::new();
        let mut anywhere: Vec<&Atom> = Vec::new();
        for atom in rule.atoms() {
            let Some(r) = atom.relation_id else { continue };
            match self.placement(p, r) {
                Some(RelationPlacement::Key { column, name }) => match atom.args.get(column).and_then(|e| e.as_var()) {
                    Some(v) => keyed.push((atom, v)),
                    // Any key matches: the atom reads facts of every instance.
                    None if atom.negated => out.push(conflict(
                        ReasonKind::KeyNotVariable,
                        Some(r),
                        atom.range,
                        format!(
                            "negates `{}` for any `{name}`, and those facts are spread over instances",
                            atom.relation
                        ),
                    )),
                    None => anywhere.push(atom),
                },
                Some(RelationPlacement::Anywhere) if atom.negated => out.push(conflict(
                    ReasonKind::NegationAcrossInstances,
                    Some(r),
                    atom.range,
                    format!("negates `{}`, whose facts may be on any instance", atom.relation),
                )),
                Some(RelationPlacement::Anywhere) => anywhere.push(atom),
                _ => {}
            }
        }
        if let Some(&(first, v)) = keyed.first() {
            if let Some(&(other, w)) = keyed.iter().find(|(_, w)| !vars.same(v, w)) {
                out.push(conflict(
                    ReasonKind::JoinAcrossKeys,
                    other.relation_id,
                    other.range,
                    format!(
                        "combines `{}` by `{v}` with `{}` by `{w}`: facts that meet may be on different instances",
                        first.relation, other.relation
                    ),
                ));
            }
            if let Some(a) = anywhere.first() {
                out.push(conflict(
                    ReasonKind::JoinAcrossKeys,
                    a.relation_id,
                    a.range,
                    format!(
                        "joins `{}` (placed by `{v}`) with `{}`, which has no such key",
                        first.relation, a.relation
                    ),
                ));
            }
        } else if anywhere.len() > 1 {
            out.push(conflict(
                ReasonKind::ScatteredJoin,
                anywhere[1].relation_id,
                anywhere[1].range,
                format!("joins `{}` with `{}`, and no column places both", anywhere[0].relation, anywhere[1].relation),
            ));
        }
        for arg in &rule.head.args {
            let HeadArg::Aggregate(agg) = arg else { continue };
            let group_by: Vec<&str> = rule
                .group_by_columns()
                .into_iter()
                .filter_map(|i| match &rule.head.args[i] {
                    HeadArg::Expr(e) => Some(expr_vars(e)),
                    HeadArg::Aggregate(_) => None,
                })
                .flatten()
                .collect();
            if let Some(&(atom, v)) = keyed.first() {
                let closure = vars.closure(&group_by, &rule.body, Some(self.fds));
                if !closure.contains(&vars.class(v)) {
                    out.push(conflict(
                        ReasonKind::AggregateAcrossKeys,
                        atom.relation_id,
                        agg.range,
                        format!(
                            "aggregate `{}` over every `{}` fact: its group-by ({}) does not determine `{v}`",
                            agg.func.name(),
                            atom.relation,
                            group_by.join(", ")
                        ),
                    ));
                }
            } else if let Some(atom) = anywhere.first() {
                out.push(conflict(
                    ReasonKind::AggregateAcrossInstances,
                    atom.relation_id,
                    agg.range,
                    format!(
                        "aggregate `{}` over `{}`, whose facts may be on any instance",
                        agg.func.name(),
                        atom.relation
                    ),
                ));
            }
        }
        let Some(head) = self.local_head(rule) else { return out };
        let replicated_dynamic = !self.fixed(head) && p.get(&head) == Some(&RelationPlacement::Replicated);
        if replicated_dynamic && !self.causes[rule_id.index()].is_empty() {
            out.push(conflict(
                ReasonKind::ReplicatedNotMonotone,
                Some(head),
                rule.head.range,
                format!(
                    "`{}` is replicated but {}: instances that see inputs in different orders would disagree without coordination",
                    self.program.relation(head).name,
                    self.causes[rule_id.index()][0].message
                ),
            ));
        }
        let head_rel = &self.program.relation(head).name;
        let body_key = keyed.first().map(|&(_, v)| v);
        match (self.placement(p, head), body_key) {
            (Some(RelationPlacement::Key { column, name }), Some(v)) => {
                let arg = rule.head.args.get(column);
                let ok = matches!(arg, Some(HeadArg::Expr(e)) if e.as_var().is_some_and(|x| vars.same(x, v)));
                if !ok {
                    let written = arg.map_or(String::new(), |a| match a {
                        HeadArg::Expr(e) => crate::scaling::display::expr(e),
                        HeadArg::Aggregate(a) => a.func.name().to_string(),
                    });
                    out.push(conflict(
                        ReasonKind::HeadKeyMismatch,
                        Some(head),
                        rule.head.range,
                        format!(
                            "writes `{head_rel}` with `{name}` = `{written}` from facts placed by `{v}`: the new fact belongs to another instance"
                        ),
                    ));
                }
            }
            (Some(RelationPlacement::Key { name, .. }), None) => {
                let what = if anywhere.is_empty() { "on every instance" } else { "wherever its input arrives" };
                out.push(conflict(
                    ReasonKind::HeadKeyMismatch,
                    Some(head),
                    rule.head.range,
                    format!("writes `{head_rel}` (placed by `{name}`) {what}"),
                ));
            }
            (Some(RelationPlacement::Replicated), _) if body_key.is_some() || !anywhere.is_empty() => {
                let source = keyed.first().map(|(a, _)| a).or(anywhere.first()).map_or("", |a| a.relation.as_str());
                out.push(conflict(
                    ReasonKind::ReplicatedFromPartitioned,
                    Some(head),
                    rule.head.range,
                    format!("`{head_rel}` must be on every instance, but is derived from `{source}`, which is split"),
                ));
            }
            (Some(RelationPlacement::Anywhere), _) if rule.kind == RuleKind::Delete => {
                let reads_itself = rule.atoms().any(|a| a.relation_id == Some(head) && !a.negated);
                if !reads_itself || !anywhere.iter().all(|a| a.relation_id == Some(head)) {
                    out.push(conflict(
                        ReasonKind::DeleteAcrossInstances,
                        Some(head),
                        rule.head.range,
                        format!("deletes `{head_rel}` facts that may be on another instance"),
                    ));
                }
            }
            _ => {}
        }
        out
    }
}

/// The distinct valid policies and the failed attempts, best first.
pub(crate) fn search(scope: &Scope<'_>) -> (Vec<Attempt>, Vec<Attempt>) {
    let mut valid: Vec<Attempt> = Vec::new();
    let mut failed: Vec<Attempt> = Vec::new();
    let mut seen = HashSet::new();
    for seed in scope.seeds() {
        let attempt = scope.attempt(Some(seed));
        if !seen.insert(format!("{:?}", attempt.placements)) {
            continue;
        }
        if attempt.is_valid() && attempt.has_key() {
            valid.push(attempt);
        } else if !attempt.is_valid() {
            failed.push(attempt);
        }
    }
    // Most work spread out, then fewest broadcasts, then fewest relations copied everywhere
    // (singletons such as `leader(b) key()` are cheap to copy and do not count).
    let singleton = |r: RelationId| {
        let rel = scope.program.relation(r);
        rel.key.as_ref().is_some_and(|k| k.is_empty())
            || (0..rel.arity()).all(|c| scope.fds[r.index()].iter().any(|fd| fd.lhs.is_empty() && fd.rhs == c))
    };
    let replicated = |a: &Attempt| {
        a.placements.iter().filter(|(r, p)| **p == RelationPlacement::Replicated && !singleton(**r)).count()
    };
    valid.sort_by_key(|a| (std::cmp::Reverse(a.partitioned_rules), a.broadcast_sources, replicated(a)));
    failed.sort_by_key(|a| (a.conflicts.len(), std::cmp::Reverse(a.partitioned_rules)));
    (valid, failed)
}
