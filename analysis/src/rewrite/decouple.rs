//! Decoupling: move some rules of a component C (and the relations only they derive) into a new
//! component D. Facts that flowed inside C now flow as messages: each C node forwards every
//! relation the moved rules read but C derives or receives to its own partner D node
//! (`R_D@d(..) :~ R(..), partner(self, d), nodes("D", d).`), so a C with N nodes gets N D nodes,
//! never one node holding every C node's state merged.
//!
//! Preconditions (SIGMOD'24 decoupling, checked here, each a function below that returns the
//! refusal with its reason): no relation is derived on both sides; the rules left in C read
//! nothing D derives (C independent of D); each forwarded relation is
//!   - an input or channel: it already arrives after an arbitrary delay (redirection);
//!   - a table that only grows, persisted again in D (monotonic decoupling);
//!   - a per-tick relation that D's rules use one fact at a time, with no aggregation or negation
//!     (functional decoupling);
//!
//! and no moved rule combines facts of two forwarded relations unless it is monotone over
//! persisted copies of both: C derives them in one tick, but as separate messages D may see one
//! without the other (docs/correctness.md, "races between forwarded relations"). Tables and
//! scratch relations that only moved rules read, and that C derives from inputs and channels
//! alone, move with them, so that they are derived in D from the same message.
//!
//! `self` used as a return address in a moved rule becomes the address of the C node that
//! forwarded the fact (an extra `origin` column), so replies still reach C.
//!
//! A channel that C still reads only through a projection is not forwarded but sent straight to
//! D, which passes the projection back (see `nack.rs`).

use std::collections::BTreeSet;

use crate::model::{ComponentId, ExprKind, HeadArg, RelationId, RelationKind, Rule, RuleId, RuleKind, Type};
use crate::rewrite::context::RewriteContext;
use crate::rewrite::nack::{self, Nack};
use crate::rewrite::{finish, splice, Refusal, RewriteResult};
use crate::scaling::display;
use crate::text::TextRange;
use crate::Analysis;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Flow {
    /// Input or channel: forwarded as it arrives.
    Event,
    /// Per-tick relation derived in C, used one fact at a time in D.
    Functional,
    /// Table that only grows: forwarded on insertion, persisted in D.
    Persisted,
}

impl Flow {
    /// Facts that hold in D only in the tick they arrive.
    fn is_transient(self) -> bool {
        self != Flow::Persisted
    }
}

/// A decoupling whose preconditions hold: everything the transformation needs.
struct Decoupling<'n> {
    c: ComponentId,
    c_name: &'n str,
    d_name: &'n str,
    moved: BTreeSet<RuleId>,
    kept: Vec<RuleId>,
    /// Relations that move to D (declared there), redirected reply channels included.
    owned_by_d: Vec<RelationId>,
    /// Relations that move only because moved rules alone read them (see `carry_along`).
    carried: Vec<RelationId>,
    /// Reply channels that now go straight to D.
    redirected: Vec<RelationId>,
    /// `self` arguments of moved rules that stay D's own address (return addresses of redirected
    /// requests).
    kept_self: Vec<TextRange>,
    forwarded: Vec<(RelationId, Flow)>,
    /// Constant relations computed from the deployment, copied into D.
    copied_static: Vec<RelationId>,
    nacked: Vec<Nack>,
    /// Why a channel read by both sides is forwarded rather than redirected with a nack.
    nack_refused: Vec<(RelationId, String)>,
    /// D needs the forwarding C node's address (`origin`).
    needs_origin: bool,
    /// C's invariants that move to D (they read only relations D takes).
    invariants: Vec<crate::model::InvariantId>,
}

const ORIGIN: &str = "origin";

pub fn decouple(
    analysis: &Analysis,
    component_name: &str,
    rules: &[RuleId],
    new_name: &str,
) -> Result<RewriteResult, Refusal> {
    let cx = RewriteContext::new(analysis);
    let plan = precondition(&cx, component_name, rules, new_name)?;
    let new_text = transform(&cx, &plan);
    finish(new_text, explain(&cx, &plan))
}

/// Every precondition, in order; the first that fails is the refusal.
fn precondition<'n>(
    cx: &RewriteContext<'_>,
    c_name: &'n str,
    rules: &[RuleId],
    d_name: &'n str,
) -> Result<Decoupling<'n>, Refusal> {
    let c = cx.component(c_name)?;
    fresh_name(cx, c, d_name)?;
    let mut moved = selection(cx, c, c_name, rules)?;
    let carried = carry_along(cx, c, &mut moved);
    let mut owned_by_d = ownership(cx, c, &moved)?;
    facts_and_deletions_follow(cx, c, &mut moved, &owned_by_d)?;
    let kept: Vec<RuleId> = cx.program.component(c).rules.iter().copied().filter(|r| !moved.contains(r)).collect();
    rest_independent(cx, &kept, &owned_by_d, c_name, d_name)?;
    let (redirected, kept_self) = reply_redirections(cx, c, &moved, &kept);
    for &x in &redirected {
        if !owned_by_d.contains(&x) {
            owned_by_d.push(x);
        }
    }
    let invariants = invariants_follow(cx, c, &owned_by_d)?;
    let (mut forwarded, copied_static) = forwarded_flows(cx, &moved, &owned_by_d, c_name, d_name)?;
    functional_flows_used_alone(cx, &moved, &forwarded, c_name)?;
    let (nacked, nack_refused) = nack_plans(cx, c, &moved, &kept, &forwarded);
    forwarded.retain(|f| !nacked.iter().any(|n| n.relation == f.0));
    no_races(cx, c, &moved, &forwarded, c_name, d_name)?;
    one_order_matters(cx, c, &moved, &kept, &forwarded, c_name, d_name)?;
    known_column_types(cx, &forwarded)?;
    let needs_origin = self_uses(cx, &moved, &forwarded, &nacked, &kept_self, c_name, d_name)?;
    Ok(Decoupling {
        c,
        c_name,
        d_name,
        moved,
        kept,
        owned_by_d,
        carried,
        redirected,
        kept_self,
        forwarded,
        copied_static,
        nacked,
        nack_refused,
        needs_origin,
        invariants,
    })
}

