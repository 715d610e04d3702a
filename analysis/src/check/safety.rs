//! Range restriction: every variable of a head, a negated atom or a condition must be bound by a
//! positive atom or by a `x = expr` binding whose expression is itself bound. Also flags variables
//! that occur only once (they are wildcards in disguise).

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::diagnostics::{Code, Diagnostic};
use crate::model::*;
use crate::text::TextRange;

pub fn check(program: &Program, out: &mut Vec<Diagnostic>) {
    for rule in &program.rules {
        let bound = bound_variables(&rule.body);
        let mut head_vars = Vec::new();
        for arg in &rule.head.args {
            match arg {
                HeadArg::Expr(e) => e.variables(&mut head_vars),
                HeadArg::Aggregate(a) => a.arg.variables(&mut head_vars),
            }
        }
        if let Some(dest) = &rule.head.destination {
            dest.variables(&mut head_vars);
        }
        report_unbound(&bound, &head_vars, Code::UnboundHeadVariable, "the head", out);
        check_body(&bound, &rule.body, out);
        single_use(&rule.body, head_vars, out);
    }
    for invariant in &program.invariants {
        let bound = bound_variables(&invariant.body);
        let mut head_vars = Vec::new();
        invariant.args.iter().for_each(|a| a.variables(&mut head_vars));
        report_unbound(&bound, &head_vars, Code::UnboundHeadVariable, "the invariant's head", out);
        check_body(&bound, &invariant.body, out);
        single_use(&invariant.body, head_vars, out);
    }
}

/// The variables a body binds: positive atoms' variable arguments, then `=` bindings to a fixpoint.
pub fn bound_variables(body: &[BodyItem]) -> HashSet<&str> {
    let mut bound: HashSet<&str> =
        atoms(body).filter(|a| !a.negated).flat_map(|a| a.args.iter().filter_map(Expr::as_var)).collect();
    loop {
        let before = bound.len();
        for item in body {
            let BodyItem::Condition(c) = item else { continue };
            if c.op != CompareOp::Assign {
                continue;
            }
            for (target, source) in [(&c.left, &c.right), (&c.right, &c.left)] {
                if let Some(name) = target.as_var() {
                    let mut vars = Vec::new();
                    source.variables(&mut vars);
                    if vars.iter().all(|(v, _)| bound.contains(v)) {
                        bound.insert(name);
                    }
                }
            }
        }
        if bound.len() == before {
            return bound;
        }
    }
}

fn check_body(bound: &HashSet<&str>, body: &[BodyItem], out: &mut Vec<Diagnostic>) {
    for item in body {
        let mut vars = Vec::new();
        match item {
            BodyItem::Atom(atom) if atom.negated => {
                atom.args.iter().for_each(|a| a.variables(&mut vars));
                report_unbound(bound, &vars, Code::UnboundNegatedVariable, "a negated atom", out);
            }
            BodyItem::Atom(atom) => {
                // Expressions (not plain variables) in a positive atom are computed, so need bound inputs.
                atom.args.iter().filter(|a| a.as_var().is_none()).for_each(|a| a.variables(&mut vars));
                report_unbound(bound, &vars, Code::UnboundConditionVariable, "an expression", out);
            }
            BodyItem::Condition(c) => {
                // In an unresolved `x = expr`, x is unbound because expr is: report expr's variables only.
                let target_unbound = |side: &Expr| side.as_var().is_some_and(|v| !bound.contains(v));
                if !(c.op == CompareOp::Assign && target_unbound(&c.left)) {
                    c.left.variables(&mut vars);
                }
                if !(c.op == CompareOp::Assign && target_unbound(&c.right)) || vars.is_empty() {
                    c.right.variables(&mut vars);
                }
                report_unbound(bound, &vars, Code::UnboundConditionVariable, "a condition", out);
            }
        }
    }
}

fn report_unbound(
    bound: &HashSet<&str>,
    vars: &[(&str, TextRange)],
    code: Code,
    place: &str,
    out: &mut Vec<Diagnostic>,
) {
    let mut reported = HashSet::default();
    for &(name, range) in vars {
        if !bound.contains(name) && reported.insert(name) {
            out.push(Diagnostic::new(
                code,
                range,
                format!("variable `{name}` in {place} is not bound: it must appear in a positive body atom or be assigned with `{name} = ...`"),
            ));
        }
    }
}

fn single_use<'a>(body: &'a [BodyItem], mut vars: Vec<(&'a str, TextRange)>, out: &mut Vec<Diagnostic>) {
    let mut in_atoms = HashSet::default();
    for item in body {
        match item {
            BodyItem::Atom(atom) => {
                for arg in &atom.args {
                    if let Some(name) = arg.as_var() {
                        in_atoms.insert(name);
                    }
                    arg.variables(&mut vars);
                }
            }
            BodyItem::Condition(c) => {
                c.left.variables(&mut vars);
                c.right.variables(&mut vars);
            }
        }
    }
    let mut counts: HashMap<&str, (usize, TextRange)> = HashMap::default();
    for (name, range) in vars {
        counts.entry(name).or_insert((0, range)).0 += 1;
    }
    let mut singles: Vec<_> = counts
        .into_iter()
        .filter(|(name, (count, _))| *count == 1 && !name.starts_with('_') && in_atoms.contains(name))
        .collect();
    singles.sort_by_key(|(_, (_, range))| *range);
    for (name, (_, range)) in singles {
        out.push(
            Diagnostic::new(
                Code::SingleUseVariable,
                range,
                format!("`{name}` is used only once; write `_` to match any value"),
            )
            .with_fix("Replace with `_`", range, "_"),
        );
    }
}
