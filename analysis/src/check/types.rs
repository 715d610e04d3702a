//! Type checking and inference. Declared columns fix types; columns of undeclared (scratch)
//! relations are inferred from the rules that derive them, iterating to a fixpoint.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::diagnostics::{Code, Diagnostic};
use crate::model::*;
use crate::text::TextRange;

pub fn check(program: &mut Program, out: &mut Vec<Diagnostic>) {
    // Inference without reporting: a worklist re-runs the rules reading a relation whose inferred
    // column types changed. Types only go from unknown to known, so this terminates quickly.
    let mut readers = vec![Vec::new(); program.relations.len()];
    for (index, rule) in program.rules.iter().enumerate() {
        for atom in rule.atoms() {
            if let Some(id) = atom.relation_id {
                readers[id.index()].push(index);
            }
        }
    }
    let mut queue: VecDeque<usize> = (0..program.rules.len()).collect();
    let mut queued = vec![true; program.rules.len()];
    let mut sink = Vec::new();
    while let Some(index) = queue.pop_front() {
        queued[index] = false;
        sink.clear();
        if let Some(changed) = check_rule(program, index, &mut sink) {
            for &reader in &readers[changed.index()] {
                if !std::mem::replace(&mut queued[reader], true) {
                    queue.push_back(reader);
                }
            }
        }
    }
    // The reporting pass, with every type that can be known known.
    for index in 0..program.rules.len() {
        check_rule(program, index, out);
    }
    for index in 0..program.invariants.len() {
        let invariant = &program.invariants[index];
        let mut scope = Scope::default();
        scope.body(program, &invariant.body, out);
        for arg in &invariant.args {
            scope.infer(arg, out);
        }
        program.invariants[index].variables = scope.into_variables();
    }
}

/// Type-check one rule, inferring its head's unknown column types. Returns the head relation if
/// one of its column types became known.
fn check_rule(program: &mut Program, index: usize, out: &mut Vec<Diagnostic>) -> Option<RelationId> {
    let mut changed = false;
    {
        let rule = &program.rules[index];
        let mut scope = Scope::default();
        scope.body(program, &rule.body, out);
        let mut head_types = Vec::with_capacity(rule.head.args.len());
        for arg in &rule.head.args {
            let ty = match arg {
                HeadArg::Expr(e) => scope.infer(e, out),
                HeadArg::Aggregate(a) => {
                    let arg_ty =
                        if matches!(a.arg.kind, ExprKind::Wildcard) { Type::Unknown } else { scope.infer(&a.arg, out) };
                    match a.func {
                        AggregateFunc::Count => Type::Int,
                        AggregateFunc::Sum | AggregateFunc::Min | AggregateFunc::Max => {
                            scope.expect(
                                arg_ty,
                                Type::Int,
                                a.arg.range,
                                || format!("`{}` aggregates integers", a.func.name()),
                                out,
                            );
                            if a.func == AggregateFunc::Sum {
                                Type::Int
                            } else {
                                arg_ty
                            }
                        }
                        AggregateFunc::Choose => arg_ty,
                        AggregateFunc::Rank => {
                            if matches!(arg_ty, Type::Bool | Type::Addr) {
                                out.push(Diagnostic::new(
                                    Code::OperatorType,
                                    a.arg.range,
                                    format!("`rank` orders ints or strings, but this is {arg_ty}"),
                                ));
                            }
                            Type::Int
                        }
                    }
                }
            };
            head_types.push((ty, arg.range()));
        }
        if let Some(dest) = &rule.head.destination {
            let ty = scope.infer(dest, out);
            if ty.is_known() && ty != Type::Addr {
                out.push(Diagnostic::new(
                    Code::DestinationNotAddress,
                    dest.range,
                    format!("a destination must be an addr, but this is {ty}"),
                ));
            }
        }
        let variables = scope.into_variables();
        if let Some(id) = rule.head.relation_id {
            let relation = &mut program.relations[id.index()];
            for (column, (ty, range)) in relation.columns.iter_mut().zip(&head_types) {
                if !ty.is_known() {
                    continue;
                }
                if !column.ty.is_known() && column.ty_range.is_none() {
                    column.ty = *ty;
                    changed = true;
                } else if column.ty.is_known() && column.ty != *ty {
                    out.push(column_mismatch(&relation.name, column, *ty, *range));
                }
            }
        }
        program.rules[index].variables = variables;
    }
    if changed {
        program.rules[index].head.relation_id
    } else {
        None
    }
}

fn column_mismatch(relation: &str, column: &Column, found: Type, range: TextRange) -> Diagnostic {
    let mut d = Diagnostic::new(
        Code::TypeMismatch,
        range,
        format!("column `{}` of `{relation}` is {}, but this is {found}", column.name, column.ty),
    );
    if let Some(ty_range) = column.ty_range {
        d = d.with_related(ty_range, "column type declared here");
    } else {
        d = d.with_related(column.name_range, "column type inferred from here");
    }
    d
}

#[derive(Default)]
struct Scope {
    /// Variable -> (type, first occurrence, index of first appearance).
    vars: FxHashMap<String, (Type, TextRange, usize)>,
}

impl Scope {
    fn into_variables(self) -> Vec<Variable> {
        let mut vars: Vec<_> = self.vars.into_iter().collect();
        vars.sort_by_key(|(_, (_, _, order))| *order);
        vars.into_iter().map(|(name, (ty, first_range, _))| Variable { name, ty, first_range }).collect()
    }

