//! Nack redirection, a step of decoupling: when the moved part D takes over a channel `ch` that
//! the rest C still reads, but only through a projection (`ballot_heard(m) :- p2b(_, _, _, m)`),
//! the senders of `ch` send it straight to D, with the address they used to send it to (a C node)
//! as an extra `origin` column, and D passes back to that C node only the projected columns, on a
//! new channel `ch_nack`. C's per-message work shrinks from receiving and forwarding the whole
//! fact to receiving a small one (Compartmentalized Paxos: p2b goes to proxy leaders, the leader
//! only hears of preemptions).
//!
//! Why it is sound: in the original program nothing flows from D back to C, so D's inputs can
//! always arrive arbitrarily late; in the new program C receives, for every `ch` fact, its
//! projection later than it would have received the fact. C's readers use `ch` only positively,
//! without aggregation, and never look at the dropped columns, so what C derives from a `ch_nack`
//! fact is what it would have derived from the `ch` fact arriving at that later time, a delay
//! asynchronous messages may always have. Identical projections of different facts are separate
//! messages, as the facts were.
//!
//! Preconditions (refused with the reason otherwise): `ch` is a channel of C sent only by rules of
//! other components with an explicit destination; C's rules that read it are not deletions, do not
//! aggregate, read `ch` only positively, and ignore (`_`) at least one of its columns; no invariant
//! of C reads it; its columns have known types and none is named `origin`; and no moved rule sends
//! what D computes from `ch` towards a component from which messages lead back to C (D must stay a
//! sink for it, or C could hear of D's reaction before the nack).

use crate::model::{ExprKind, Program, RelationId, RuleId, RuleKind, Type};
use crate::scaling::display;
use crate::text::TextRange;

/// How a channel is split between the moved part and the rest.
pub(crate) struct Nack {
    pub relation: RelationId,
    /// Columns the rest reads, in order.
    pub columns: Vec<usize>,
    /// The new channel to the rest: `<ch>_nack`.
    pub name: String,
}

/// Check the preconditions for redirecting `rel` to the moved part; `Err` is the reason, to show.
pub(crate) fn plan(
    program: &Program,
    component: crate::model::ComponentId,
    kept: &[RuleId],
    moved: &[RuleId],
    rel: RelationId,
) -> Result<Nack, String> {
    let relation = program.relation(rel);
    let name = &relation.name;
    if relation.kind != crate::model::RelationKind::Channel || relation.component != Some(component) {
        return Err(format!("`{name}` is not a channel of this component: it has no senders to redirect"));
    }
    if relation.key.is_some() {
        return Err(format!("`{name}` declares a key, which the redirected channel could not keep"));
    }
    if let Some(c) = relation.columns.iter().find(|c| c.ty == Type::Unknown || c.name == "origin") {
        return Err(format!("`{name}.{}` has an unknown type or is named `origin`", c.name));
    }
    let senders: Vec<RuleId> = program.rules_deriving(rel).collect();
    if senders.is_empty() {
        return Err(format!("nothing sends `{name}`"));
    }
    for &s in &senders {
        let rule = program.rule(s);
        if rule.kind != RuleKind::Async || rule.head.destination.is_none() || rule.component == component {
            return Err(format!(
                "`{}` sends `{name}` from this component or without a destination; only remote senders are redirected",
                display::rule(rule)
            ));
        }
    }
    for inv in &program.component(component).invariants {
        let invariant = program.invariant(*inv);
        if crate::model::atoms(&invariant.body).any(|a| a.relation_id == Some(rel)) {
            return Err(format!("invariant `{}` reads `{name}`", invariant.name));
        }
    }
    if let Some(rule) = feedback(program, component, moved, rel) {
        return Err(format!(
            "`{}` sends what the moved rules compute from `{name}` towards this component, which could then hear of it before its nack",
            display::rule(program.rule(rule))
        ));
    }
    let mut columns: Vec<usize> = Vec::new();
    for &k in kept {
        let rule = program.rule(k);
        let atoms: Vec<_> = rule.atoms().filter(|a| a.relation_id == Some(rel)).collect();
        if atoms.is_empty() {
            continue;
        }
        let problem = if rule.kind == RuleKind::Delete {
            Some("is a deletion (not monotone)")
        } else if rule.has_aggregate() {
            Some("aggregates over it (not monotone)")
        } else if atoms.iter().any(|a| a.negated) {
            Some("negates it (not monotone)")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(format!("`{}` reads `{name}` and {problem}", display::rule(rule)));
        }
        for atom in atoms {
            for (i, arg) in atom.args.iter().enumerate() {
                if !matches!(arg.kind, ExprKind::Wildcard) && !columns.contains(&i) {
                    columns.push(i);
                }
            }
        }
    }
    columns.sort_unstable();
    if columns.len() >= relation.arity() {
        return Err(format!(
            "the rules that stay read every column of `{name}`: passing it back would cost as much as forwarding it"
        ));
    }
    let mut nack = format!("{name}_nack");
    let mut n = 1;
    while program.relation_by_name(&nack).is_some() || program.component_by_name(&nack).is_some() {
        n += 1;
        nack = format!("{name}_nack{n}");
    }
    Ok(Nack { relation: rel, columns, name: nack })
}

