//! Warnings: relations nobody uses or reads, rules that can never fire, constant conditions,
//! empty components.
//!
//! All but constant conditions conclude from an absence (no rule reads, derives or sends to a
//! relation), and a syntax error can hide exactly that rule: the parser keeps only what it
//! recovered. So they are drawn only from text that parsed cleanly ([`Hidden`]): nothing is said
//! about a relation whose readers or writers may sit in a broken component, nor about the rules
//! of a broken component; the components that parsed cleanly keep their warnings as usual.

use crate::diagnostics::{Code, Diagnostic};
use crate::model::*;

/// What syntax errors may hide from the lints.
struct Hidden {
    /// Per component: it has a syntax error, so its rules may be incomplete.
    component: Vec<bool>,
    /// Some syntax error anywhere: a hidden rule could send to any component's channel.
    anywhere: bool,
    /// A syntax error outside every component: a hidden top-level invariant could read anything.
    outside: bool,
}

impl Hidden {
    fn new(program: &Program) -> Hidden {
        let component: Vec<bool> = program.components.iter().map(|c| c.syntax_error.is_some()).collect();
        let outside = program.stray_syntax_error.is_some();
        Hidden { anywhere: outside || component.contains(&true), component, outside }
    }

    fn in_component(&self, id: Option<ComponentId>) -> bool {
        id.is_some_and(|c| self.component[c.index()])
    }

    /// A rule reading the relation may be hidden: in its component, or a top-level invariant.
    fn reads(&self, relation: &Relation) -> bool {
        self.outside || self.in_component(relation.component)
    }

    /// A rule filling the relation may be hidden: in its component, or a send from anywhere.
    fn writes(&self, relation: &Relation) -> bool {
        self.in_component(relation.component) || (relation.kind == RelationKind::Channel && self.anywhere)
    }
}

pub fn check(program: &Program, out: &mut Vec<Diagnostic>) {
    let hidden = Hidden::new(program);
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
        let r = r || hidden.reads(relation);
        let w = w || hidden.writes(relation);
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
    never_fires(program, &hidden, out);
    for rule in &program.rules {
        constant_conditions(&rule.body, out);
    }
    for invariant in &program.invariants {
        constant_conditions(&invariant.body, out);
    }
    for component in &program.components {
        if component.rules.is_empty() && component.syntax_error.is_none() {
            out.push(Diagnostic::new(
                Code::EmptyComponent,
                component.name_range,
                format!("component `{}` has no rules, so its nodes never do anything", component.name),
            ));
        }
    }
}

/// A relation is populated if it is an input or built-in, has a fact, or is derived by a rule that
/// can fire; a rule can fire if every relation of its positive atoms is populated. A relation a
/// hidden rule may fill counts as populated, and the rules of a broken component are not judged.
fn never_fires(program: &Program, hidden: &Hidden, out: &mut Vec<Diagnostic>) {
    let mut populated: Vec<bool> = program
        .relations
        .iter()
        .map(|r| matches!(r.kind, RelationKind::Input | RelationKind::Builtin) || hidden.writes(r))
        .collect();
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
    for rule in program.rules.iter().filter(|r| !hidden.component[r.component.index()]) {
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
        let holds = c.op.holds(l.cmp(&r));
        if !holds {
            out.push(Diagnostic::new(
                Code::ConstantCondition,
                c.range,
                "this condition compares constants and is always false, so the rule never fires",
            ));
        }
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
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
