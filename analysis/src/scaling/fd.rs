//! Functional dependencies: which columns of a relation determine which others.
//!
//! Sources: a declared `key(...)` (the key determines every column); a rule whose head column is
//! computed from other head columns (`y = hash(x)`, arithmetic, constants); an aggregate (the
//! group-by columns determine the aggregate); and dependencies inherited from body atoms (a
//! column copied from a relation whose own dependency carries over). Derived dependencies are
//! only claimed where they hold for the whole relation: a relation derived by exactly one rule,
//! and for relations that accumulate facts over time (tables, channels, outputs) only pure
//! computations, since a per-tick aggregate says nothing about last tick's facts.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::model::{BodyItem, CompareOp, Expr, HeadArg, Program, RelationKind, Rule, RuleId, RuleKind};
use crate::text::TextRange;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FunctionalDependency {
    /// Determining columns (empty: at most one value for `rhs` at a time).
    pub lhs: Vec<usize>,
    pub rhs: usize,
    pub origin: FdOrigin,
    /// Holds across ticks too: a pure computation (`b = hash(x) % 8`), not a key or aggregate of
    /// one tick's facts; only such dependencies carry into tables, channels and outputs.
    pub timeless: bool,
    /// The `key(...)` clause, or the deriving rule.
    pub range: TextRange,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FdOrigin {
    DeclaredKey,
    /// Group-by columns of an aggregate determine the aggregate.
    Aggregate {
        rule: RuleId,
    },
    /// The column is computed from the others in the one deriving rule (or copied through a body
    /// atom whose dependency carries over).
    Computed {
        rule: RuleId,
    },
}

/// Dependencies of every relation, indexed by `RelationId`.
pub fn dependencies(program: &Program) -> Vec<Vec<FunctionalDependency>> {
    let mut fds: Vec<Vec<FunctionalDependency>> = program
        .relations
        .iter()
        .map(|relation| {
            let Some(key) = &relation.key else { return Vec::new() };
            (0..relation.arity())
                .filter(|c| !key.contains(c))
                .map(|rhs| FunctionalDependency {
                    lhs: key.clone(),
                    rhs,
                    origin: FdOrigin::DeclaredKey,
                    timeless: false,
                    range: relation.range,
                })
                .collect()
        })
        .collect();
    // Least fixpoint: each round may use what earlier rounds proved about body relations.
    for _ in 0..8 {
        let mut changed = false;
        for relation in program.relation_ids() {
            let rel = program.relation(relation);
            let derivers: Vec<RuleId> = program.rules_deriving(relation).collect();
            let [rule_id] = derivers[..] else { continue };
            let rule = program.rule(rule_id);
            if rule.kind == RuleKind::Delete || rule.kind == RuleKind::Fact {
                continue;
            }
            let per_tick = rel.kind == RelationKind::Scratch && rule.kind == RuleKind::SameTick;
            for (lhs, rhs, origin, timeless) in head_dependencies(rule, rule_id, &fds, per_tick) {
                let known = fds[relation.index()]
                    .iter()
                    .any(|fd| fd.rhs == rhs && fd.lhs.iter().all(|c| lhs.contains(c)) && (fd.timeless || !timeless));
                if !known {
                    fds[relation.index()].retain(|fd| !(fd.rhs == rhs && fd.lhs == lhs));
                    fds[relation.index()].push(FunctionalDependency { lhs, rhs, origin, timeless, range: rule.range });
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    fds
}

fn head_dependencies(
    rule: &Rule,
    id: RuleId,
    fds: &[Vec<FunctionalDependency>],
    per_tick: bool,
) -> Vec<(Vec<usize>, usize, FdOrigin, bool)> {
    let vars = RuleVars::new(rule);
    let args = &rule.head.args;
    let group_by: Vec<usize> = (0..args.len()).filter(|&i| matches!(args[i], HeadArg::Expr(_))).collect();
    let mut out = Vec::new();
    for (rhs, arg) in args.iter().enumerate() {
        match arg {
            HeadArg::Aggregate(_) => {
                if per_tick {
                    out.push((group_by.clone(), rhs, FdOrigin::Aggregate { rule: id }, false));
                }
            }
            HeadArg::Expr(e) => {
                let needed = expr_vars(e);
                let candidates: Vec<Vec<usize>> = std::iter::once(Vec::new())
                    .chain(group_by.iter().filter(|&&i| i != rhs).map(|&i| vec![i]))
                    .collect();
                for lhs in candidates {
                    let given: Vec<&str> = lhs
                        .iter()
                        .flat_map(|&i| match &args[i] {
                            HeadArg::Expr(e) => expr_vars(e),
                            HeadArg::Aggregate(_) => Vec::new(),
                        })
                        .collect();
                    if matches!(e.kind, crate::model::ExprKind::Wildcard) || has_self(e) && !per_tick {
                        continue;
                    }
                    let holds = |timeless_only| {
                        let closure = vars.closure_with(&given, &rule.body, Some(fds), timeless_only);
                        needed.iter().all(|v| closure.contains(&vars.class(v)))
                    };
                    if holds(true) {
                        out.push((lhs, rhs, FdOrigin::Computed { rule: id }, true));
                        break; // the smallest determinant is enough
                    }
                    if per_tick && holds(false) {
                        out.push((lhs, rhs, FdOrigin::Computed { rule: id }, false));
                        break;
                    }
                }
            }
        }
    }
    out
}

fn has_self(e: &Expr) -> bool {
    use crate::model::ExprKind;
    match &e.kind {
        ExprKind::SelfAddr => true,
        ExprKind::Neg(inner) => has_self(inner),
        ExprKind::Binary(_, l, r) => has_self(l) || has_self(r),
        ExprKind::Call(_, args) => args.iter().any(has_self),
        _ => false,
    }
}

pub(crate) fn expr_vars(e: &Expr) -> Vec<&str> {
    let mut out = Vec::new();
    e.variables(&mut out);
    out.into_iter().map(|(v, _)| v).collect()
}

/// Variables of one rule grouped into classes of equal values (`x = y`, `x == y`).
pub(crate) struct RuleVars {
    class_of: HashMap<String, usize>,
}

impl RuleVars {
    pub fn new(rule: &Rule) -> Self {
        Self::from_body(
            &rule.body,
            rule.head.args.iter().map(|a| match a {
                HeadArg::Expr(e) => e,
                HeadArg::Aggregate(a) => &a.arg,
            }),
        )
    }

    pub fn from_body<'a>(body: &'a [BodyItem], extra: impl Iterator<Item = &'a Expr>) -> Self {
        let mut names: Vec<String> = Vec::new();
        let mut push = |e: &Expr| {
            for v in expr_vars(e) {
                if !names.iter().any(|n| n == v) {
                    names.push(v.to_string());
                }
            }
        };
        for item in body {
            match item {
                BodyItem::Atom(a) => a.args.iter().for_each(&mut push),
                BodyItem::Condition(c) => {
                    push(&c.left);
                    push(&c.right);
                }
            }
        }
        extra.for_each(push);
        let mut parent: Vec<usize> = (0..names.len()).collect();
        fn find(parent: &mut [usize], i: usize) -> usize {
            let mut i = i;
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for item in body {
            if let BodyItem::Condition(c) = item {
                if matches!(c.op, CompareOp::Assign | CompareOp::Eq) {
                    if let (Some(l), Some(r)) = (c.left.as_var(), c.right.as_var()) {
                        let (li, ri) = (names.iter().position(|n| n == l), names.iter().position(|n| n == r));
                        if let (Some(li), Some(ri)) = (li, ri) {
                            let (a, b) = (find(&mut parent, li), find(&mut parent, ri));
                            parent[a] = b;
                        }
                    }
                }
            }
        }
        let class_of = names.iter().enumerate().map(|(i, n)| (n.clone(), find(&mut parent, i))).collect();
        RuleVars { class_of }
    }

    /// The class of a variable; unknown names get a class of their own.
    pub fn class(&self, name: &str) -> usize {
        self.class_of.get(name).copied().unwrap_or(usize::MAX)
    }

    pub fn same(&self, a: &str, b: &str) -> bool {
        a == b || (self.class_of.contains_key(a) && self.class(a) == self.class(b))
    }

    /// Classes determined by `given`: through bindings `x = expr`, and, when `fds` is given,
    /// through dependencies of the body's positive atoms.
    pub fn closure(
        &self,
        given: &[&str],
        body: &[BodyItem],
        fds: Option<&[Vec<FunctionalDependency>]>,
    ) -> BTreeSet<usize> {
        self.closure_with(given, body, fds, false)
    }

    /// [`RuleVars::closure`], optionally using only dependencies that hold across ticks.
    pub fn closure_with(
        &self,
        given: &[&str],
        body: &[BodyItem],
        fds: Option<&[Vec<FunctionalDependency>]>,
        timeless_only: bool,
    ) -> BTreeSet<usize> {
        let mut known: BTreeSet<usize> = given.iter().map(|v| self.class(v)).collect();
        let determined = |e: &Expr, known: &BTreeSet<usize>| {
            !matches!(e.kind, crate::model::ExprKind::Wildcard)
                && expr_vars(e).iter().all(|v| known.contains(&self.class(v)))
        };
        loop {
            let before = known.len();
            for item in body {
                match item {
                    BodyItem::Condition(c) if matches!(c.op, CompareOp::Assign | CompareOp::Eq) => {
                        if let Some(l) = c.left.as_var() {
                            if determined(&c.right, &known) {
                                known.insert(self.class(l));
                            }
                        }
                        if let Some(r) = c.right.as_var() {
                            if determined(&c.left, &known) {
                                known.insert(self.class(r));
                            }
                        }
                    }
                    BodyItem::Atom(a) if !a.negated => {
                        let (Some(fds), Some(rel)) = (fds, a.relation_id) else { continue };
                        for fd in fds[rel.index()].iter().filter(|fd| fd.timeless || !timeless_only) {
                            let lhs_known =
                                fd.lhs.iter().all(|&c| a.args.get(c).is_some_and(|e| determined(e, &known)));
                            if lhs_known {
                                if let Some(v) = a.args.get(fd.rhs).and_then(Expr::as_var) {
                                    known.insert(self.class(v));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            if known.len() == before {
                return known;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_of(src: &str, head: &str) -> (crate::Analysis, RuleId) {
        let analysis = crate::analyze(src);
        let id = analysis.program.rule_ids().find(|&r| analysis.program.rule(r).head.relation == head).unwrap();
        (analysis, id)
    }

    #[test]
    fn equalities_join_classes_and_bindings_extend_the_closure() {
        let (a, id) =
            rule_of("component c {\n channel r(x: int, y: int)\n h(z, w) :- r(x, y), z = x, w = y * 2.\n}\n", "h");
        let rule = a.program.rule(id);
        let vars = RuleVars::new(rule);
        assert!(vars.same("x", "z"));
        assert!(!vars.same("y", "w"));
        let closure = vars.closure(&["y"], &rule.body, None);
        assert!(closure.contains(&vars.class("w")));
        assert!(!closure.contains(&vars.class("x")));
    }

    #[test]
    fn declared_keys_determine_through_atoms() {
        let (a, id) = rule_of(
            "component c {\n table t(k: int, v: int) key(k)\n channel r(k: int)\n h(k, v) :- r(k), t(k, v).\n}\n",
            "h",
        );
        let fds = dependencies(&a.program);
        let rule = a.program.rule(id);
        let vars = RuleVars::new(rule);
        assert!(vars.closure(&["k"], &rule.body, Some(&fds)).contains(&vars.class("v")));
        assert!(!vars.closure(&["k"], &rule.body, None).contains(&vars.class("v")));
        // h is a scratch relation derived by one rule: it inherits k -> v, but not timelessly.
        let h = a.program.relation_by_name("h").unwrap();
        let fd = fds[h.index()].iter().find(|fd| fd.rhs == 1).expect("k -> v");
        assert_eq!(fd.lhs, vec![0]);
        assert!(!fd.timeless);
    }

    #[test]
    fn two_deriving_rules_claim_nothing() {
        let a = crate::analyze(
            "component c {\n channel r(x: int)\n h(x, y) :- r(x), y = x + 1.\n h(x, y) :- r(x), y = x + 2.\n}\n",
        );
        let h = a.program.relation_by_name("h").unwrap();
        assert!(dependencies(&a.program)[h.index()].is_empty());
    }
}
