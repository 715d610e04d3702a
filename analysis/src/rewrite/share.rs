//! Shared proxies: two stateless components A and B (typically parts decoupled from one
//! component, like Compartmentalized Paxos' proxy leaders) become one component P whose nodes do
//! the work of both, so that one set of machines serves both loads.
//!
//! P is the union of A's and B's declarations, rules and invariants; every `nodes("A", d)` and
//! `nodes("B", d)` of the program becomes `nodes("P", d)`. Relation names are global, so A's rules
//! in P read and derive exactly the relations they did in A: the merge adds no join between the
//! two parts. It is an equivalence when (each a function below that returns the refusal with its
//! reason):
//!   - neither keeps state between ticks (no table, no `:+` rule): a P node's tick on A's facts
//!     computes what an A node's tick did on them, whatever B's facts share the tick;
//!   - neither reads which node or instance it is beyond finding its partner (`self` only in
//!     `partner(self, _)`, no `instance`), and neither sends to the other;
//!   - their addresses are used only to send to them (`x@d(..) :~ .., nodes("A", d)`): nothing can
//!     then tell an A node from a B node, which after the merge are the same node;
//!   - the same partner component (or none), so that P's nodes pair with it as both did, and the
//!     same placement (both parallel, or both partitioned: P routes each relation by its key);
//!   - neither receives client inputs (the workload names its entry component).

use crate::model::{ComponentId, ExprKind, RelationKind, Rule, RuleKind, NODES_RELATION, PARTNER_RELATION};
use crate::rewrite::context::RewriteContext;
use crate::rewrite::{finish, splice, Refusal, RewriteResult};
use crate::text::TextRange;
use crate::Analysis;

/// Merge components `a` and `b` into a new component `into`.
pub fn share(analysis: &Analysis, a: &str, b: &str, into: &str) -> Result<RewriteResult, Refusal> {
    let cx = RewriteContext::new(analysis);
    let (ca, cb) = precondition(&cx, a, b, into)?;
    let new_text = transform(&cx, ca, cb, into);
    let program = cx.program;
    let partner = program.partnered_with(ca).map(|p| program.component(p).name.clone());
    let mut explanation = vec![
        format!("shared proxies: `{a}` and `{b}` become one component `{into}`, their rules side by side; every send to either goes to `{into}`"),
        format!("neither keeps state between ticks (no table, no `:+` rule), and relation names are global: each part's rules read only its own messages, so a tick of `{into}` computes for each part what that part's tick did"),
        format!("`{a}`'s and `{b}`'s addresses are used only as destinations, and neither sends its own: no node can tell which part a `{into}` node serves"),
    ];
    if let Some(p) = partner {
        explanation.push(format!(
            "both pair with `{p}` node by node (`partner`): `{into}` keeps its node count and pairs the same way"
        ));
    }
    finish(new_text, explanation)
}

/// The components `component` might share instances with: when it is stateless, every other
/// stateless component (the editor offers each, disabled with the refusal where it is not mergeable).
pub fn share_candidates(program: &crate::Program, component: ComponentId) -> Vec<ComponentId> {
    let stateless = |c: ComponentId| {
        let comp = program.component(c);
        !comp.relations.iter().any(|&r| program.relation(r).kind == RelationKind::Table)
            && !comp.rules.iter().any(|&r| program.rule(r).kind == RuleKind::NextTick)
    };
    if !stateless(component) {
        return Vec::new();
    }
    program.component_ids().filter(|&c| c != component && stateless(c)).collect()
}

/// Whether `a` and `b` can be merged: their ids, or the first precondition that fails.
fn precondition(cx: &RewriteContext<'_>, a: &str, b: &str, into: &str) -> Result<(ComponentId, ComponentId), Refusal> {
    let ca = cx.component(a)?;
    let cb = cx.component(b)?;
    if ca == cb {
        return Err(Refusal::new(cx.program.component(ca).name_range, "choose two different components to share"));
    }
    super::decouple::fresh_name(cx, ca, into)?;
    for (c, other) in [(ca, cb), (cb, ca)] {
        stateless(cx, c)?;
        no_inputs(cx, c)?;
        own_address_unused(cx, c, other)?;
    }
    addresses_only_destinations(cx, ca, cb)?;
    same_partner(cx, ca, cb)?;
    same_placement(cx, ca, cb)?;
    Ok((ca, cb))
}

