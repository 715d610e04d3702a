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

use crate::model::{ComponentId, ExprKind, Program, RelationId, RuleId, RuleKind, Type};
use crate::scaling::display;
use crate::text::TextRange;

/// How a channel is split between the moved part and the rest.
pub(crate) struct Nack {
    pub relation: RelationId,
    /// Columns the rest reads, in order.
    pub columns: Vec<usize>,
    /// The new channel to the rest: `<ch>_nack`.
    pub name: String,
    /// Send the nack only when its one column is above this other column of the fact, with why
    /// the others cannot matter (see [`guard`]).
    pub only_above: Option<(usize, String)>,
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
    let nack = crate::rewrite::unused_name(&format!("{name}_nack"), |n| {
        program.relation_by_name(n).is_some() || program.component_by_name(n).is_some()
    });
    let only_above = match columns.as_slice() {
        [value] => guard(program, component, kept, rel, *value),
        _ => None,
    };
    Ok(Nack { relation: rel, columns, name: nack, only_above })
}

/// Nacks that matter: when the rest uses the nacked column only through a running maximum, and
/// another column of the same fact carries a value that the addressed node itself produced and
/// fed into that maximum before sending it, then a nack whose value is not above that column
/// cannot raise the maximum: it is not sent (Paxos: a p2b whose `max_ballot` is not above its own
/// `ballot` is an acceptance, not a preemption).
///
/// Checked: (1) every rule of the rest reading `rel` copies the column alone into a relation `H`
/// (`ballot_heard(m) :- p2b(_, _, _, m)`), and `H` is read only by max aggregates `A`
/// (`heard_max(max(b)) :- ballot_heard(b)`); (2) `A` is a running maximum: `H` is also derived
/// from a table `T` (`ballot_heard(b) :- max_seen(b)`) that only receives `M(m) :+` where `M` is
/// a max over a relation `S` fed by `A` (`seen(b) :- heard_max(b)`, `seen_max(max(b)) :-
/// seen(b)`), and whose deletions remove only values below `M`'s; so once a value has reached `S`
/// or `H` on a node, `A` is at least that value there from the next tick on; (3) the guard column
/// comes back to the node that produced it: following the senders of `rel` back through
/// messages that carry both the guard and the return address, the first hop sends `self` and the
/// guard is a value that, on that node, flows into `S` or `H` (`propose` <- `to_assign` <-
/// `leader` <- `become_leader` <- `current_ballot` <- `campaign`, and `seen(b) :- campaign(b)`).
/// A message always arrives at a later tick than it was sent, so the guard is at most `A` when the
/// nack arrives, and a nack not above it changes nothing the rest derives.
fn guard(
    program: &Program,
    component: ComponentId,
    kept: &[RuleId],
    rel: RelationId,
    value: usize,
) -> Option<(usize, String)> {
    let relation = program.relation(rel);
    if relation.columns[value].ty != Type::Int {
        return None;
    }
    // (1) Readers copy the column alone into H; H feeds only max aggregates.
    let mut copies: Vec<RelationId> = Vec::new();
    for &k in kept {
        let rule = program.rule(k);
        if !rule.atoms().any(|a| a.relation_id == Some(rel)) {
            continue;
        }
        if copy_rule(rule) != Some((rel, value)) {
            return None;
        }
        let head = rule.head.relation_id?;
        if !copies.contains(&head) {
            copies.push(head);
        }
    }
    let (maxima, bounded) = running_maxima(program, component, &copies)?;
    // (3) A guard column that returns to the node that fed it into the maximum.
    let mut memo: Vec<((RelationId, usize), bool)> = Vec::new();
    (0..relation.arity())
        .filter(|&g| g != value && relation.columns[g].ty == Type::Int)
        .find(|&g| senders_return(program, component, rel, g, None, &bounded, &mut memo, 0))
        .map(|g| {
            let names = |rs: &[RelationId]| {
                rs.iter().map(|r| format!("`{}`", program.relation(*r).name)).collect::<Vec<_>>().join(", ")
            };
            (
                g,
                format!(
                    "only real preemptions are passed back: the rest reads `{}` only through the running maximum {}, and `{}` of every `{}` is a value its addressee fed into it before sending it, so a `{}` not above `{}` cannot raise it",
                    relation.columns[value].name,
                    names(&maxima),
                    relation.columns[g].name,
                    relation.name,
                    relation.columns[value].name,
                    relation.columns[g].name,
                ),
            )
        })
}

