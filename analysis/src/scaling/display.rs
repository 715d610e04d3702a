//! Compact text of model pieces for reason messages (`promised(max(b)) :- ballot_in(b)`), so the
//! analysis can name rules without the source text.

use crate::model::{Atom, BodyItem, Expr, ExprKind, HeadArg, Rule, RuleKind};

pub fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Var(name) => name.clone(),
        ExprKind::Wildcard => "_".into(),
        ExprKind::Int(i) => i.to_string(),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::SelfAddr => "self".into(),
        ExprKind::Neg(inner) => format!("-{}", expr(inner)),
        ExprKind::Binary(op, l, r) => format!("{} {} {}", expr(l), op.token(), expr(r)),
        ExprKind::Call(f, args) => format!("{}({})", f.name(), args.iter().map(expr).collect::<Vec<_>>().join(", ")),
        ExprKind::Error => "?".into(),
    }
}

pub fn atom(a: &Atom) -> String {
    let args: Vec<String> = a.args.iter().map(expr).collect();
    format!("{}{}({})", if a.negated { "!" } else { "" }, a.relation, args.join(", "))
}

pub fn head(rule: &Rule) -> String {
    let args: Vec<String> = rule
        .head
        .args
        .iter()
        .map(|a| match a {
            HeadArg::Expr(e) => expr(e),
            HeadArg::Aggregate(agg) => format!("{}({})", agg.func.name(), expr(&agg.arg)),
        })
        .collect();
    let dest = rule.head.destination.as_ref().map(|d| format!("@{}", expr(d))).unwrap_or_default();
    let delete = if rule.kind == RuleKind::Delete { "delete " } else { "" };
    format!("{delete}{}{dest}({})", rule.head.relation, args.join(", "))
}

/// The whole rule on one line, body items abbreviated past the third.
pub fn rule(rule: &Rule) -> String {
    let op = match rule.kind {
        RuleKind::SameTick | RuleKind::Delete => ":-",
        RuleKind::NextTick => ":+",
        RuleKind::Async => ":~",
        RuleKind::Fact => return format!("{}.", head(rule)),
    };
    let mut items: Vec<String> = rule
        .body
        .iter()
        .take(3)
        .map(|item| match item {
            BodyItem::Atom(a) => atom(a),
            BodyItem::Condition(c) => format!("{} {} {}", expr(&c.left), c.op.token(), expr(&c.right)),
        })
        .collect();
    if rule.body.len() > 3 {
        items.push("...".into());
    }
    format!("{} {op} {}", head(rule), items.join(", "))
}
