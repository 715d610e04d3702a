//! Warnings: relations nobody uses or reads, rules that can never fire, constant conditions,
//! empty components.

use crate::diagnostics::{Code, Diagnostic};
use crate::model::*;

pub fn check(program: &Program, out: &mut Vec<Diagnostic>) {
    let n = program.relations.len();
    let (mut read, mut written) = (vec![false; n], vec![false; n]);
    let bodies = program.rules.iter().map(|r| &r.body).chain(program.invariants.iter().map(|i| &i.body));
    for body in bodies {
        for atom in atoms(body) {
            if let Some(id) = atom.relation_id {
                read[id.index()] = true;
            }
        }
    }
    for rule in &program.rules {
        if let Some(id) = rule.head.relation_id {
            written[id.index()] = true;
        }
    }
    for id in program.relation_ids() {
        let relation = program.relation(id);
        let (r, w) = (read[id.index()], written[id.index()]);
        match relation.kind {
            RelationKind::Builtin => {}
            _ if !r && !w => out.push(Diagnostic::new(
                Code::UnusedRelation,
                relation.name_range,
                format!("relation `{}` is never used", relation.name),
            )),
            RelationKind::Table | RelationKind::Scratch | RelationKind::Channel if !r && w => {
                out.push(Diagnostic::new(
                    Code::NeverRead,
                    relation.name_range,
                    format!("`{}` is derived but never read", relation.name),
                ))
            }
            _ => {}
        }
    }
    never_fires(program, out);
    for rule in &program.rules {
        constant_conditions(&rule.body, out);
    }
    for invariant in &program.invariants {
        constant_conditions(&invariant.body, out);
    }
    for component in &program.components {
        if component.rules.is_empty() {
            out.push(Diagnostic::new(
                Code::EmptyComponent,
                component.name_range,
                format!("component `{}` has no rules, so its nodes never do anything", component.name),
            ));
        }
    }
}

/// A relation is populated if it is an input or built-in, has a fact, or is derived by a rule that
/// can fire; a rule can fire if every relation of its positive atoms is populated.
fn never_fires(program: &Program, out: &mut Vec<Diagnostic>) {
    let mut populated: Vec<bool> =
        program.relations.iter().map(|r| matches!(r.kind, RelationKind::Input | RelationKind::Builtin)).collect();
    let can_fire = |rule: &Rule, populated: &[bool]| {
        rule.atoms().filter(|a| !a.negated).all(|a| a.relation_id.is_none_or(|id| populated[id.index()]))
    };
    loop {
        let mut changed = false;
        for rule in &program.rules {
            if let Some(head) = rule.head.relation_id {
                if !populated[head.index()] && rule.kind != RuleKind::Delete && can_fire(rule, &populated) {
                    populated[head.index()] = true;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    for rule in &program.rules {
        let Some(atom) = rule.atoms().find(|a| !a.negated && a.relation_id.is_some_and(|id| !populated[id.index()]))
        else {
            continue;
        };
        let relation = program.relation(atom.relation_id.unwrap());
        let why = match relation.kind {
            RelationKind::Channel => "no rule sends to it".to_string(),
            _ if program.rules_deriving(atom.relation_id.unwrap()).next().is_none() => {
                "no rule or fact derives it".to_string()
            }
            _ => "the rules deriving it can never fire either".to_string(),
        };
        out.push(
            Diagnostic::new(
                Code::RuleNeverFires,
                atom.range,
                format!("this rule never fires: `{}` is always empty ({why})", relation.name),
            )
            .with_related(relation.name_range, "this relation is never filled"),
        );
    }
}

fn constant_conditions(body: &[BodyItem], out: &mut Vec<Diagnostic>) {
    for item in body {
        let BodyItem::Condition(c) = item else { continue };
        let (Some(l), Some(r)) = (constant(&c.left), constant(&c.right)) else { continue };
        let holds = match c.op {
            CompareOp::Assign | CompareOp::Eq => l == r,
            CompareOp::Ne => l != r,
            CompareOp::Lt => l < r,
            CompareOp::Le => l <= r,
            CompareOp::Gt => l > r,
            CompareOp::Ge => l >= r,
        };
        if !holds {
            out.push(Diagnostic::new(
                Code::ConstantCondition,
                c.range,
                "this condition compares constants and is always false, so the rule never fires",
            ));
        }
    }
}

#[derive(PartialEq, PartialOrd)]
enum Constant<'a> {
    Int(i64),
    Str(&'a str),
    Bool(bool),
}

fn constant(expr: &Expr) -> Option<Constant<'_>> {
    match &expr.kind {
        ExprKind::Int(i) => Some(Constant::Int(*i)),
        ExprKind::Str(s) => Some(Constant::Str(s)),
        ExprKind::Bool(b) => Some(Constant::Bool(*b)),
        _ => None,
    }
}
