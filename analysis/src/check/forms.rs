//! The shape of each rule: which relation kinds a rule may derive, send to, delete or read,
//! arities, facts, destinations, wildcards, aggregates, `nodes(...)` and placements.

use crate::diagnostics::{Code, Diagnostic};
use crate::model::*;

pub fn check(program: &Program, out: &mut Vec<Diagnostic>) {
    for rule in &program.rules {
        check_head(program, rule, out);
        check_body(program, Some(rule.component), &rule.body, out);
    }
    for invariant in &program.invariants {
        check_body(program, invariant.component, &invariant.body, out);
        for arg in &invariant.args {
            forbid_wildcards(arg, "an invariant's head", out);
        }
    }
    for component in &program.components {
        check_placement(program, component, out);
    }
}

fn check_head(program: &Program, rule: &Rule, out: &mut Vec<Diagnostic>) {
    let head = &rule.head;
    let relation = head.relation_id.map(|id| program.relation(id));
    match (&head.destination, rule.kind) {
        (None, RuleKind::Async) => out.push(Diagnostic::new(
            Code::MissingDestination,
            head.relation_range,
            format!(
                "`:~` sends a fact to another node: write `{}@dest(...)` with the destination's address",
                head.relation
            ),
        )),
        (Some(dest), kind) if kind != RuleKind::Async => out.push(
            Diagnostic::new(Code::DestinationWithoutAsync, dest.range, "only async rules (`:~`) have a destination")
                .with_related(rule.op_range, "this rule is not async")
                .with_fix("Make the rule async (`:~`)", rule.op_range, ":~"),
        ),
        (Some(dest), _) => forbid_wildcards(dest, "a destination", out),
        _ => {}
    }
    for arg in &head.args {
        match arg {
            HeadArg::Expr(e) => forbid_wildcards(e, "a rule head", out),
            HeadArg::Aggregate(a) => {
                forbid_wildcards_unless_count(a, out);
                if matches!(rule.kind, RuleKind::Delete | RuleKind::Fact) {
                    let what = if rule.kind == RuleKind::Fact { "a fact" } else { "a `delete` rule" };
                    out.push(Diagnostic::new(Code::MisplacedAggregate, a.range, format!("{what} cannot aggregate")));
                }
                if a.func == AggregateFunc::Rank {
                    check_rank(rule, a, out);
                }
            }
        }
    }
    let Some(relation) = relation else { return };
    if relation.arity() != head.args.len() {
        out.push(arity_mismatch(relation, head.args.len(), head.range));
    }
    let declared_at = relation.name_range;
    match (rule.kind, relation.kind) {
        (_, RelationKind::Builtin) => out.push(Diagnostic::new(
            Code::ReservedName,
            head.relation_range,
            format!("`{}` is a built-in deployment relation; rules cannot derive it", relation.name),
        )),
        (RuleKind::Fact, kind) if !matches!(kind, RelationKind::Table | RelationKind::Scratch) => out.push(
            Diagnostic::new(
                Code::FactForNonStoredRelation,
                rule.range,
                format!(
                    "initial facts are for tables and scratch relations; `{}` is {} {}",
                    relation.name,
                    article(kind),
                    kind.keyword()
                ),
            )
            .with_related(declared_at, "declared here"),
        ),
        (RuleKind::Async, RelationKind::Channel) => {}
        (RuleKind::Async, kind) => out.push(
            Diagnostic::new(
                Code::AsyncToNonChannel,
                head.relation_range,
                format!("`:~` sends to channels only, and `{}` is {} {}", relation.name, article(kind), kind.keyword()),
            )
            .with_related(declared_at, "declared here"),
        ),
        (_, RelationKind::Input) => out.push(
            Diagnostic::new(
                Code::DerivesInput,
                head.relation_range,
                format!(
                    "`{}` is an input: its facts come from outside (clients, the load generator), not from rules",
                    relation.name
                ),
            )
            .with_related(declared_at, "declared as input here"),
        ),
        (RuleKind::Delete, kind) if kind != RelationKind::Table => out.push(
            Diagnostic::new(
                Code::DeleteNonTable,
                head.relation_range,
                format!(
                    "only table facts persist, so only they can be deleted; `{}` is {} {}",
                    relation.name,
                    article(kind),
                    kind.keyword()
                ),
            )
            .with_related(declared_at, "declared here"),
        ),
        (_, RelationKind::Channel) => out.push(
            Diagnostic::new(
                Code::DerivesChannelLocally,
                head.relation_range,
                format!("`{}` is a channel: its facts arrive from other nodes, sent with `:~`", relation.name),
            )
            .with_related(declared_at, "declared as channel here"),
        ),
        _ => {}
    }
    if rule.kind != RuleKind::Async && relation.component.is_some_and(|c| c != rule.component) {
        let owner = &program.component(relation.component.unwrap()).name;
        let (code, message) = if relation.declared {
            (
                Code::HeadInOtherComponent,
                format!("`{}` belongs to component `{owner}`; a rule derives only its own component's relations (send with `:~` instead)", relation.name),
            )
        } else {
            (
                Code::ScratchInSeveralComponents,
                format!("`{}` is already derived in component `{owner}`; relation names are global, so pick another name here", relation.name),
            )
        };
        out.push(
            Diagnostic::new(code, head.relation_range, message)
                .with_related(declared_at, format!("`{}` belongs to `{owner}`", relation.name)),
        );
    }
    if rule.kind == RuleKind::Fact {
        for arg in &head.args {
            if let HeadArg::Expr(e) = arg {
                if !e.is_constant() && !matches!(e.kind, ExprKind::Error | ExprKind::Wildcard) {
                    out.push(Diagnostic::new(
                        Code::NonConstantFact,
                        e.range,
                        "a fact without a body holds constants only; add a body (`:- ...`) to bind variables",
                    ));
                }
            }
        }
    }
}