/// No table and no rule that carries facts to the next tick.
fn stateless(cx: &RewriteContext<'_>, c: ComponentId) -> Result<(), Refusal> {
    let program = cx.program;
    let comp = program.component(c);
    if let Some(&t) = comp.relations.iter().find(|&&r| program.relation(r).kind == RelationKind::Table) {
        let rel = program.relation(t);
        return Err(Refusal::new(
            rel.name_range,
            format!("`{}` keeps state in table `{}`: a shared node would hold both parts' state, and only stateless parts are shared", comp.name, rel.name),
        ));
    }
    if let Some(&r) = comp.rules.iter().find(|&&r| program.rule(r).kind == RuleKind::NextTick) {
        return Err(Refusal::new(
            program.rule(r).range,
            format!("this rule of `{}` carries facts to the next tick: only stateless parts are shared", comp.name),
        ));
    }
    Ok(())
}

fn no_inputs(cx: &RewriteContext<'_>, c: ComponentId) -> Result<(), Refusal> {
    let program = cx.program;
    let comp = program.component(c);
    match comp.relations.iter().find(|&&r| program.relation(r).kind == RelationKind::Input) {
        Some(&r) => Err(Refusal::new(
            program.relation(r).name_range,
            format!(
                "`{}` receives client input `{}`: clients address the workload's entry component, so it is not shared",
                comp.name,
                program.relation(r).name
            ),
        )),
        None => Ok(()),
    }
}

/// `self` only as `partner(self, _)`, no `instance`, and no message to the other part.
fn own_address_unused(cx: &RewriteContext<'_>, c: ComponentId, other: ComponentId) -> Result<(), Refusal> {
    let program = cx.program;
    let name = &program.component(c).name;
    let other_name = &program.component(other).name;
    for &r in &program.component(c).rules {
        let rule = program.rule(r);
        if let Some(atom) = rule.atoms().find(|a| a.relation == crate::model::INSTANCE_RELATION) {
            return Err(Refusal::new(atom.range, format!("`{name}` reads `instance`, whose count the merge changes")));
        }
        let partner_selves: Vec<TextRange> = rule
            .atoms()
            .filter(|a| a.relation == PARTNER_RELATION)
            .filter_map(|a| a.args.first())
            .filter(|e| matches!(e.kind, ExprKind::SelfAddr))
            .map(|e| e.range)
            .collect();
        let mut selves = Vec::new();
        for_each_expr(rule, &mut |e| self_uses(e, &mut selves));
        if let Some(range) = selves.into_iter().find(|r| !partner_selves.contains(r)) {
            return Err(Refusal::new(
                range,
                format!("`{name}` uses its own address here: after the merge it is also `{other_name}`'s, so whoever receives or compares it could mix the two parts"),
            ));
        }
        if let Some(atom) = rule.atoms().find(|a| names_component(a, other_name)) {
            return Err(Refusal::new(
                atom.range,
                format!("`{name}` sends to `{other_name}`: merged, the part would message itself; only parts that do not talk to each other are shared"),
            ));
        }
    }
    Ok(())
}

fn self_uses(e: &crate::model::Expr, out: &mut Vec<TextRange>) {
    match &e.kind {
        ExprKind::SelfAddr => out.push(e.range),
        ExprKind::Neg(x) => self_uses(x, out),
        ExprKind::Binary(_, l, r) => {
            self_uses(l, out);
            self_uses(r, out);
        }
        ExprKind::Call(_, args) => args.iter().for_each(|x| self_uses(x, out)),
        _ => {}
    }
}

