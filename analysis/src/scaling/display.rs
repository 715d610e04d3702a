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
        ExprKind::Neg(inner) => match inner.kind {
            ExprKind::Binary(..) => format!("-({})", expr(inner)),
            _ => format!("-{}", expr(inner)),
        },
        // The model keeps no parentheses: put back those the operators' binding needs, so that
        // `(n - 1) / 3` does not print as `n - 1 / 3` (left-associative: a right operand of equal
        // strength needs them too).
        ExprKind::Binary(op, l, r) => {
            let operand = |e: &Expr, needs: fn(u8, u8) -> bool| match &e.kind {
                ExprKind::Binary(inner, ..) if needs(inner.precedence(), op.precedence()) => format!("({})", expr(e)),
                _ => expr(e),
            };
            format!(
                "{} {} {}",
                operand(l, |inner, outer| inner < outer),
                op.token(),
                operand(r, |inner, outer| inner <= outer)
            )
        }
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

#[cfg(test)]
mod tests {
    /// Parentheses the model dropped come back where the binding needs them, and only there.
    #[test]
    fn expressions_keep_their_grouping() {
        let cases = ["(n - 1) / 3", "n - (a - b)", "a - b - n", "-(a + b)", "a + b * n", "(a || b) && n"];
        let rules: String = cases.iter().map(|e| format!("    o(w) :- i(a, b, n), w = {e}.\n")).collect();
        let text = format!("component c {{\n    input i(a: int, b: int, n: int)\n    output o(w: int)\n{rules}}}\n");
        let analysis = crate::analyze(&text);
        let shown: Vec<String> = analysis.program.rule_ids().map(|r| super::rule(analysis.program.rule(r))).collect();
        for (case, shown) in cases.iter().zip(&shown) {
            assert!(shown.ends_with(&format!("w = {case}")), "{case}: {shown}");
        }
    }
}
