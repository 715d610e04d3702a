//! Monotonicity: which rules can retract or hide a conclusion when more facts arrive
//! (negation, aggregation over inputs that may still grow, deletion), and which relations are
//! fed, directly or through other rules and messages, by such a rule.

use crate::model::{HeadArg, Program, RelationId, RelationKind, RuleId, RuleKind};
use crate::scaling::{Reason, ReasonKind};

/// Relations whose facts never change after start: `nodes`, relations defined only by facts, and
/// relations derived only from those (`n_acceptors(count(a)) :- nodes("acceptor", a)`).
pub fn static_relations(program: &Program) -> Vec<bool> {
    let mut is_static: Vec<bool> =
        program.relations.iter().map(|r| !matches!(r.kind, RelationKind::Input | RelationKind::Channel)).collect();
    // Greatest fixpoint: start from "static" and remove what some rule makes dynamic.
    loop {
        let mut changed = false;
        for rule_id in program.rule_ids() {
            let rule = program.rule(rule_id);
            let Some(head) = rule.head.relation_id else { continue };
            if !is_static[head.index()] || rule.kind == RuleKind::Fact {
                continue;
            }
            let dynamic_body = rule.atoms().any(|a| a.relation_id.is_none_or(|r| !is_static[r.index()]));
            if dynamic_body || rule.kind == RuleKind::Delete || rule.kind == RuleKind::Async {
                is_static[head.index()] = false;
                changed = true;
            }
        }
        if !changed {
            return is_static;
        }
    }
}

/// Why one rule, by itself, is not monotone: empty when it is.
pub fn rule_causes(program: &Program, rule_id: RuleId, is_static: &[bool]) -> Vec<Reason> {
    let rule = program.rule(rule_id);
    let mut out = Vec::new();
    let dynamic = |r: Option<RelationId>| r.is_none_or(|r| !is_static[r.index()]);
    if rule.kind == RuleKind::Delete {
        out.push(Reason::new(
            ReasonKind::Deletion,
            Some(rule_id),
            rule.head.relation_id,
            rule.head.range,
            format!("deletes `{}` facts", rule.head.relation),
        ));
    }
    for atom in rule.atoms().filter(|a| a.negated && dynamic(a.relation_id)) {
        out.push(Reason::new(
            ReasonKind::Negation,
            Some(rule_id),
            atom.relation_id,
            atom.range,
            format!("negates `{}`, which may still grow", atom.relation),
        ));
    }
    let grows = rule.atoms().find(|a| !a.negated && dynamic(a.relation_id));
    for arg in &rule.head.args {
        if let (HeadArg::Aggregate(agg), Some(atom)) = (arg, grows) {
            out.push(Reason::new(
                ReasonKind::Aggregation,
                Some(rule_id),
                atom.relation_id,
                agg.range,
                format!("aggregates `{}` over `{}`, which may still grow", agg.func.name(), atom.relation),
            ));
        }
    }
    out
}

/// For each relation, the first non-monotone cause that feeds it (through rules and messages),
/// or None when everything upstream of it is monotone.
pub fn nonmonotone_relations(program: &Program, causes: &[Vec<Reason>]) -> Vec<Option<Reason>> {
    let mut out: Vec<Option<Reason>> = vec![None; program.relations.len()];
    loop {
        let mut changed = false;
        for rule_id in program.rule_ids() {
            let rule = program.rule(rule_id);
            let Some(head) = rule.head.relation_id else { continue };
            if out[head.index()].is_some() {
                continue;
            }
            let cause = causes[rule_id.index()]
                .first()
                .cloned()
                .or_else(|| rule.atoms().find_map(|a| a.relation_id.and_then(|r| out[r.index()].clone())));
            if let Some(cause) = cause {
                out[head.index()] = Some(cause);
                changed = true;
            }
        }
        if !changed {
            return out;
        }
    }
}