/// Whether the relations `copies` (each `H(x) :- R(.., x, ..)`) are read only by max aggregates
/// `A(max(x)) :- H(x)` of `component` that are running maxima: kept in a table that only grows to
/// new maxima of them (see [`running_max`]). Returns the maxima and every relation whose values
/// they then bound, or None.
pub(crate) fn running_maxima(
    program: &Program,
    component: ComponentId,
    copies: &[RelationId],
) -> Option<(Vec<RelationId>, Vec<RelationId>)> {
    let rules_of = |c: ComponentId| program.component(c).rules.iter().copied();
    let mut maxima: Vec<RelationId> = Vec::new();
    for &h in copies {
        for r in rules_of(component) {
            let rule = program.rule(r);
            if rule.head.relation_id == Some(h) || !rule.atoms().any(|a| a.relation_id == Some(h)) {
                continue;
            }
            if max_of(rule) != Some(h) {
                return None;
            }
            maxima.push(rule.head.relation_id?);
        }
    }
    if maxima.is_empty() {
        return None;
    }
    let mut bounded: Vec<RelationId> = copies.to_vec();
    for &a in &maxima {
        let mut running = false;
        for &h in copies {
            for r in rules_of(component) {
                let rule = program.rule(r);
                let Some((table, 0)) = copy_rule(rule) else { continue };
                if rule.head.relation_id != Some(h) || program.relation(table).kind != crate::model::RelationKind::Table
                {
                    continue;
                }
                if let Some(feeds) = running_max(program, component, table, a) {
                    running = true;
                    bounded.extend(feeds);
                }
            }
        }
        if !running {
            return None;
        }
        bounded.push(a);
    }
    Some((maxima, bounded))
}

/// `H(x) :- R(.., x, ..)`: one positive atom, the other columns `_`, no condition, a one-column
/// head of this tick. Returns (R, the column of x).
pub(crate) fn copy_rule(rule: &crate::model::Rule) -> Option<(RelationId, usize)> {
    if rule.kind != RuleKind::SameTick || rule.body.len() != 1 || rule.head.args.len() != 1 {
        return None;
    }
    let crate::model::BodyItem::Atom(atom) = &rule.body[0] else { return None };
    let crate::model::HeadArg::Expr(head) = &rule.head.args[0] else { return None };
    let var = head.as_var()?;
    if atom.negated {
        return None;
    }
    let mut col = None;
    for (i, arg) in atom.args.iter().enumerate() {
        match &arg.kind {
            ExprKind::Var(v) if v == var && col.is_none() => col = Some(i),
            ExprKind::Wildcard => {}
            _ => return None,
        }
    }
    Some((atom.relation_id?, col?))
}

/// `A(max(x)) :- H(x)`: returns H.
fn max_of(rule: &crate::model::Rule) -> Option<RelationId> {
    if rule.kind != RuleKind::SameTick || rule.body.len() != 1 {
        return None;
    }
    let [crate::model::HeadArg::Aggregate(agg)] = rule.head.args.as_slice() else { return None };
    let crate::model::BodyItem::Atom(atom) = &rule.body[0] else { return None };
    let var = agg.arg.as_var()?;
    (agg.func == crate::model::AggregateFunc::Max
        && !atom.negated
        && atom.args.len() == 1
        && atom.args[0].as_var() == Some(var))
    .then_some(atom.relation_id?)
}