fn article(kind: RelationKind) -> &'static str {
    if matches!(kind, RelationKind::Input | RelationKind::Output) {
        "an"
    } else {
        "a"
    }
}

fn arity_mismatch(relation: &Relation, found: usize, range: crate::TextRange) -> Diagnostic {
    let columns: Vec<String> = relation.columns.iter().map(|c| format!("{}: {}", c.name, c.ty)).collect();
    let mut d = Diagnostic::new(
        Code::ArityMismatch,
        range,
        format!(
            "`{}` has {} column{} ({}), but {} argument{} {} given",
            relation.name,
            relation.arity(),
            if relation.arity() == 1 { "" } else { "s" },
            columns.join(", "),
            found,
            if found == 1 { "" } else { "s" },
            if found == 1 { "is" } else { "are" },
        ),
    );
    if relation.name_range != crate::TextRange::default() {
        d = d.with_related(relation.name_range, "declared here");
    }
    d
}

fn check_body(program: &Program, component: Option<ComponentId>, body: &[BodyItem], out: &mut Vec<Diagnostic>) {
    for item in body {
        match item {
            BodyItem::Atom(atom) => {
                for arg in &atom.args {
                    if !matches!(arg.kind, ExprKind::Wildcard) {
                        forbid_wildcards(arg, "an expression", out);
                    }
                }
                let Some(relation) = atom.relation_id.map(|id| program.relation(id)) else { continue };
                if relation.arity() != atom.args.len() {
                    out.push(arity_mismatch(relation, atom.args.len(), atom.range));
                }
                if let (Some(here), Some(owner)) = (component, relation.component) {
                    if here != owner {
                        let owner_name = &program.component(owner).name;
                        out.push(
                            Diagnostic::new(
                                Code::ForeignRelation,
                                atom.relation_range,
                                format!(
                                    "`{}` belongs to component `{owner_name}`; a rule reads only its own component's relations (send the facts with `:~`)",
                                    relation.name
                                ),
                            )
                            .with_related(relation.name_range, format!("`{}` belongs to `{owner_name}`", relation.name)),
                        );
                    }
                }
                if relation.name == NODES_RELATION {
                    if let Some(Expr { kind: ExprKind::Str(name), range }) = atom.args.first() {
                        if program.component_by_name(name).is_none() {
                            let mut d = Diagnostic::new(
                                Code::UnknownComponent,
                                *range,
                                format!("there is no component `{name}`"),
                            );
                            let names = program.components.iter().map(|c| c.name.as_str());
                            if let Some(best) = crate::diagnostics::closest(name, names) {
                                d = d.with_fix(format!("Change to `\"{best}\"`"), *range, format!("\"{best}\""));
                            }
                            out.push(d);
                        }
                    }
                }
            }
            BodyItem::Condition(c) => {
                forbid_wildcards(&c.left, "a condition", out);
                forbid_wildcards(&c.right, "a condition", out);
            }
        }
    }
}