pub(crate) fn fresh_name(cx: &RewriteContext<'_>, c: ComponentId, name: &str) -> Result<(), Refusal> {
    let program = cx.program;
    let valid = name.chars().next().is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
        && name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
    if !valid || program.component_by_name(name).is_some() || program.relation_by_name(name).is_some() {
        return Err(Refusal::new(program.component(c).name_range, format!("`{name}` is not a fresh component name")));
    }
    Ok(())
}

/// The chosen rules: some, but not all, rules of C.
fn selection(
    cx: &RewriteContext<'_>,
    c: ComponentId,
    c_name: &str,
    rules: &[RuleId],
) -> Result<BTreeSet<RuleId>, Refusal> {
    let program = cx.program;
    let comp = program.component(c);
    let mut moved = BTreeSet::new();
    for &r in rules {
        if program.rule(r).component != c {
            return Err(Refusal::new(program.rule(r).range, format!("this rule is not in `{c_name}`")));
        }
        moved.insert(r);
    }
    if moved.is_empty() || moved.len() == comp.rules.len() {
        return Err(Refusal::new(comp.name_range, "choose some, but not all, rules of the component to move"));
    }
    Ok(moved)
}

/// Relations that only moved rules read go along with the rules deriving them when D can derive
/// them itself: static helpers (`n_acceptors` from `nodes`), and relations C derives from its
/// inputs and channels alone (`seen(p) :- job(_, p)`), which D then derives from the same
/// forwarded message as the facts it meets them with, instead of receiving them separately.
fn carry_along(cx: &RewriteContext<'_>, c: ComponentId, moved: &mut BTreeSet<RuleId>) -> Vec<RelationId> {
    let program = cx.program;
    let comp = program.component(c);
    let mut carried = Vec::new();
    loop {
        let before = moved.len();
        for &r in &comp.rules {
            let rule = program.rule(r);
            let Some(h) = cx.local_head(c, rule) else { continue };
            if moved.contains(&r) || program.relation(h).kind == RelationKind::Output {
                continue;
            }
            let derivers: Vec<RuleId> = program.rules_deriving(h).collect();
            let others = comp.rules.iter().copied().filter(|x| !moved.contains(x) && !derivers.contains(x));
            if !cx.read_by(moved.iter().copied(), h) || cx.read_by(others, h) {
                continue;
            }
            let from_events = !cx.is_static(h)
                && derivers.iter().all(|&d| {
                    let rule = program.rule(d);
                    matches!(rule.kind, RuleKind::SameTick | RuleKind::NextTick)
                        && !cx.is_nonmonotone(d)
                        && rule.atoms().all(|a| {
                            a.relation_id.is_some_and(|x| {
                                cx.is_static(x)
                                    || matches!(program.relation(x).kind, RelationKind::Input | RelationKind::Channel)
                            })
                        })
                });
            if !cx.is_static(h) && !from_events {
                continue;
            }
            for d in derivers {
                moved.insert(d);
            }
            if from_events && !carried.contains(&h) {
                carried.push(h);
            }
        }
        if moved.len() == before {
            return carried;
        }
    }
}

/// The relations of C that D takes: those the moved rules derive (and facts only they read).
/// Refused when a relation is derived on both sides.
fn ownership(cx: &RewriteContext<'_>, c: ComponentId, moved: &BTreeSet<RuleId>) -> Result<Vec<RelationId>, Refusal> {
    let program = cx.program;
    let comp = program.component(c);
    let kept: Vec<RuleId> = comp.rules.iter().copied().filter(|r| !moved.contains(r)).collect();
    let mut owned_by_d = Vec::new();
    for &rel in &comp.relations {
        let not_fact = |r: &RuleId| cx.derives(c, *r, rel) && program.rule(*r).kind != RuleKind::Fact;
        let by_moved: Vec<RuleId> = moved.iter().copied().filter(not_fact).collect();
        let by_kept: Vec<RuleId> = kept.iter().copied().filter(not_fact).collect();
        if let (Some(&m), Some(&k)) = (by_moved.first(), by_kept.first()) {
            return Err(Refusal::new(
                program.rule(k).head.range,
                format!(
                    "`{}` is derived both by a moved rule (`{}`) and by a rule that stays (`{}`); move both or neither",
                    program.relation(rel).name,
                    display::rule(program.rule(m)),
                    display::rule(program.rule(k))
                ),
            ));
        }
        let facts_only_read_by_moved = by_moved.is_empty()
            && by_kept.is_empty()
            && program.rules_deriving(rel).all(|r| program.rule(r).kind == RuleKind::Fact)
            && program.rules_deriving(rel).next().is_some()
            && cx.read_by(moved.iter().copied(), rel)
            && !cx.read_by(kept.iter().copied(), rel);
        if !by_moved.is_empty() || facts_only_read_by_moved {
            owned_by_d.push(rel);
        }
    }
    Ok(owned_by_d)
}