/// Whether `table` keeps a running maximum of `a`: it receives only `table(m) :+ M(m)` with
/// `M(max(x)) :- S(x)` and `S(y) :- a(y)`, and loses only values below `M`'s
/// (`delete table(b) :- table(b), M(m), b < m`). Returns the relations whose values it then bounds
/// (S, M and the table).
fn running_max(program: &Program, component: ComponentId, table: RelationId, a: RelationId) -> Option<Vec<RelationId>> {
    let rel = program.relation(table);
    if rel.arity() != 1 || rel.key.as_ref().is_none_or(|k| !k.is_empty()) {
        return None;
    }
    let mut feeds: Vec<RelationId> = vec![table];
    let mut maxes: Vec<RelationId> = Vec::new();
    // What deletions compare with: the table may only lose values below a new maximum it receives.
    let mut deleted_below: Vec<RelationId> = Vec::new();
    for r in program.rules_deriving(table) {
        let rule = program.rule(r);
        match rule.kind {
            RuleKind::Fact => {}
            RuleKind::NextTick => {
                let [crate::model::BodyItem::Atom(atom)] = rule.body.as_slice() else { return None };
                let crate::model::HeadArg::Expr(head) = rule.head.args.first()? else { return None };
                if atom.negated
                    || atom.args.len() != 1
                    || atom.args[0].as_var() != head.as_var()
                    || head.as_var().is_none()
                {
                    return None;
                }
                let m = atom.relation_id?;
                // M(max(x)) :- S(x), with S fed by `a`.
                let s = program.rules_deriving(m).map(|d| max_of(program.rule(d))).collect::<Option<Vec<_>>>()?;
                let [s] = s.as_slice() else { return None };
                let fed = program.rules_deriving(*s).any(|d| {
                    let rule = program.rule(d);
                    rule.component == component && copy_rule(rule) == Some((a, 0))
                });
                if !fed {
                    return None;
                }
                maxes.push(m);
                feeds.extend([m, *s]);
            }
            RuleKind::Delete => {
                // delete T(b) :- T(b), M(m), b < m.
                let atoms: Vec<_> = rule.atoms().collect();
                let conditions: Vec<_> = rule
                    .body
                    .iter()
                    .filter_map(|b| match b {
                        crate::model::BodyItem::Condition(c) => Some(c),
                        _ => None,
                    })
                    .collect();
                let b = atoms.iter().find(|x| x.relation_id == Some(table))?.args.first()?.as_var()?;
                let m_atom = atoms.iter().find(|x| x.relation_id != Some(table))?;
                let m = m_atom.args.first()?.as_var()?;
                let below = conditions.iter().any(|c| {
                    (c.op == crate::model::CompareOp::Lt && c.left.as_var() == Some(b) && c.right.as_var() == Some(m))
                        || (c.op == crate::model::CompareOp::Gt
                            && c.left.as_var() == Some(m)
                            && c.right.as_var() == Some(b))
                });
                if atoms.len() != 2 || conditions.len() != 1 || !below || m_atom.negated {
                    return None;
                }
                deleted_below.push(m_atom.relation_id?);
            }
            _ => return None,
        }
    }
    if maxes.is_empty() || !deleted_below.iter().all(|m| maxes.contains(m)) {
        return None;
    }
    Some(feeds)
}

/// Whether column `g` of channel `rel` carries, on every sender, a value that the node it is sent
/// back to (`return_col`, or the destination for the first hop) produced and fed into `bounded`.
#[allow(clippy::too_many_arguments)]
fn senders_return(
    program: &Program,
    component: ComponentId,
    rel: RelationId,
    g: usize,
    return_col: Option<usize>,
    bounded: &[RelationId],
    memo: &mut Vec<((RelationId, usize), bool)>,
    depth: usize,
) -> bool {
    if depth > 4 {
        return false;
    }
    let senders: Vec<RuleId> = program.rules_deriving(rel).collect();
    !senders.is_empty()
        && senders.iter().all(|&s| {
            let rule = program.rule(s);
            if rule.kind != RuleKind::Async {
                return false;
            }
            let Some(crate::model::HeadArg::Expr(guard)) = rule.head.args.get(g) else { return false };
            let Some(v) = guard.as_var() else { return false };
            let back = match return_col {
                None => rule.head.destination.as_ref(),
                Some(c) => match rule.head.args.get(c) {
                    Some(crate::model::HeadArg::Expr(e)) => Some(e),
                    _ => None,
                },
            };
            let Some(back) = back else { return false };
            if matches!(back.kind, ExprKind::SelfAddr) {
                // This node produced the guard: it must be bounded here.
                return rule.component == component && value_bounded(program, component, s, v, bounded, memo);
            }
            let Some(p) = back.as_var() else { return false };
            // Follow a message that carries both the return address and the guard.
            rule.atoms().filter(|a| !a.negated).any(|atom| {
                let Some(x) = atom.relation_id else { return false };
                let cp = atom.args.iter().position(|e| e.as_var() == Some(p));
                let cv = atom.args.iter().position(|e| e.as_var() == Some(v));
                match (cp, cv) {
                    (Some(cp), Some(cv)) if program.relation(x).kind == crate::model::RelationKind::Channel => {
                        senders_return(program, component, x, cv, Some(cp), bounded, memo, depth + 1)
                    }
                    _ => false,
                }
            })
        })
}

