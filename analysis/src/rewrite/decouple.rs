//! Decoupling: move some rules of a component C (and the relations only they derive) into a new
//! component D. Facts that flowed inside C now flow as messages: C forwards every relation the
//! moved rules read but C derives or receives (`R_D@d(..) :~ R(..), nodes("D", d).`).
//!
//! Preconditions (SIGMOD'24 decoupling, checked here): no relation is derived on both sides; the
//! rules left in C read nothing D derives (C independent of D); and each forwarded relation is
//!   - an input or channel: it already arrives after an arbitrary delay (redirection);
//!   - a table that only grows, persisted again in D (monotonic decoupling);
//!   - a per-tick relation that D's rules use one fact at a time, with no aggregation or negation
//!     (functional decoupling).
//!
//! `self` used as a return address in a moved rule becomes the address of the C node that
//! forwarded the fact (an extra `origin` column), so replies still reach C.
//!
//! A channel that C still reads only through a projection is not forwarded but sent straight to
//! D, which passes the projection back (see `nack.rs`).

use std::collections::BTreeSet;

use crate::model::{ExprKind, HeadArg, RelationId, RelationKind, Rule, RuleId, RuleKind, Type};
use crate::rewrite::nack::{self, Nack};
use crate::rewrite::{component, finish, splice, Refusal, RewriteResult};
use crate::scaling::{display, Context};
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