/// A moved rule that sends something computed from `rel` to a component from which messages lead
/// back to `component`. The soundness argument needs the moved part to be a sink for what it
/// computes from `rel`: then its inputs may always arrive after everything the rest did.
fn feedback(
    program: &Program,
    component: crate::model::ComponentId,
    moved: &[RuleId],
    rel: RelationId,
) -> Option<RuleId> {
    let mut dependent = vec![rel];
    loop {
        let before = dependent.len();
        for &m in moved {
            let rule = program.rule(m);
            let Some(h) = rule.head.relation_id else { continue };
            if !dependent.contains(&h) && rule.atoms().any(|a| a.relation_id.is_some_and(|r| dependent.contains(&r))) {
                dependent.push(h);
            }
        }
        if dependent.len() == before {
            break;
        }
    }
    // Components that messages (async rules, outside the moved ones) lead to from each component.
    let leads_back = |start: crate::model::ComponentId| {
        let mut seen = vec![start];
        let mut at = 0;
        while at < seen.len() {
            let from = seen[at];
            at += 1;
            for r in program.rule_ids() {
                let rule = program.rule(r);
                if rule.component != from || rule.kind != RuleKind::Async || moved.contains(&r) {
                    continue;
                }
                if let Some(to) = rule.head.relation_id.and_then(|h| program.relation(h).component) {
                    if !seen.contains(&to) {
                        seen.push(to);
                    }
                }
            }
        }
        seen.contains(&component)
    };
    moved.iter().copied().find(|&m| {
        let rule = program.rule(m);
        rule.kind == RuleKind::Async
            && rule.atoms().any(|a| a.relation_id.is_some_and(|r| dependent.contains(&r)))
            && rule.head.relation_id.and_then(|h| program.relation(h).component).is_some_and(leads_back)
    })
}

/// Edits to a remote sender `ch@p(..) :~ body.`: it becomes `ch@dest(.., p) :~ body, nodes("D", dest).`
pub(crate) fn redirect_sender(
    program: &Program,
    text: &str,
    sender: RuleId,
    new_name: &str,
) -> Vec<(TextRange, String)> {
    let rule = program.rule(sender);
    let Some(destination) = &rule.head.destination else { return Vec::new() };
    let mut vars: Vec<(&str, TextRange)> = Vec::new();
    for arg in &rule.head.args {
        if let crate::model::HeadArg::Expr(e) = arg {
            e.variables(&mut vars);
        }
    }
    destination.variables(&mut vars);
    for atom in rule.atoms() {
        atom.args.iter().for_each(|e| e.variables(&mut vars));
    }
    let mut dest = "dest".to_string();
    let mut n = 1;
    while vars.iter().any(|(v, _)| *v == dest) {
        n += 1;
        dest = format!("dest{n}");
    }
    let old = text[destination.range.as_range()].to_string();
    // The head ends with its closing parenthesis; the rule with its period.
    let head_close = rule.head.range.end as usize - 1;
    let period = rule.range.end as usize - 1;
    vec![
        (destination.range, dest.clone()),
        (TextRange::empty(head_close), if rule.head.args.is_empty() { old } else { format!(", {old}") }),
        (TextRange::empty(period), format!(", nodes(\"{new_name}\", {dest})")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirected(src: &str, sender_head: &str) -> String {
        let analysis = crate::analyze(src);
        let program = &analysis.program;
        let sender = program.rule_ids().find(|&r| program.rule(r).head.relation == sender_head).unwrap();
        let edits = redirect_sender(program, analysis.text(), sender, "d");
        let rule = program.rule(sender);
        let text = crate::rewrite::splice(analysis.text(), &edits);
        let start = rule.range.start as usize;
        text[start..].lines().next().unwrap().to_string()
    }

    #[test]
    fn redirect_sender_picks_a_fresh_destination_variable() {
        let src = "component c {\n channel ping()\n channel go(p: addr, dest: int)\n ping@p() :~ go(p, dest).\n}\n";
        assert_eq!(redirected(src, "ping"), "ping@dest2(p) :~ go(p, dest), nodes(\"d\", dest2).");
    }

    #[test]
    fn plan_refuses_a_channel_the_component_sends_itself() {
        let src = "component c {\n input i(x: int)\n channel ch(x: int, y: int)\n ch@self(x, x) :~ i(x).\n seen(x) :- ch(x, _).\n}\n";
        let analysis = crate::analyze(src);
        let program = &analysis.program;
        let ch = program.relation_by_name("ch").unwrap();
        let c = program.component_by_name("c").unwrap();
        let kept: Vec<RuleId> = program.component(c).rules.clone();
        let reason = plan(program, c, &kept, &[], ch).err().unwrap();
        assert!(reason.contains("only remote senders are redirected"), "{reason}");
    }
}