/// Whether variable `v` of rule `r` is bound by a positive atom whose column only ever holds
/// values that flowed into `bounded` on this node.
fn value_bounded(
    program: &Program,
    component: ComponentId,
    r: RuleId,
    v: &str,
    bounded: &[RelationId],
    memo: &mut Vec<((RelationId, usize), bool)>,
) -> bool {
    program.rule(r).atoms().filter(|a| !a.negated).any(|atom| {
        let Some(x) = atom.relation_id else { return false };
        atom.args
            .iter()
            .enumerate()
            .filter(|(_, e)| e.as_var() == Some(v))
            .any(|(c, _)| column_bounded(program, component, x, c, bounded, memo))
    })
}

fn column_bounded(
    program: &Program,
    component: ComponentId,
    rel: RelationId,
    c: usize,
    bounded: &[RelationId],
    memo: &mut Vec<((RelationId, usize), bool)>,
) -> bool {
    if let Some((_, known)) = memo.iter().find(|(k, _)| *k == (rel, c)) {
        return *known;
    }
    let relation = program.relation(rel);
    if relation.component != Some(component) {
        return false;
    }
    // Copied as a whole into a bounded relation: bounded from then on.
    let feeds = program.component(component).rules.iter().any(|&r| {
        let rule = program.rule(r);
        rule.head.relation_id.is_some_and(|h| bounded.contains(&h)) && copy_rule(rule) == Some((rel, c))
    });
    if feeds {
        memo.push(((rel, c), true));
        return true;
    }
    // Otherwise every derivation must copy the column from a bounded one (assumed while looking:
    // a cycle only copies values that entered it elsewhere; what was concluded under that
    // assumption is dropped if it fails).
    let mark = memo.len();
    memo.push(((rel, c), true));
    let derivers: Vec<RuleId> =
        program.rules_deriving(rel).filter(|&r| program.rule(r).kind != RuleKind::Delete).collect();
    let ok = !derivers.is_empty()
        && !matches!(relation.kind, crate::model::RelationKind::Input | crate::model::RelationKind::Channel)
        && derivers.iter().all(|&d| {
            let rule = program.rule(d);
            if !matches!(rule.kind, RuleKind::SameTick | RuleKind::NextTick) {
                return false;
            }
            match rule.head.args.get(c) {
                Some(crate::model::HeadArg::Expr(e)) => {
                    e.as_var().is_some_and(|v| value_bounded(program, component, d, v, bounded, memo))
                }
                _ => false,
            }
        });
    if !ok {
        memo.truncate(mark);
        memo.push(((rel, c), false));
    }
    ok
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
    let dest = crate::rewrite::unused_name("dest", |n| vars.iter().any(|(v, _)| *v == n));
    let old = text[destination.range.as_range()].to_string();
    // The head ends with its closing parenthesis; the rule with its period.
    let head_close = rule.head.range.end as usize - 1;
    let period = rule.range.end as usize - 1;
    vec![
        (destination.range, dest.clone()),
        (TextRange::empty(head_close), if rule.head.args.is_empty() { old.clone() } else { format!(", {old}") }),
        // To the partner of the C node it addressed: each C node has its own D node.
        (TextRange::empty(period), format!(", partner({old}, {dest}), nodes(\"{new_name}\", {dest})")),
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
        assert_eq!(redirected(src, "ping"), "ping@dest2(p) :~ go(p, dest), partner(p, dest2), nodes(\"d\", dest2).");
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