/// Facts move with their relation; a deletion must be on the side of its relation.
fn facts_and_deletions_follow(
    cx: &RewriteContext<'_>,
    c: ComponentId,
    moved: &mut BTreeSet<RuleId>,
    owned_by_d: &[RelationId],
) -> Result<(), Refusal> {
    let program = cx.program;
    for &r in &program.component(c).rules {
        let rule = program.rule(r);
        let Some(h) = cx.local_head(c, rule).or(rule.head.relation_id.filter(|_| rule.kind == RuleKind::Delete)) else {
            continue;
        };
        let in_d = owned_by_d.contains(&h);
        match rule.kind {
            RuleKind::Fact if in_d => {
                moved.insert(r);
            }
            RuleKind::Delete if in_d != moved.contains(&r) => {
                let side = if in_d { "moves" } else { "stays" };
                return Err(Refusal::new(
                    rule.range,
                    format!(
                        "this rule deletes `{}`, which {side}; move the deletion with the relation",
                        rule.head.relation
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// C must not read anything D derives.
fn rest_independent(
    cx: &RewriteContext<'_>,
    kept: &[RuleId],
    owned_by_d: &[RelationId],
    c_name: &str,
    d_name: &str,
) -> Result<(), Refusal> {
    for &k in kept {
        for atom in cx.program.rule(k).atoms() {
            if atom.relation_id.is_some_and(|r| owned_by_d.contains(&r)) {
                return Err(Refusal::new(
                    atom.range,
                    format!(
                        "`{}` stays in `{c_name}` but reads `{}`, which the moved rules derive: `{c_name}` would depend on `{d_name}` (not independent)",
                        display::rule(cx.program.rule(k)),
                        atom.relation
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Redirection: a moved rule that sends `self` as the return address of a request whose
/// replies only moved rules read keeps `self`, and the reply channel moves to D with them:
/// replies then go straight to D. Every sender of the reply must be such a reply.
fn reply_redirections(
    cx: &RewriteContext<'_>,
    c: ComponentId,
    moved: &BTreeSet<RuleId>,
    kept: &[RuleId],
) -> (Vec<RelationId>, Vec<TextRange>) {
    let program = cx.program;
    let mut redirected: Vec<RelationId> = Vec::new();
    let mut kept_self: Vec<TextRange> = Vec::new();
    for &m in moved {
        let rule = program.rule(m);
        let Some(request) = rule.head.relation_id.filter(|_| rule.kind == RuleKind::Async) else { continue };
        let Some(remote) = program.relation(request).component.filter(|&k| k != c) else { continue };
        for (column, arg) in rule.head.args.iter().enumerate() {
            let HeadArg::Expr(e) = arg else { continue };
            if !matches!(e.kind, ExprKind::SelfAddr) {
                continue;
            }
            // Replies: rules of the remote component that answer to that column.
            let replies: Vec<RuleId> = program
                .component(remote)
                .rules
                .iter()
                .copied()
                .filter(|&q| {
                    let reply = program.rule(q);
                    let Some(dest) = reply.head.destination.as_ref().and_then(|d| d.as_var()) else { return false };
                    reply.kind == RuleKind::Async
                        && reply.atoms().any(|a| {
                            !a.negated
                                && a.relation_id == Some(request)
                                && a.args.get(column).and_then(|x| x.as_var()) == Some(dest)
                        })
                })
                .collect();
            let channels: BTreeSet<RelationId> =
                replies.iter().filter_map(|&q| program.rule(q).head.relation_id).collect();
            let all_ok = !channels.is_empty()
                && channels.iter().all(|&x| {
                    cx.owned_by(x, c)
                        && program.rules_deriving(x).all(|d| replies.contains(&d))
                        && !cx.read_by(kept.iter().copied(), x)
                        && cx.read_by(moved.iter().copied(), x)
                });
            if all_ok {
                kept_self.push(e.range);
                for x in channels {
                    if !redirected.contains(&x) {
                        redirected.push(x);
                    }
                }
            }
        }
    }
    (redirected, kept_self)
}

/// What crosses from C to D: forwarded relations with their flow, and constant relations copied.
type Crossing = (Vec<(RelationId, Flow)>, Vec<RelationId>);

/// What crosses from C to D, and whether each flow is allowed.
fn forwarded_flows(
    cx: &RewriteContext<'_>,
    moved: &BTreeSet<RuleId>,
    owned_by_d: &[RelationId],
    c_name: &str,
    d_name: &str,
) -> Result<Crossing, Refusal> {
    let program = cx.program;
    let mut forwarded: Vec<(RelationId, Flow)> = Vec::new();
    let mut copied_static: Vec<RelationId> = Vec::new();
    for &m in moved {
        let rule = program.rule(m);
        for atom in rule.atoms() {
            let Some(rel) = atom.relation_id else { continue };
            let relation = program.relation(rel);
            if cx.is_builtin(rel) || owned_by_d.contains(&rel) {
                continue;
            }
            if atom.negated && !cx.is_static(rel) {
                return Err(Refusal::new(
                    atom.range,
                    format!(
                        "`{}` negates `{}`, which stays in `{c_name}`: absence in `{d_name}` would not mean absence in `{c_name}`",
                        display::rule(rule),
                        atom.relation
                    ),
                ));
            }
            if forwarded.iter().any(|f| f.0 == rel) {
                continue;
            }
            if cx.is_static(rel) {
                let only_nodes = program
                    .rules_deriving(rel)
                    .all(|d| program.rule(d).atoms().all(|a| a.relation_id.is_some_and(|r| cx.is_builtin(r))));
                if !only_nodes {
                    return Err(Refusal::new(
                        atom.range,
                        format!("both parts read the constant relation `{}`; only relations computed from `nodes` are copied", atom.relation),
                    ));
                }
                if !copied_static.contains(&rel) {
                    copied_static.push(rel);
                }
                continue;
            }
            let flow = match relation.kind {
                RelationKind::Input | RelationKind::Channel => Flow::Event,
                RelationKind::Table => {
                    if let Some(d) = program.rules_deriving(rel).find(|&d| program.rule(d).kind == RuleKind::Delete) {
                        return Err(Refusal::new(
                            program.rule(d).range,
                            format!(
                                "monotonic decoupling needs `{}` to only grow, but `{}` deletes from it",
                                atom.relation,
                                display::rule(program.rule(d))
                            ),
                        ));
                    }
                    Flow::Persisted
                }
                _ => Flow::Functional,
            };
            forwarded.push((rel, flow));
        }
    }
    Ok((forwarded, copied_static))
}

/// Functional flows: each moved reader uses the forwarded fact alone, without aggregation or
/// negation.
fn functional_flows_used_alone(
    cx: &RewriteContext<'_>,
    moved: &BTreeSet<RuleId>,
    forwarded: &[(RelationId, Flow)],
    c_name: &str,
) -> Result<(), Refusal> {
    let program = cx.program;
    for &(rel, flow) in forwarded {
        if flow != Flow::Functional {
            continue;
        }
        for &m in moved {
            let rule = program.rule(m);
            if !cx.readers(rel).contains(&m) {
                continue;
            }
            let dynamic =
                rule.atoms().filter(|a| a.relation_id.is_some_and(|r| !cx.is_static(r) && !cx.is_builtin(r))).count();
            let problem = if rule.has_aggregate() {
                Some("aggregates")
            } else if !cx.scaling.causes[m.index()].is_empty() {
                Some("is not monotone")
            } else if dynamic > 1 {
                Some("joins it with other changing facts")
            } else {
                None
            };
            if let Some(problem) = problem {
                let name = &program.relation(rel).name;
                return Err(Refusal::new(
                    rule.range,
                    format!(
                        "`{}` reads `{name}`, which `{c_name}` derives each tick, and {problem}: once `{name}` arrives as a message it may not meet the facts it met in the same tick",
                        display::rule(rule),
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Channels the rest still reads only through a projection go straight to D, which passes the
/// projection back (a nack); the others stay forwarded, with the reason kept to explain.
fn nack_plans(
    cx: &RewriteContext<'_>,
    c: ComponentId,
    moved: &BTreeSet<RuleId>,
    kept: &[RuleId],
    forwarded: &[(RelationId, Flow)],
) -> (Vec<Nack>, Vec<(RelationId, String)>) {
    let mut nacked = Vec::new();
    let mut refused = Vec::new();
    let moved: Vec<RuleId> = moved.iter().copied().collect();
    for &(rel, flow) in forwarded {
        if flow != Flow::Event || !cx.read_by(kept.iter().copied(), rel) {
            continue;
        }
        match nack::plan(cx.program, c, kept, &moved, rel) {
            Ok(n) => nacked.push(n),
            Err(reason) => refused.push((rel, reason)),
        }
    }
    (nacked, refused)
}

/// Races between forwarded relations. C derives the facts the moved rules combine in one tick;
/// forwarded as separate messages, they reach D in any order and in different ticks. A moved
/// rule may therefore combine facts of two forwarded relations only when it is monotone and
/// reads persisted copies of both (it then fires once both are in, as it would have in C);
/// a join with a fact that holds only in the tick it arrives, an aggregate, a negation or a
/// deletion over two of them may see one without the other.
fn no_races(
    cx: &RewriteContext<'_>,
    c: ComponentId,
    moved: &BTreeSet<RuleId>,
    forwarded: &[(RelationId, Flow)],
    c_name: &str,
    d_name: &str,
) -> Result<(), Refusal> {
    let program = cx.program;
    // For each relation D reads or derives: the forwarded relations it is computed from, and
    // whether it holds only in the tick its forwarded facts arrive.
    let mut sources: Vec<BTreeSet<RelationId>> = vec![BTreeSet::new(); program.relations.len()];
    let mut transient = vec![false; program.relations.len()];
    for &(rel, flow) in forwarded {
        sources[rel.index()].insert(rel);
        transient[rel.index()] = flow.is_transient();
    }
    loop {
        let mut changed = false;
        for &m in moved {
            let rule = program.rule(m);
            let Some(h) = cx.local_head(c, rule).filter(|_| rule.kind != RuleKind::Delete) else { continue };
            let mut from: BTreeSet<RelationId> = sources[h.index()].clone();
            let mut is_transient = transient[h.index()];
            for atom in rule.atoms() {
                let Some(rel) = atom.relation_id else { continue };
                from.extend(sources[rel.index()].iter().copied());
                is_transient |= transient[rel.index()] && program.relation(h).kind != RelationKind::Table;
            }
            if from != sources[h.index()] || is_transient != transient[h.index()] {
                sources[h.index()] = from;
                transient[h.index()] = is_transient;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for &m in moved {
        let rule = program.rule(m);
        let read: Vec<&crate::model::Atom> =
            rule.atoms().filter(|a| a.relation_id.is_some_and(|r| !sources[r.index()].is_empty())).collect();
        let from: BTreeSet<RelationId> =
            read.iter().flat_map(|a| sources[a.relation_id.expect("filtered").index()].iter().copied()).collect();
        if from.len() < 2 {
            continue;
        }
        let transient_atom = read.iter().find(|a| transient[a.relation_id.expect("filtered").index()]);
        let how = if let Some(atom) = transient_atom {
            format!("`{}` holds only in the tick it arrives", atom.relation)
        } else if cx.is_nonmonotone(m) {
            "the rule is not monotone (it aggregates, negates or deletes)".to_string()
        } else {
            continue;
        };
        let names: Vec<String> = from.iter().map(|&r| format!("`{}`", program.relation(r).name)).collect();
        let range = transient_atom.map_or(rule.range, |a| a.range);
        return Err(Refusal::new(
            range,
            format!(
                "race: `{}` combines facts of {}, which would reach `{d_name}` as separate messages from `{c_name}`: `{d_name}` may see one without the other, or in another order than `{c_name}` did, and {how}. Move the rules that derive them along, or keep these rules in `{c_name}`",
                display::rule(rule),
                names.join(" and "),
            ),
        ));
    }
    Ok(())
}

/// An input or channel forwarded to D reaches D in another order, and grouped into other ticks,
/// than C received it. That is a delay the original allows when only one part's outputs depend on
/// the order; when a rule downstream of it in C and one in D both do (they aggregate, negate or
/// delete), C and D may act on two different orders, which no run of the original shows.
fn one_order_matters(
    cx: &RewriteContext<'_>,
    c: ComponentId,
    moved: &BTreeSet<RuleId>,
    kept: &[RuleId],
    forwarded: &[(RelationId, Flow)],
    c_name: &str,
    d_name: &str,
) -> Result<(), Refusal> {
    let program = cx.program;
    // The first non-monotone rule among `rules` downstream of `rel` (through their own heads).
    let order_sensitive = |rules: &[RuleId], rel: RelationId| -> Option<RuleId> {
        let mut reached = vec![rel];
        let mut i = 0;
        while i < reached.len() {
            let r = reached[i];
            i += 1;
            for &q in rules.iter().filter(|&&q| cx.readers(r).contains(&q)) {
                if cx.is_nonmonotone(q) {
                    return Some(q);
                }
                if let Some(h) = cx.local_head(c, program.rule(q)) {
                    if !reached.contains(&h) {
                        reached.push(h);
                    }
                }
            }
        }
        None
    };
    let moved: Vec<RuleId> = moved.iter().copied().collect();
    for &(rel, flow) in forwarded {
        if flow != Flow::Event {
            continue;
        }
        let (Some(in_c), Some(in_d)) = (order_sensitive(kept, rel), order_sensitive(&moved, rel)) else { continue };
        let name = &program.relation(rel).name;
        return Err(Refusal::new(
            program.rule(in_d).range,
            format!(
                "both parts act on the order in which `{name}` arrives: `{}` stays in `{c_name}` and `{}` moves to `{d_name}`, and both aggregate, negate or delete; forwarded, `{name}` reaches `{d_name}` in another order than `{c_name}` saw, so they could act on two orders no run of the original shows",
                display::rule(program.rule(in_c)),
                display::rule(program.rule(in_d)),
            ),
        ));
    }
    Ok(())
}

/// Column types of forwarded relations must be known to declare the new channels.
fn known_column_types(cx: &RewriteContext<'_>, forwarded: &[(RelationId, Flow)]) -> Result<(), Refusal> {
    for &(rel, _) in forwarded {
        let relation = cx.program.relation(rel);
        if let Some(col) = relation.columns.iter().find(|col| col.ty == Type::Unknown) {
            return Err(Refusal::new(
                relation.range,
                format!("the type of `{}.{}` is unknown; declare `{}`", relation.name, col.name, relation.name),
            ));
        }
    }
    Ok(())
}

/// `self` in the head of a moved rule: the address D must send as C's (`origin`).
fn head_self_ranges(rule: &Rule, kept_self: &[TextRange]) -> Vec<TextRange> {
    let mut out = Vec::new();
    for arg in &rule.head.args {
        if let HeadArg::Expr(e) = arg {
            collect_self(e, &mut out);
        }
    }
    out.retain(|r| !kept_self.contains(r));
    out
}

/// `self` as a value in moved rules becomes the forwarding C node's address; `Ok(true)` when
/// some rule needs it. Refused where it is compared, or where no forwarded fact tells which C
/// node to answer.
fn self_uses(
    cx: &RewriteContext<'_>,
    moved: &BTreeSet<RuleId>,
    forwarded: &[(RelationId, Flow)],
    nacked: &[Nack],
    kept_self: &[TextRange],
    c_name: &str,
    d_name: &str,
) -> Result<bool, Refusal> {
    let mut needs_origin = false;
    for &m in moved {
        let rule = cx.program.rule(m);
        let mut body_self = Vec::new();
        for item in &rule.body {
            match item {
                crate::model::BodyItem::Atom(a) => a.args.iter().for_each(|e| collect_self(e, &mut body_self)),
                crate::model::BodyItem::Condition(cond) => {
                    collect_self(&cond.left, &mut body_self);
                    collect_self(&cond.right, &mut body_self);
                }
            }
        }
        if let Some(&range) = body_self.first() {
            return Err(Refusal::new(
                range,
                format!("this rule compares `self`, which would become `{d_name}`'s address"),
            ));
        }
        if !head_self_ranges(rule, kept_self).is_empty() {
            let fed = rule.atoms().any(|a| {
                !a.negated
                    && (forwarded.iter().any(|f| Some(f.0) == a.relation_id)
                        || nacked.iter().any(|n| Some(n.relation) == a.relation_id))
            });
            if !fed {
                return Err(Refusal::new(
                    rule.head.range,
                    format!(
                        "`{}` sends `self` as a return address but reads no fact forwarded from `{c_name}`: replies would go to `{d_name}`",
                        display::rule(rule)
                    ),
                ));
            }
            needs_origin = true;
        }
    }
    Ok(needs_origin)
}

/// The forwarding clause every message from C to D ends with: to this C node's own partner.
fn to_partner(d_name: &str, dest: &str) -> String {
    format!("partner(self, {dest}), nodes(\"{d_name}\", {dest})")
}

/// The new program text: moved rules and declarations out of C, forwarding rules in, D after C.
fn transform(cx: &RewriteContext<'_>, plan: &Decoupling<'_>) -> String {
    let program = cx.program;
    let text = cx.text;
    let (c_name, d_name) = (plan.c_name, plan.d_name);
    let needs_origin = plan.needs_origin;
    let fwd_name = |rel: RelationId| format!("{}_{d_name}", program.relation(rel).name);
    let read_name = |rel: RelationId, flow: Flow| match flow {
        Flow::Persisted => format!("{}_{d_name}_log", program.relation(rel).name),
        _ => fwd_name(rel),
    };

    let mut edits: Vec<(TextRange, String)> = Vec::new();
    let mut d_decls: Vec<String> = Vec::new();
    let mut d_rules: Vec<String> = Vec::new();
    for &rel in &plan.owned_by_d {
        let relation = program.relation(rel);
        if relation.declared {
            let span = item_span(text, relation.range);
            d_decls.push(text[span.as_range()].trim_end().to_string());
            edits.push((span, String::new()));
        }
    }
    let columns_decl = |rel: RelationId| {
        let relation = program.relation(rel);
        let mut cols: Vec<String> =
            unique_names(relation).iter().zip(&relation.columns).map(|(n, col)| format!("{n}: {}", col.ty)).collect();
        if needs_origin {
            cols.push(format!("{ORIGIN}: addr"));
        }
        cols.join(", ")
    };
    let mut forwarding: Vec<String> = Vec::new();
    for &(rel, flow) in &plan.forwarded {
        let relation = program.relation(rel);
        let vars = unique_names(relation);
        let mut sent = vars.clone();
        if needs_origin {
            sent.push("self".into());
        }
        d_decls.push(format!("channel {}({})", fwd_name(rel), columns_decl(rel)));
        match flow {
            Flow::Persisted => {
                // Forward on insertion: the rules that add to the table also send.
                for d in program.rules_deriving(rel) {
                    let rule = program.rule(d);
                    if matches!(rule.kind, RuleKind::Fact | RuleKind::Delete) {
                        continue;
                    }
                    let mut args: Vec<String> =
                        rule.head.args.iter().map(|a| text[a.range().as_range()].to_string()).collect();
                    if needs_origin {
                        args.push("self".into());
                    }
                    let body = &text[rule.op_range.end as usize..rule.range.end as usize - 1];
                    forwarding.push(format!(
                        "{}@dest({}) :~{}, {}.",
                        fwd_name(rel),
                        args.join(", "),
                        body.trim_end(),
                        to_partner(d_name, "dest")
                    ));
                }
                let log = read_name(rel, flow);
                let mut log_vars = vars.clone();
                if needs_origin {
                    log_vars.push(ORIGIN.into());
                }
                d_decls.push(format!("table {log}({})", columns_decl(rel)));
                d_rules.push(format!("{log}({}) :- {}({}).", log_vars.join(", "), fwd_name(rel), log_vars.join(", ")));
                for f in program.rules_deriving(rel).filter(|&d| program.rule(d).kind == RuleKind::Fact) {
                    let fact = program.rule(f);
                    let args: Vec<String> =
                        fact.head.args.iter().map(|a| text[a.range().as_range()].to_string()).collect();
                    if needs_origin {
                        // Every C node starts with the fact: D holds it for its partner.
                        let mut args = args;
                        args.push(ORIGIN.into());
                        d_rules.push(format!(
                            "{log}({}) :- partner(self, {ORIGIN}), nodes(\"{c_name}\", {ORIGIN}).",
                            args.join(", ")
                        ));
                    } else {
                        d_rules.push(format!("{log}({}).", args.join(", ")));
                    }
                }
            }
            Flow::Event | Flow::Functional => {
                forwarding.push(format!(
                    "{}@dest({}) :~ {}({}), {}.",
                    fwd_name(rel),
                    sent.join(", "),
                    relation.name,
                    vars.join(", "),
                    to_partner(d_name, "dest")
                ));
            }
        }
    }
    for &rel in &plan.copied_static {
        let relation = program.relation(rel);
        for d in program.rules_deriving(rel) {
            let rule = program.rule(d);
            let span = TextRange::new(rule.range.start as usize, rule.range.end as usize);
            let local_edits = vec![(shift(rule.head.relation_range, span), format!("{}_{d_name}", relation.name))];
            d_rules.push(splice(&text[span.as_range()], &local_edits));
        }
    }
    for &m in &plan.moved {
        let rule = program.rule(m);
        let span = item_span(text, rule.range);
        edits.push((span, String::new()));
        let mut local_edits: Vec<(TextRange, String)> = Vec::new();
        let mut origin_bound = false;
        // The forwarding node's address, appended as the atom's last argument: bound as `origin`
        // by the first positive atom that can, `_` elsewhere.
        let mut origin_arg = |atom: &crate::model::Atom, edits: &mut Vec<(TextRange, String)>| {
            let extra = if needs_origin && !origin_bound && !atom.negated {
                origin_bound = true;
                format!(", {ORIGIN}")
            } else {
                ", _".to_string()
            };
            edits.push((shift(TextRange::empty(atom.range.end as usize - 1), span), extra));
        };
        for atom in rule.atoms() {
            let Some(rel) = atom.relation_id else { continue };
            if let Some(&(_, flow)) = plan.forwarded.iter().find(|f| f.0 == rel) {
                local_edits.push((shift(atom.relation_range, span), read_name(rel, flow)));
                if needs_origin {
                    origin_arg(atom, &mut local_edits);
                }
            } else if plan.copied_static.contains(&rel) {
                local_edits.push((shift(atom.relation_range, span), format!("{}_{d_name}", atom.relation)));
            } else if plan.nacked.iter().any(|n| n.relation == rel) {
                // The redirected channel carries the addressed C node last: that is `origin`.
                origin_arg(atom, &mut local_edits);
            }
        }
        for range in head_self_ranges(rule, &plan.kept_self) {
            local_edits.push((shift(range, span), ORIGIN.to_string()));
        }
        d_rules.push(splice(&text[span.as_range()], &local_edits).trim().to_string());
    }
    // Nacks: the channel's declaration moves to D with an `origin` column, its senders address D,
    // D passes the projection back, and C's readers read the projection.
    for n in &plan.nacked {
        let relation = program.relation(n.relation);
        let vars = unique_names(relation);
        let mut cols: Vec<String> =
            vars.iter().zip(&relation.columns).map(|(v, col)| format!("{v}: {}", col.ty)).collect();
        cols.push(format!("{ORIGIN}: addr"));
        d_decls.push(format!("channel {}({})", relation.name, cols.join(", ")));
        let nack_cols: Vec<String> =
            n.columns.iter().map(|&i| format!("{}: {}", vars[i], relation.columns[i].ty)).collect();
        let nack_decl = format!("channel {}({})", n.name, nack_cols.join(", "));
        if relation.declared {
            edits.push((relation.range, nack_decl));
        } else {
            forwarding.insert(0, nack_decl);
        }
        let projected: Vec<&str> = n.columns.iter().map(|&i| vars[i].as_str()).collect();
        let guard = match (&n.only_above, n.columns.as_slice()) {
            (Some((g, _)), [value]) => format!(", {} > {}", vars[*value], vars[*g]),
            _ => String::new(),
        };
        d_rules.push(format!(
            "{}@{ORIGIN}({}) :~ {}({}, {ORIGIN}){guard}.",
            n.name,
            projected.join(", "),
            relation.name,
            vars.join(", ")
        ));
        for &k in &plan.kept {
            for atom in program.rule(k).atoms().filter(|a| a.relation_id == Some(n.relation)) {
                let args: Vec<&str> = n.columns.iter().map(|&i| &text[atom.args[i].range.as_range()]).collect();
                edits.push((atom.range, format!("{}({})", n.name, args.join(", "))));
            }
        }
        for sender in program.rules_deriving(n.relation) {
            edits.extend(nack::redirect_sender(program, text, sender, d_name));
        }
    }
    // Invariants about the moved relations move with them (`invariants_follow` checked they
    // read nothing else).
    for &inv in &plan.invariants {
        let span = item_span(text, program.invariant(inv).range);
        d_rules.push(text[span.as_range()].trim().to_string());
        edits.push((span, String::new()));
    }
    let comp = program.component(plan.c);
    let close = comp.range.end as usize - 1;
    let mut inserted = String::new();
    if !forwarding.is_empty() {
        inserted.push_str(&format!("\n// Forwarded to `{d_name}` (decoupled by compart rewrite).\n"));
        for f in &forwarding {
            inserted.push_str(f);
            inserted.push('\n');
        }
    }
    edits.push((TextRange::empty(close), inserted));
    let mut d_text =
        format!("\n\n// Decoupled from `{c_name}` by `compart rewrite --decouple`.\ncomponent {d_name} {{\n");
    for d in &d_decls {
        d_text.push_str(d);
        d_text.push('\n');
    }
    d_text.push('\n');
    for r in &d_rules {
        d_text.push_str(r);
        d_text.push('\n');
    }
    d_text.push_str("}\n");
    edits.push((TextRange::empty(comp.range.end as usize), d_text));
    splice(text, &edits)
}

/// An invariant of C must read relations of one side only; those reading D's move to D.
fn invariants_follow(
    cx: &RewriteContext<'_>,
    c: ComponentId,
    owned_by_d: &[RelationId],
) -> Result<Vec<crate::model::InvariantId>, Refusal> {
    let program = cx.program;
    let mut to_d = Vec::new();
    for &inv in &program.component(c).invariants {
        let invariant = program.invariant(inv);
        let rels: Vec<RelationId> = crate::model::atoms(&invariant.body).filter_map(|a| a.relation_id).collect();
        if !rels.iter().any(|r| owned_by_d.contains(r)) {
            continue;
        }
        if !rels.iter().all(|r| owned_by_d.contains(r) || cx.is_builtin(*r)) {
            return Err(Refusal::new(
                invariant.range,
                format!(
                    "invariant `{}` reads relations of both parts; it cannot be checked on one node",
                    invariant.name
                ),
            ));
        }
        to_d.push(inv);
    }
    Ok(to_d)
}

/// Which rewrite applied and why it is sound, one point per line.
fn explain(cx: &RewriteContext<'_>, plan: &Decoupling<'_>) -> Vec<String> {
    let program = cx.program;
    let (c_name, d_name) = (plan.c_name, plan.d_name);
    let strongest = plan.forwarded.iter().map(|f| f.1).max();
    let kind = match strongest {
        None | Some(Flow::Event) if !plan.nacked.is_empty() => "decoupling with nack redirection",
        None | Some(Flow::Event) => "mutually independent decoupling (redirection)",
        Some(Flow::Functional) => "functional decoupling",
        Some(Flow::Persisted) => "monotonic decoupling",
    };
    let mut explanation =
        vec![format!("{kind}: {} rule(s) of `{c_name}` move to the new component `{d_name}`", plan.moved.len())];
    if plan.nacked.is_empty() {
        explanation.push(format!("`{c_name}` reads nothing `{d_name}` derives, so it is independent of it"));
    } else {
        explanation.push(format!(
            "`{c_name}` reads nothing `{d_name}` derives but the nacks, which are its own messages delayed"
        ));
    }
    explanation.push(format!(
        "each `{c_name}` node forwards to its own partner `{d_name}` node (`partner(self, dest)`): deploy `{d_name}` with as many nodes as `{c_name}`"
    ));
    for &rel in &plan.carried {
        explanation.push(format!(
            "`{}` is read only by the moved rules and derived from inputs and channels alone: it moves along, derived in `{d_name}` from the same message as the facts it meets",
            program.relation(rel).name
        ));
    }
    for &(rel, flow) in &plan.forwarded {
        let name = &program.relation(rel).name;
        let kept_reader = plan.kept.iter().find(|&&k| cx.readers(rel).contains(&k));
        if let (Flow::Event, Some(&k)) = (flow, kept_reader) {
            let why = plan.nack_refused.iter().find(|r| r.0 == rel).map_or("", |r| r.1.as_str());
            explanation.push(format!(
                "`{name}` is also read in `{c_name}` by `{}`, so it still arrives at `{c_name}`, which forwards it to `{d_name}`; it cannot go straight to `{d_name}` with a nack back: {why}",
                display::rule(program.rule(k))
            ));
            continue;
        }
        explanation.push(match flow {
            Flow::Event => format!("`{name}` arrives as before and is forwarded to `{d_name}`: one more hop of the unbounded delay messages already have"),
            Flow::Functional => format!("`{name}` is forwarded fact by fact; `{d_name}` uses each alone, with no aggregation or negation"),
            Flow::Persisted => format!("`{name}` only grows: it is forwarded on insertion and persisted again in `{d_name}`"),
        });
    }
    if plan.forwarded.len() > 1 {
        explanation.push(format!(
            "no race: no moved rule combines facts of two forwarded relations except monotonically over persisted copies of both, so the order in which they reach `{d_name}` does not matter"
        ));
    }
    for n in &plan.nacked {
        let relation = program.relation(n.relation);
        let name = &relation.name;
        let cols: Vec<&str> = n.columns.iter().map(|&i| relation.columns[i].name.as_str()).collect();
        let senders: Vec<String> =
            program.rules_deriving(n.relation).map(|s| format!("`{}`", display::rule(program.rule(s)))).collect();
        explanation.push(format!(
            "nack redirection: `{name}` now goes straight to `{d_name}`: its senders ({}) address `{d_name}`, with the `{c_name}` node they addressed as `{ORIGIN}`; `{c_name}` reads only {} of it, positively and without aggregation, which `{d_name}` passes back on `{}`: to `{c_name}` this is `{name}` arriving later, a delay messages may always have, and `{d_name}`'s inputs could always arrive after everything `{c_name}` did",
            senders.join(", "),
            cols.iter().map(|col| format!("`{col}`")).collect::<Vec<_>>().join(", "),
            n.name
        ));
        if let Some((_, why)) = &n.only_above {
            explanation.push(format!("nack filter: {why}"));
        }
    }
    for &x in &plan.redirected {
        explanation.push(format!(
            "redirection: replies on `{}` now go straight to `{d_name}`: the moved rules send their own address as the return address, and only they read `{}`",
            program.relation(x).name,
            program.relation(x).name
        ));
    }
    if plan.needs_origin {
        explanation.push(format!("`self` sent as a return address by the moved rules becomes `{ORIGIN}`, the `{c_name}` node that forwarded the fact, so replies still reach `{c_name}`"));
    }
    let state: Vec<&str> = plan
        .owned_by_d
        .iter()
        .map(|&r| program.relation(r))
        .filter(|r| r.kind == RelationKind::Table)
        .map(|r| r.name.as_str())
        .collect();
    if state.is_empty() && !plan.forwarded.iter().any(|f| f.1 == Flow::Persisted) {
        explanation.push(format!("partial failure: `{d_name}` keeps no state, so it can fail independently of `{c_name}` without changing what either computes (general omission)"));
    } else {
        explanation.push(format!(
            "partial failure: `{d_name}` now holds state ({}) that used to fail together with `{c_name}`; this is safe under general-omission failures only. If a crash must take both down together, deploy them on one machine",
            if state.is_empty() { "persisted copies of forwarded tables".to_string() } else { state.join(", ") }
        ));
    }
    explanation
}

fn collect_self(e: &crate::model::Expr, out: &mut Vec<TextRange>) {
    match &e.kind {
        ExprKind::SelfAddr => out.push(e.range),
        ExprKind::Neg(inner) => collect_self(inner, out),
        ExprKind::Binary(_, l, r) => {
            collect_self(l, out);
            collect_self(r, out);
        }
        ExprKind::Call(_, args) => args.iter().for_each(|a| collect_self(a, out)),
        _ => {}
    }
}

/// Column names usable as variables: unique, and never `dest`, `origin` or `self`.
pub(crate) fn unique_names(relation: &crate::model::Relation) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, c) in relation.columns.iter().enumerate() {
        let base = if c.name.is_empty() || matches!(c.name.as_str(), "dest" | "origin" | "self" | "_") {
            format!("c{i}")
        } else {
            c.name.clone()
        };
        let name = crate::rewrite::unused_name(&base, |n| out.iter().any(|o| o == n));
        out.push(name);
    }
    out
}

/// A range relative to the start of `span`.
fn shift(range: TextRange, span: TextRange) -> TextRange {
    TextRange::new((range.start - span.start) as usize, (range.end - span.start) as usize)
}

/// An item's range grown to whole lines: the comment lines right above it and a comment that
/// follows it on its last line move with it.
fn item_span(text: &str, range: TextRange) -> TextRange {
    let line_start = |at: usize| text[..at].rfind('\n').map_or(0, |i| i + 1);
    let mut start = line_start(range.start as usize);
    if !text[start..range.start as usize].trim().is_empty() {
        start = range.start as usize;
    } else {
        while start > 0 {
            let prev = line_start(start - 1);
            if text[prev..start].trim_start().starts_with("//") {
                start = prev;
            } else {
                break;
            }
        }
    }
    let mut end = range.end as usize;
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    let rest = text[end..line_end].trim();
    if rest.is_empty() || rest.starts_with("//") {
        end = (line_end + 1).min(text.len());
    }
    TextRange::new(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_span_takes_comment_lines_above_and_trailing_comment() {
        let text = "a.\n  // about b\n  // more\n  b. // trailing\nc.\n";
        let start = text.find("b.").unwrap();
        let span = item_span(text, TextRange::new(start, start + 2));
        assert_eq!(&text[span.as_range()], "  // about b\n  // more\n  b. // trailing\n");
    }

    #[test]
    fn item_span_keeps_items_sharing_a_line_apart() {
        let text = "a. b.\n";
        let span = item_span(text, TextRange::new(3, 5));
        assert_eq!(&text[span.as_range()], "b.\n");
    }

    #[test]
    fn unique_names_avoid_reserved_and_repeated_names() {
        let analysis = crate::analyze("component c {\n input r(dest: int, x: int, x2: int)\n}\n");
        let rel = analysis.program.relation_by_name("r").unwrap();
        let names = unique_names(analysis.program.relation(rel));
        assert_eq!(names, vec!["c0", "x", "x2"]);
    }
}