/// `rank(x)` numbers the facts of its head, so the head must carry `x` (else the numbers
/// belong to nothing) and no other aggregate (which would fold the facts it numbers).
fn check_rank(rule: &Rule, rank: &Aggregate, out: &mut Vec<Diagnostic>) {
    let others = rule.head.args.iter().filter(|a| matches!(a, HeadArg::Aggregate(_))).count() - 1;
    if others > 0 {
        out.push(Diagnostic::new(
            Code::MisplacedAggregate,
            rank.range,
            "`rank` numbers the head's facts one by one: it cannot share a head with another aggregate",
        ));
    }
    match rank.arg.as_var() {
        Some(x) => {
            let carried = rule.head.args.iter().any(|a| matches!(a, HeadArg::Expr(e) if e.as_var() == Some(x)));
            if !carried {
                out.push(Diagnostic::new(
                    Code::MisplacedAggregate,
                    rank.range,
                    format!("`rank({x})` gives each `{x}` its position: `{x}` must also be a head argument, e.g. `ranked({x}, rank({x}))`"),
                ));
            }
        }
        None if matches!(rank.arg.kind, ExprKind::Error | ExprKind::Wildcard) => {}
        None => out.push(Diagnostic::new(
            Code::MisplacedAggregate,
            rank.arg.range,
            "`rank` ranks a variable: bind the expression with `=` in the body and rank that variable",
        )),
    }
}

fn forbid_wildcards_unless_count(aggregate: &Aggregate, out: &mut Vec<Diagnostic>) {
    if aggregate.func != AggregateFunc::Count || !matches!(aggregate.arg.kind, ExprKind::Wildcard) {
        forbid_wildcards(&aggregate.arg, "an aggregate", out);
    }
}

fn forbid_wildcards(expr: &Expr, place: &str, out: &mut Vec<Diagnostic>) {
    match &expr.kind {
        ExprKind::Wildcard => out.push(Diagnostic::new(
            Code::WildcardOutsideAtom,
            expr.range,
            format!("`_` matches anything in a body atom, but has no value in {place}"),
        )),
        ExprKind::Neg(e) => forbid_wildcards(e, place, out),
        ExprKind::Binary(_, l, r) => {
            forbid_wildcards(l, place, out);
            forbid_wildcards(r, place, out);
        }
        ExprKind::Call(_, args) => args.iter().for_each(|a| forbid_wildcards(a, place, out)),
        _ => {}
    }
}

fn check_placement(program: &Program, component: &Component, out: &mut Vec<Diagnostic>) {
    let Some(placement) = &component.placement else { return };
    let own: Vec<&Relation> = component.relations.iter().map(|&r| program.relation(r)).collect();
    for key in &placement.keys {
        match &key.relation {
            Some((name, range)) => match own.iter().find(|r| &r.name == name) {
                None => out.push(Diagnostic::new(
                    Code::BadPartitionKey,
                    *range,
                    format!("component `{}` has no relation `{name}` to partition", component.name),
                )),
                Some(relation) if relation.column_index(&key.column).is_none() => out.push(
                    Diagnostic::new(
                        Code::BadPartitionKey,
                        key.column_range,
                        format!("`{name}` has no column `{}`", key.column),
                    )
                    .with_related(relation.name_range, "declared here"),
                ),
                Some(_) => {}
            },
            None if !own.iter().any(|r| r.column_index(&key.column).is_some()) => out.push(Diagnostic::new(
                Code::BadPartitionKey,
                key.column_range,
                format!("no relation of component `{}` has a column `{}` to partition by", component.name, key.column),
            )),
            None => {}
        }
    }
}