pub fn decouple(
    analysis: &Analysis,
    component_name: &str,
    rules: &[RuleId],
    new_name: &str,
) -> Result<RewriteResult, Refusal> {
    let program = &analysis.program;
    let text = analysis.text();
    let cid = component(analysis, component_name)?;
    let comp = program.component(cid);
    let valid_name = new_name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && new_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name || program.component_by_name(new_name).is_some() || program.relation_by_name(new_name).is_some() {
        return Err(Refusal::new(comp.name_range, format!("`{new_name}` is not a fresh component name")));
    }
    let ctx = Context::new(program);
    let mut moved: BTreeSet<RuleId> = BTreeSet::new();
    for &r in rules {
        if program.rule(r).component != cid {
            return Err(Refusal::new(program.rule(r).range, format!("this rule is not in `{component_name}`")));
        }
        moved.insert(r);
    }
    if moved.is_empty() || moved.len() == comp.rules.len() {
        return Err(Refusal::new(comp.name_range, "choose some, but not all, rules of the component to move"));
    }
    let local = |r: RelationId| program.relation(r).component == Some(cid);
    let local_head = |rule: &Rule| rule.head.relation_id.filter(|&h| rule.kind != RuleKind::Async && local(h));
    let reads = |rule_ids: Vec<RuleId>, rel: RelationId| {
        rule_ids.into_iter().any(|r| program.rule(r).atoms().any(|a| a.relation_id == Some(rel)))
    };
    // Static helpers (`n_acceptors` from `nodes`) that only moved rules read go along.
    loop {
        let before = moved.len();
        for &r in &comp.rules {
            let rule = program.rule(r);
            let Some(h) = local_head(rule) else { continue };
            if moved.contains(&r) || !ctx.is_static[h.index()] {
                continue;
            }
            let read_by_moved = reads(moved.iter().copied().collect(), h);
            let read_by_kept = reads(comp.rules.iter().copied().filter(|x| !moved.contains(x) && *x != r).collect(), h);
            if read_by_moved && !read_by_kept {
                moved.insert(r);
            }
        }
        if moved.len() == before {
            break;
        }
    }
    let kept: Vec<RuleId> = comp.rules.iter().copied().filter(|r| !moved.contains(r)).collect();
    let derives = |r: RuleId, rel: RelationId| {
        let rule = program.rule(r);
        rule.kind != RuleKind::Delete && local_head(rule) == Some(rel)
    };
    // Ownership of every relation of C.
    let mut owned_by_d: Vec<RelationId> = Vec::new();
    for &rel in &comp.relations {
        let by_moved: Vec<RuleId> =
            moved.iter().copied().filter(|&r| derives(r, rel) && program.rule(r).kind != RuleKind::Fact).collect();
        let by_kept: Vec<RuleId> =
            kept.iter().copied().filter(|&r| derives(r, rel) && program.rule(r).kind != RuleKind::Fact).collect();
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
            && reads(moved.iter().copied().collect(), rel)
            && !reads(kept.clone(), rel);
        if !by_moved.is_empty() || facts_only_read_by_moved {
            owned_by_d.push(rel);
        }
    }
    // Facts and deletions follow their relation.
    for &r in &comp.rules {
        let rule = program.rule(r);
        let Some(h) = local_head(rule).or(rule.head.relation_id.filter(|_| rule.kind == RuleKind::Delete)) else {
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
    let kept: Vec<RuleId> = comp.rules.iter().copied().filter(|r| !moved.contains(r)).collect();
    // C must not read anything D derives.
    for &k in &kept {
        for atom in program.rule(k).atoms() {
            if atom.relation_id.is_some_and(|r| owned_by_d.contains(&r)) {
                return Err(Refusal::new(
                    atom.range,
                    format!(
                        "`{}` stays in `{component_name}` but reads `{}`, which the moved rules derive: `{component_name}` would depend on `{new_name}` (not independent)",
                        display::rule(program.rule(k)),
                        atom.relation
                    ),
                ));
            }
        }
    }
    // Redirection: a moved rule that sends `self` as the return address of a request whose
    // replies only moved rules read keeps `self`, and the reply channel moves to D with them:
    // replies then go straight to D. Every sender of the reply must be such a reply.
    let mut redirected: Vec<RelationId> = Vec::new();
    let mut kept_self: Vec<TextRange> = Vec::new();
    for &m in &moved {
        let rule = program.rule(m);
        let Some(request) = rule.head.relation_id.filter(|_| rule.kind == RuleKind::Async) else { continue };
        let Some(remote) = program.relation(request).component.filter(|&k| k != cid) else { continue };
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
                    program.relation(x).component == Some(cid)
                        && program.rules_deriving(x).all(|d| replies.contains(&d))
                        && !kept.iter().any(|&k| program.rule(k).atoms().any(|a| a.relation_id == Some(x)))
                        && moved.iter().any(|&mm| program.rule(mm).atoms().any(|a| a.relation_id == Some(x)))
                });
            if all_ok {
                kept_self.push(e.range);
                for x in channels {
                    if !redirected.contains(&x) {
                        redirected.push(x);
                        owned_by_d.push(x);
                    }
                }
            }
        }
    }
    // What crosses from C to D, and whether each flow is allowed.
    let mut forwarded: Vec<(RelationId, Flow)> = Vec::new();
    let mut copied_static: Vec<RelationId> = Vec::new();
    for &m in &moved {
        let rule = program.rule(m);
        for atom in rule.atoms() {
            let Some(rel) = atom.relation_id else { continue };
            let relation = program.relation(rel);
            if relation.kind == RelationKind::Builtin
                || owned_by_d.contains(&rel)
                || forwarded.iter().any(|f| f.0 == rel)
            {
                continue;
            }
            if ctx.is_static[rel.index()] {
                let derivers: Vec<RuleId> = program.rules_deriving(rel).collect();
                let only_nodes = derivers.iter().all(|&d| {
                    program
                        .rule(d)
                        .atoms()
                        .all(|a| a.relation_id.is_some_and(|r| program.relation(r).kind == RelationKind::Builtin))
                });
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
            if atom.negated {
                return Err(Refusal::new(
                    atom.range,
                    format!(
                        "`{}` negates `{}`, which stays in `{component_name}`: absence in `{new_name}` would not mean absence in `{component_name}`",
                        display::rule(rule),
                        atom.relation
                    ),
                ));
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
    // Functional flows: each moved reader uses the forwarded fact alone, without aggregation or negation.
    for &(rel, flow) in &forwarded {
        if flow != Flow::Functional {
            continue;
        }
        for &m in &moved {
            let rule = program.rule(m);
            if !rule.atoms().any(|a| a.relation_id == Some(rel)) {
                continue;
            }
            let dynamic = rule
                .atoms()
                .filter(|a| {
                    a.relation_id
                        .is_some_and(|r| !ctx.is_static[r.index()] && program.relation(r).kind != RelationKind::Builtin)
                })
                .count();
            let problem = if rule.has_aggregate() {
                Some("aggregates")
            } else if !ctx.causes[m.index()].is_empty() {
                Some("is not monotone")
            } else if dynamic > 1 {
                Some("joins it with other changing facts")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(Refusal::new(
                    rule.range,
                    format!(
                        "`{}` reads `{}`, which `{component_name}` derives each tick, and {problem}: once `{}` arrives as a message it may not meet the facts it met in the same tick",
                        display::rule(rule),
                        program.relation(rel).name,
                        program.relation(rel).name
                    ),
                ));
            }
        }
    }
    // Channels the rest still reads only through a projection go straight to D, which passes
    // the projection back (a nack); the others stay forwarded, with the reason kept to explain.
    let mut nacked: Vec<Nack> = Vec::new();
    let mut nack_refused: Vec<(RelationId, String)> = Vec::new();
    for &(rel, flow) in &forwarded {
        let read_by_kept = kept.iter().any(|&k| program.rule(k).atoms().any(|a| a.relation_id == Some(rel)));
        if flow != Flow::Event || !read_by_kept {
            continue;
        }
        let moved: Vec<RuleId> = moved.iter().copied().collect();
        match nack::plan(program, cid, &kept, &moved, rel) {
            Ok(n) => nacked.push(n),
            Err(reason) => nack_refused.push((rel, reason)),
        }
    }
    forwarded.retain(|f| !nacked.iter().any(|n| n.relation == f.0));
    // Column types of forwarded relations must be known to declare the new channels.
    for &(rel, _) in &forwarded {
        let relation = program.relation(rel);
        if let Some(c) = relation.columns.iter().find(|c| c.ty == Type::Unknown) {
            return Err(Refusal::new(
                relation.range,
                format!("the type of `{}.{}` is unknown; declare `{}`", relation.name, c.name, relation.name),
            ));
        }
    }
    // `self` as a value in moved rules: the forwarding C node's address.
    let self_ranges = |rule: &Rule| {
        let mut out = Vec::new();
        for arg in &rule.head.args {
            if let HeadArg::Expr(e) = arg {
                collect_self(e, &mut out);
            }
        }
        out.retain(|r| !kept_self.contains(r));
        out
    };
    let mut needs_origin = false;
    for &m in &moved {
        let rule = program.rule(m);
        let mut body_self = Vec::new();
        for item in &rule.body {
            match item {
                crate::model::BodyItem::Atom(a) => a.args.iter().for_each(|e| collect_self(e, &mut body_self)),
                crate::model::BodyItem::Condition(c) => {
                    collect_self(&c.left, &mut body_self);
                    collect_self(&c.right, &mut body_self);
                }
            }
        }
        if let Some(&range) = body_self.first() {
            return Err(Refusal::new(
                range,
                format!("this rule compares `self`, which would become `{new_name}`'s address"),
            ));
        }
        if !self_ranges(rule).is_empty() {
            let fed = rule.atoms().any(|a| {
                !a.negated
                    && (forwarded.iter().any(|f| Some(f.0) == a.relation_id)
                        || nacked.iter().any(|n| Some(n.relation) == a.relation_id))
            });
            if !fed {
                return Err(Refusal::new(
                    rule.head.range,
                    format!(
                        "`{}` sends `self` as a return address but reads no fact forwarded from `{component_name}`: replies would go to `{new_name}`",
                        display::rule(rule)
                    ),
                ));
            }
            needs_origin = true;
        }
    }

    let fwd_name = |rel: RelationId| format!("{}_{new_name}", program.relation(rel).name);
    let read_name = |rel: RelationId, flow: Flow| match flow {
        Flow::Persisted => format!("{}_{new_name}_log", program.relation(rel).name),
        _ => fwd_name(rel),
    };
    let origin_var = "origin";

    // ---- New text of C: moved rules and declarations out, forwarding rules in.
    let mut edits: Vec<(TextRange, String)> = Vec::new();
    let mut d_decls: Vec<String> = Vec::new();
    let mut d_rules: Vec<String> = Vec::new();
    for &rel in &owned_by_d {
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
            unique_names(relation).iter().zip(&relation.columns).map(|(n, c)| format!("{n}: {}", c.ty)).collect();
        if needs_origin {
            cols.push(format!("{origin_var}: addr"));
        }
        cols.join(", ")
    };
    let mut forwarding: Vec<String> = Vec::new();
    for &(rel, flow) in &forwarded {
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
                for d in program.rules_deriving(rel).filter(|&d| program.rule(d).kind != RuleKind::Delete) {
                    let rule = program.rule(d);
                    if rule.kind == RuleKind::Fact {
                        continue;
                    }
                    let head_args: Vec<String> =
                        rule.head.args.iter().map(|a| text[a.range().as_range()].to_string()).collect();
                    let mut args = head_args;
                    if needs_origin {
                        args.push("self".into());
                    }
                    let body = &text[rule.op_range.end as usize..rule.range.end as usize - 1];
                    forwarding.push(format!(
                        "{}@dest({}) :~{}, nodes(\"{new_name}\", dest).",
                        fwd_name(rel),
                        args.join(", "),
                        body.trim_end()
                    ));
                }
                let log = read_name(rel, flow);
                let mut log_vars = vars.clone();
                if needs_origin {
                    log_vars.push(origin_var.into());
                }
                d_decls.push(format!("table {log}({})", columns_decl(rel)));
                d_rules.push(format!("{log}({}) :- {}({}).", log_vars.join(", "), fwd_name(rel), log_vars.join(", ")));
                for f in program.rules_deriving(rel).filter(|&d| program.rule(d).kind == RuleKind::Fact) {
                    let fact = program.rule(f);
                    let mut args: Vec<String> =
                        fact.head.args.iter().map(|a| text[a.range().as_range()].to_string()).collect();
                    if needs_origin {
                        // Initial facts come from every C node; none is known here, so use D's own.
                        args.push("self".into());
                    }
                    d_rules.push(format!("{log}({}).", args.join(", ")));
                }
            }
            Flow::Event | Flow::Functional => {
                forwarding.push(format!(
                    "{}@dest({}) :~ {}({}), nodes(\"{new_name}\", dest).",
                    fwd_name(rel),
                    sent.join(", "),
                    relation.name,
                    vars.join(", ")
                ));
            }
        }
    }
    for &rel in &copied_static {
        let relation = program.relation(rel);
        for d in program.rules_deriving(rel) {
            let rule = program.rule(d);
            let span = TextRange::new(rule.range.start as usize, rule.range.end as usize);
            let local_edits = vec![(shift(rule.head.relation_range, span), format!("{}_{new_name}", relation.name))];
            d_rules.push(splice(&text[span.as_range()], &local_edits));
        }
    }
    for &m in &moved {
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
                format!(", {origin_var}")
            } else {
                ", _".to_string()
            };
            edits.push((shift(TextRange::empty(atom.range.end as usize - 1), span), extra));
        };
        for atom in rule.atoms() {
            let Some(rel) = atom.relation_id else { continue };
            if let Some(&(_, flow)) = forwarded.iter().find(|f| f.0 == rel) {
                local_edits.push((shift(atom.relation_range, span), read_name(rel, flow)));
                if needs_origin {
                    origin_arg(atom, &mut local_edits);
                }
            } else if copied_static.contains(&rel) {
                local_edits.push((shift(atom.relation_range, span), format!("{}_{new_name}", atom.relation)));
            } else if nacked.iter().any(|n| n.relation == rel) {
                // The redirected channel carries the addressed C node last: that is `origin`.
                origin_arg(atom, &mut local_edits);
            }
        }
        for range in self_ranges(rule) {
            local_edits.push((shift(range, span), origin_var.to_string()));
        }
        d_rules.push(splice(&text[span.as_range()], &local_edits).trim().to_string());
    }
    // Nacks: the channel's declaration moves to D with an `origin` column, its senders address D,
    // D passes the projection back, and C's readers read the projection.
    for n in &nacked {
        let relation = program.relation(n.relation);
        let vars = unique_names(relation);
        let mut cols: Vec<String> = vars.iter().zip(&relation.columns).map(|(v, c)| format!("{v}: {}", c.ty)).collect();
        cols.push(format!("{origin_var}: addr"));
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
            "{}@{origin_var}({}) :~ {}({}, {origin_var}){guard}.",
            n.name,
            projected.join(", "),
            relation.name,
            vars.join(", ")
        ));
        for &k in &kept {
            for atom in program.rule(k).atoms().filter(|a| a.relation_id == Some(n.relation)) {
                let args: Vec<&str> = n.columns.iter().map(|&i| &text[atom.args[i].range.as_range()]).collect();
                edits.push((atom.range, format!("{}({})", n.name, args.join(", "))));
            }
        }
        for sender in program.rules_deriving(n.relation) {
            edits.extend(nack::redirect_sender(program, text, sender, new_name));
        }
    }
    // Invariants about the moved relations move with them.
    for &inv in &comp.invariants {
        let invariant = program.invariant(inv);
        let rels: Vec<RelationId> = crate::model::atoms(&invariant.body).filter_map(|a| a.relation_id).collect();
        let in_d = rels.iter().filter(|r| owned_by_d.contains(r)).count();
        if in_d == 0 {
            continue;
        }
        let all_in_d =
            rels.iter().all(|r| owned_by_d.contains(r) || program.relation(*r).kind == RelationKind::Builtin);
        if !all_in_d {
            return Err(Refusal::new(
                invariant.range,
                format!(
                    "invariant `{}` reads relations of both parts; it cannot be checked on one node",
                    invariant.name
                ),
            ));
        }
        let span = item_span(text, invariant.range);
        d_rules.push(text[span.as_range()].trim().to_string());
        edits.push((span, String::new()));
    }
    let close = comp.range.end as usize - 1;
    let mut inserted = String::new();
    if !forwarding.is_empty() {
        inserted.push_str(&format!("\n// Forwarded to `{new_name}` (decoupled by compart rewrite).\n"));
        for f in &forwarding {
            inserted.push_str(f);
            inserted.push('\n');
        }
    }
    edits.push((TextRange::empty(close), inserted));
    let mut d_text =
        format!("\n\n// Decoupled from `{component_name}` by `compart rewrite --decouple`.\ncomponent {new_name} {{\n");
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
    let new_text = splice(text, &edits);

    // ---- Explanation.
    let strongest = forwarded.iter().map(|f| f.1).max();
    let kind = match strongest {
        None | Some(Flow::Event) if !nacked.is_empty() => "decoupling with nack redirection",
        None | Some(Flow::Event) => "mutually independent decoupling (redirection)",
        Some(Flow::Functional) => "functional decoupling",
        Some(Flow::Persisted) => "monotonic decoupling",
    };
    let mut explanation =
        vec![format!("{kind}: {} rule(s) of `{component_name}` move to the new component `{new_name}`", moved.len())];
    if nacked.is_empty() {
        explanation.push(format!("`{component_name}` reads nothing `{new_name}` derives, so it is independent of it"));
    } else {
        explanation.push(format!(
            "`{component_name}` reads nothing `{new_name}` derives but the nacks, which are its own messages delayed"
        ));
    }
    for &(rel, flow) in &forwarded {
        let name = &program.relation(rel).name;
        let kept_reader = kept.iter().find(|&&k| program.rule(k).atoms().any(|a| a.relation_id == Some(rel)));
        if let (Flow::Event, Some(&k)) = (flow, kept_reader) {
            let why = nack_refused.iter().find(|r| r.0 == rel).map_or("", |r| r.1.as_str());
            explanation.push(format!(
                "`{name}` is also read in `{component_name}` by `{}`, so it still arrives at `{component_name}`, which forwards it to `{new_name}`; it cannot go straight to `{new_name}` with a nack back: {why}",
                display::rule(program.rule(k))
            ));
            continue;
        }
        explanation.push(match flow {
            Flow::Event => format!("`{name}` arrives as before and is forwarded to `{new_name}`: one more hop of the unbounded delay messages already have"),
            Flow::Functional => format!("`{name}` is forwarded fact by fact; `{new_name}` uses each alone, with no aggregation or negation"),
            Flow::Persisted => format!("`{name}` only grows: it is forwarded on insertion and persisted again in `{new_name}`"),
        });
    }
    for n in &nacked {
        let relation = program.relation(n.relation);
        let name = &relation.name;
        let cols: Vec<&str> = n.columns.iter().map(|&i| relation.columns[i].name.as_str()).collect();
        let senders: Vec<String> =
            program.rules_deriving(n.relation).map(|s| format!("`{}`", display::rule(program.rule(s)))).collect();
        explanation.push(format!(
            "nack redirection: `{name}` now goes straight to `{new_name}`: its senders ({}) address `{new_name}`, with the `{component_name}` node they addressed as `{origin_var}`; `{component_name}` reads only {} of it, positively and without aggregation, which `{new_name}` passes back on `{}`: to `{component_name}` this is `{name}` arriving later, a delay messages may always have, and `{new_name}`'s inputs could always arrive after everything `{component_name}` did",
            senders.join(", "),
            cols.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
            n.name
        ));
        if let Some((_, why)) = &n.only_above {
            explanation.push(format!("nack filter: {why}"));
        }
    }
    for &x in &redirected {
        explanation.push(format!(
            "redirection: replies on `{}` now go straight to `{new_name}`: the moved rules send their own address as the return address, and only they read `{}`",
            program.relation(x).name,
            program.relation(x).name
        ));
    }
    if needs_origin {
        explanation.push(format!("`self` sent as a return address by the moved rules becomes `origin`, the `{component_name}` node that forwarded the fact, so replies still reach `{component_name}`"));
    }
    let state: Vec<&str> = owned_by_d
        .iter()
        .map(|&r| program.relation(r))
        .filter(|r| r.kind == RelationKind::Table)
        .map(|r| r.name.as_str())
        .collect();
    if state.is_empty() && !forwarded.iter().any(|f| f.1 == Flow::Persisted) {
        explanation.push(format!("partial failure: `{new_name}` keeps no state, so it can fail independently of `{component_name}` without changing what either computes (general omission)"));
    } else {
        explanation.push(format!(
            "partial failure: `{new_name}` now holds state ({}) that used to fail together with `{component_name}`; this is safe under general-omission failures only. If a crash must take both down together, deploy them on one machine",
            if state.is_empty() { "persisted copies of forwarded tables".to_string() } else { state.join(", ") }
        ));
    }
    finish(new_text, explanation)
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