    fn body(&mut self, program: &Program, body: &[BodyItem], out: &mut Vec<Diagnostic>) {
        // Atoms first: they fix most variable types; conditions then check against them.
        for atom in atoms(body) {
            let relation = atom.relation_id.map(|id| program.relation(id));
            for (i, arg) in atom.args.iter().enumerate() {
                let column = relation.and_then(|r| r.columns.get(i));
                let expected = column.map_or(Type::Unknown, |c| c.ty);
                match &arg.kind {
                    ExprKind::Var(name) => self.bind(name, expected, arg.range, out),
                    ExprKind::Wildcard => {}
                    _ => {
                        let ty = self.infer(arg, out);
                        if let (Some(column), true) = (column, ty.is_known() && expected.is_known() && ty != expected) {
                            out.push(column_mismatch(&relation.unwrap().name, column, ty, arg.range));
                        }
                    }
                }
            }
        }
        // Bindings may chain (`y = x + 1, z = y * 2`): repeat until no new variable gets a type.
        loop {
            let before = self.known_count();
            for item in body {
                if let BodyItem::Condition(c) = item {
                    if c.op == CompareOp::Assign {
                        let mut sink = Vec::new();
                        let (l, r) = (self.infer(&c.left, &mut sink), self.infer(&c.right, &mut sink));
                        if let (Some(name), false, true) = (c.left.as_var(), l.is_known(), r.is_known()) {
                            self.bind(name, r, c.left.range, &mut sink);
                        } else if let (Some(name), false, true) = (c.right.as_var(), r.is_known(), l.is_known()) {
                            self.bind(name, l, c.right.range, &mut sink);
                        }
                    }
                }
            }
            if self.known_count() == before {
                break;
            }
        }
        for item in body {
            if let BodyItem::Condition(c) = item {
                let l = self.infer(&c.left, out);
                let r = self.infer(&c.right, out);
                if l.is_known() && r.is_known() && l != r {
                    out.push(Diagnostic::new(
                        Code::OperatorType,
                        c.range,
                        format!("`{}` compares {l} with {r}", c.op.token()),
                    ));
                } else if matches!(c.op, CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge)
                    && matches!(l, Type::Bool | Type::Addr)
                {
                    out.push(Diagnostic::new(
                        Code::OperatorType,
                        c.range,
                        format!("`{}` orders ints and strings, not {l}", c.op.token()),
                    ));
                }
            }
        }
    }

    fn known_count(&self) -> usize {
        self.vars.values().filter(|(t, _, _)| t.is_known()).count()
    }

    fn bind(&mut self, name: &str, ty: Type, range: TextRange, out: &mut Vec<Diagnostic>) {
        let order = self.vars.len();
        match self.vars.get_mut(name) {
            None => {
                self.vars.insert(name.to_string(), (ty, range, order));
            }
            Some(entry) if !entry.0.is_known() => entry.0 = ty,
            Some((known, first, _)) if ty.is_known() && *known != ty => out.push(
                Diagnostic::new(
                    Code::ConflictingVariableType,
                    range,
                    format!("`{name}` is {known} where it first appears, but {ty} here"),
                )
                .with_related(*first, format!("`{name}` is {known} here")),
            ),
            Some(_) => {}
        }
    }

    fn expect(
        &self,
        found: Type,
        expected: Type,
        range: TextRange,
        why: impl FnOnce() -> String,
        out: &mut Vec<Diagnostic>,
    ) {
        if found.is_known() && found != expected {
            out.push(Diagnostic::new(Code::OperatorType, range, format!("{}, but this is {found}", why())));
        }
    }

    fn infer(&mut self, expr: &Expr, out: &mut Vec<Diagnostic>) -> Type {
        match &expr.kind {
            ExprKind::Var(name) => {
                let order = self.vars.len();
                self.vars.entry(name.clone()).or_insert((Type::Unknown, expr.range, order)).0
            }
            ExprKind::Wildcard | ExprKind::Error => Type::Unknown,
            ExprKind::Int(_) => Type::Int,
            ExprKind::Str(_) => Type::String,
            ExprKind::Bool(_) => Type::Bool,
            ExprKind::SelfAddr => Type::Addr,
            ExprKind::Neg(e) => {
                let ty = self.infer(e, out);
                self.expect(ty, Type::Int, e.range, || "`-` negates integers".into(), out);
                Type::Int
            }
            ExprKind::Binary(op, l, r) => {
                let (operand, result) = match op {
                    BinaryOp::Concat => (Type::String, Type::String),
                    BinaryOp::And | BinaryOp::Or => (Type::Bool, Type::Bool),
                    _ => (Type::Int, Type::Int),
                };
                for side in [l, r] {
                    let ty = self.infer(side, out);
                    self.expect(ty, operand, side.range, || format!("`{}` takes {operand} operands", op.token()), out);
                }
                result
            }
            ExprKind::Call(function, args) => {
                for arg in args {
                    let ty = self.infer(arg, out);
                    if matches!(function, Function::Min | Function::Max | Function::Abs) {
                        self.expect(
                            ty,
                            Type::Int,
                            arg.range,
                            || format!("`{}` takes int arguments", function.name()),
                            out,
                        );
                    }
                }
                function.result_type()
            }
        }
    }
}