/// Every top-level expression of a rule: head destination and arguments, atom arguments,
/// condition sides.
fn for_each_expr(rule: &Rule, f: &mut impl FnMut(&crate::model::Expr)) {
    if let Some(d) = &rule.head.destination {
        f(d);
    }
    for arg in &rule.head.args {
        match arg {
            crate::model::HeadArg::Expr(e) => f(e),
            crate::model::HeadArg::Aggregate(agg) => f(&agg.arg),
        }
    }
    for item in &rule.body {
        match item {
            crate::model::BodyItem::Atom(atom) => atom.args.iter().for_each(&mut *f),
            crate::model::BodyItem::Condition(c) => {
                f(&c.left);
                f(&c.right);
            }
        }
    }
}

/// `nodes("name", _)`.
fn names_component(atom: &crate::model::Atom, name: &str) -> bool {
    atom.relation == NODES_RELATION && matches!(atom.args.first().map(|e| &e.kind), Some(ExprKind::Str(s)) if s == name)
}

/// Every `nodes("A", d)` / `nodes("B", d)` in the program picks the destination of the rule's
/// message and nothing else (`d` appears otherwise only as `partner(_, d)`), and no invariant
/// reads them: an address of A and one of B, which the merge makes equal, then never meet.
fn addresses_only_destinations(cx: &RewriteContext<'_>, ca: ComponentId, cb: ComponentId) -> Result<(), Refusal> {
    let program = cx.program;
    let names = [&program.component(ca).name, &program.component(cb).name];
    for rule in &program.rules {
        for atom in rule.atoms().filter(|a| a.relation == NODES_RELATION) {
            let Some(first) = atom.args.first() else { continue };
            let target =
                match &first.kind {
                    ExprKind::Str(s) if names.contains(&s) => s,
                    ExprKind::Str(_) => continue,
                    _ => return Err(Refusal::new(
                        atom.range,
                        "this rule reads `nodes` of a component it does not name: it could tell the two parts apart",
                    )),
                };
            let var = atom.args.get(1).and_then(|e| e.as_var());
            let dest = rule.head.destination.as_ref().and_then(|d| d.as_var());
            let sends = rule.kind == RuleKind::Async && var.is_some() && var == dest;
            let mut uses = 0usize;
            let mut allowed = 0usize;
            if let Some(v) = var {
                for_each_expr(rule, &mut |e| {
                    let mut vars = Vec::new();
                    e.variables(&mut vars);
                    uses += vars.iter().filter(|(n, _)| *n == v).count();
                });
                // The destination, this atom, and `partner(_, d)` atoms.
                allowed = 2 + rule
                    .atoms()
                    .filter(|a| a.relation == PARTNER_RELATION && a.args.get(1).and_then(|e| e.as_var()) == Some(v))
                    .count();
            }
            if !sends || uses != allowed {
                return Err(Refusal::new(
                    atom.range,
                    format!("this rule uses `{target}`'s addresses other than to send to them: after the merge they are shared with the other part, and it could tell"),
                ));
            }
        }
    }
    for inv in &program.invariants {
        if let Some(atom) = crate::model::atoms(&inv.body).find(|a| names.iter().any(|n| names_component(a, n))) {
            return Err(Refusal::new(
                atom.range,
                "this invariant reads a shared part's addresses, which the merge changes",
            ));
        }
    }
    Ok(())
}

fn same_partner(cx: &RewriteContext<'_>, ca: ComponentId, cb: ComponentId) -> Result<(), Refusal> {
    let program = cx.program;
    let (pa, pb) = (program.partnered_with(ca), program.partnered_with(cb));
    if pa == pb {
        return Ok(());
    }
    let label =
        |p: Option<ComponentId>| p.map_or("no component".to_string(), |p| format!("`{}`", program.component(p).name));
    let (a, b) = (&program.component(ca).name, &program.component(cb).name);
    Err(Refusal::new(
        program.component(cb).name_range,
        format!(
            "`{a}` pairs node by node with {} and `{b}` with {}: a shared component has one partner",
            label(pa),
            label(pb)
        ),
    ))
}

fn same_placement(cx: &RewriteContext<'_>, ca: ComponentId, cb: ComponentId) -> Result<(), Refusal> {
    let program = cx.program;
    let (a, b) = (program.component(ca), program.component(cb));
    match (&a.placement, &b.placement) {
        (None, Some(p)) | (Some(p), None) => {
            let (parted, other) = if a.placement.is_some() { (a, b) } else { (b, a) };
            Err(Refusal::new(
                p.range,
                format!(
                    "`{}` is partitioned and `{}` is not: a shared component has one placement",
                    parted.name, other.name
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The rewritten text: P where A was (A's and B's bodies, one `partitioned by` with both parts'
/// keys), B removed, every `nodes("A"|"B", _)` renamed.
fn transform(cx: &RewriteContext<'_>, ca: ComponentId, cb: ComponentId, into: &str) -> String {
    let program = cx.program;
    let text = cx.text;
    let (a, b) = (program.component(ca), program.component(cb));
    let names = [&a.name, &b.name];
    // Every `nodes("A"|"B", d)`, in the whole program, as an edit.
    let renames: Vec<(TextRange, String)> = program
        .rules
        .iter()
        .flat_map(|rule| rule.atoms())
        .filter(|atom| names.iter().any(|n| names_component(atom, n)))
        .map(|atom| (atom.args[0].range, format!("\"{into}\"")))
        .collect();
    // A part's body, between its braces, with its own renames applied (a part may send to itself).
    let body = |c: &crate::model::Component| {
        let open =
            text[c.range.start as usize..].find('{').map_or(c.range.start as usize, |i| c.range.start as usize + i + 1);
        let close = text[..c.range.end as usize].rfind('}').unwrap_or(c.range.end as usize).max(open);
        let inside: Vec<(TextRange, String)> = renames
            .iter()
            .filter(|(r, _)| r.start as usize >= open && r.end as usize <= close)
            .map(|(r, s)| (TextRange::new(r.start as usize - open, r.end as usize - open), s.clone()))
            .collect();
        let inner = splice(&text[open..close], &inside);
        format!("    // From `{}`.\n{}", c.name, inner.trim_matches('\n'))
    };
    let keys: Vec<&str> = [a, b]
        .iter()
        .filter_map(|c| c.placement.as_ref())
        .flat_map(|p| &p.keys)
        .map(|k| &text[k.range.start as usize..k.range.end as usize])
        .fold(Vec::new(), |mut acc, k| {
            if !acc.contains(&k) {
                acc.push(k);
            }
            acc
        });
    let placement = if keys.is_empty() { String::new() } else { format!(" partitioned by {}", keys.join(", ")) };
    let merged = format!(
        "// Shared by `{}` and `{}` (compart rewrite --share).\ncomponent {into}{placement} {{\n{}\n\n{}\n}}",
        a.name,
        b.name,
        body(a),
        body(b)
    );
    let mut edits =
        vec![(with_leading_comments(text, a.range), merged), (with_leading_comments(text, b.range), String::new())];
    let outside = |r: &TextRange| ![a, b].iter().any(|c| r.start >= c.range.start && r.end <= c.range.end);
    edits.extend(renames.iter().filter(|(r, _)| outside(r)).cloned());
    splice(text, &edits)
}

/// `range` widened to the start of the comment lines right above it (a component's header).
fn with_leading_comments(text: &str, range: TextRange) -> TextRange {
    let mut start = range.start as usize;
    loop {
        let line_start = text[..start].trim_end_matches([' ', '\t']).strip_suffix('\n').map(|t| t.len());
        let Some(prev_end) = line_start else { break };
        let prev_start = text[..prev_end].rfind('\n').map_or(0, |i| i + 1);
        if text[prev_start..prev_end].trim_start().starts_with("//") {
            start = prev_start;
        } else {
            break;
        }
    }
    TextRange::new(start, range.end as usize)
}
