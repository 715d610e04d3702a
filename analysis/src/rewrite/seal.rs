//! Sealed partitioning: partition a component by a key although some aggregates range over every
//! fact (Paxos' acceptor: `promised(max(b))` over the ballots of every slot, `log_entries(count(s))`
//! over every slot). Each instance keeps those aggregates over its own facts, as the acceptor
//! groups of Compartmentalized Paxos keep their own promise; a reply that every instance sends to
//! one broadcast message (p1b, to p1a) carries the instance's part, tagged with the built-in
//! `instance(index, count)`, and the receiver recombines the parts once all are in (the seal):
//! maxima by max, counts and sums by sum. Replies to a keyed message (p2b, to p2a) come from one
//! instance and carry its own maximum or minimum, a bound of the whole node's.
//!
//! This is not an equivalence like plain partitioning: an instance acts on its own aggregate,
//! which can differ from the whole node's (an acceptor instance accepts a p2a that the whole
//! acceptor, having promised a higher ballot for another slot, would reject). Whether the
//! protocol tolerates that is a property of the protocol, so the explanation says so and the
//! result must pass `compart verify` (invariants) against the original, as `compart optimize`
//! and the tests do.
//!
//! Checked (refused with the reason otherwise): the per-instance aggregates are max, min, count or
//! sum with no group-by; with their results (and what only they derive) per instance, the rest of
//! the component is partitioned by the key; every value they yield that leaves the component is
//! combinable (traced back to one aggregate kind; constants only where they cannot change the
//! combination), reaches no output, and, in a reply to a keyed message, is a max or min; a sealed
//! reply is a channel of another component sent only by such replies.

use crate::model::{
    AggregateFunc, ComponentId, ExprKind, HeadArg, Program, RelationId, RelationKind, RuleId, RuleKind,
};
use crate::rewrite::decouple::unique_names;
use crate::rewrite::{component, finish, placement_edit, routing_keys, splice, unused_name, Refusal, RewriteResult};
use crate::scaling::{display, key_label, Context, PlacedRelation, RelationPlacement};
use crate::text::TextRange;
use crate::Analysis;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Combine {
    Max,
    Min,
    Sum,
}

impl Combine {
    fn of(func: AggregateFunc) -> Option<Combine> {
        match func {
            AggregateFunc::Max => Some(Combine::Max),
            AggregateFunc::Min => Some(Combine::Min),
            AggregateFunc::Count | AggregateFunc::Sum => Some(Combine::Sum),
            // A rank is never a lone head argument (it needs its variable beside it): not here.
            AggregateFunc::Choose | AggregateFunc::Rank => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Combine::Max => "max",
            Combine::Min => "min",
            Combine::Sum => "sum",
        }
    }
}

/// A reply every instance sends to a broadcast message, recombined by its receiver.
struct Sealed {
    rule: RuleId,
    channel: RelationId,
    /// Per column: None for a column every part agrees on, else how parts combine.
    columns: Vec<Option<Combine>>,
}

/// Partition `component_name` by `key` (or the best key), keeping its aggregates over every fact
/// per instance and sealing the replies that carry them. See the module comment.
pub fn partition_sealed(
    analysis: &Analysis,
    component_name: &str,
    key: Option<&str>,
) -> Result<RewriteResult, Refusal> {
    partition_sealed_in(&Context::new(&analysis.program), analysis, component_name, key)
}

/// [`partition_sealed`] with the scaling context of `analysis.program` built by the caller:
/// building it reads the whole program, so a caller asking about every component (`compart
/// explain`) builds it once rather than once per component.
pub fn partition_sealed_in(
    ctx: &Context<'_>,
    analysis: &Analysis,
    component_name: &str,
    key: Option<&str>,
) -> Result<RewriteResult, Refusal> {
    let id = component(analysis, component_name)?;
    let program = &analysis.program;
    let comp = program.component(id);

    // 1. Aggregates over every fact, and what only they derive: held per instance.
    let mut aggregates: Vec<(RelationId, Combine)> = Vec::new();
    for &r in &comp.rules {
        let rule = program.rule(r);
        let (Some(head), [HeadArg::Aggregate(agg)]) = (rule.head.relation_id, rule.head.args.as_slice()) else {
            continue;
        };
        // Aggregates over the deployment (`n_acceptors`) are the same on every instance.
        if rule.kind != RuleKind::SameTick
            || program.relation(head).component != Some(id)
            || ctx.is_static[head.index()]
        {
            continue;
        }
        let Some(combine) = Combine::of(agg.func) else {
            return Err(Refusal::new(
                agg.range,
                format!(
                    "`{}` picks an arbitrary fact with `choose`: its parts cannot be recombined",
                    rule.head.relation
                ),
            ));
        };
        if aggregates.iter().any(|(h, _)| *h == head) {
            return Err(Refusal::new(rule.head.range, format!("`{}` has several aggregate rules", rule.head.relation)));
        }
        aggregates.push((head, combine));
    }
    if aggregates.is_empty() {
        return Err(Refusal::new(
            comp.name_range,
            format!("`{component_name}` has no aggregate over every fact (max, min, count or sum with no group-by): there is nothing to seal; partition it without `--seal`"),
        ));
    }
    let per_instance = per_instance_relations(ctx, id, &aggregates);
    let in_scope = outside_aggregates(program, id, &per_instance);
    let policies = ctx.policies_with_per_instance(id, &in_scope, &per_instance);
    let chosen = policies.iter().find(|policy| {
        key.is_none_or(|key| {
            policy.iter().any(|p| matches!(&p.placement, RelationPlacement::Key { name, .. } if name == key))
        })
    });
    let names = |rels: &[RelationId]| {
        rels.iter().map(|r| format!("`{}`", program.relation(*r).name)).collect::<Vec<_>>().join(", ")
    };
    let Some(policy) = chosen else {
        let what = key.map_or(String::new(), |k| format!(" by `{k}`"));
        let mut conflicts = key.map(|k| ctx.key_conflicts(id, &in_scope, k)).unwrap_or_default();
        if conflicts.is_empty() {
            conflicts = ctx.verdict(id, &in_scope).reasons;
        }
        let (range, why) = match conflicts.first() {
            Some(c) => (c.range, format!(": {}", c.render(program))),
            None => (comp.name_range, ": then no input or channel it reads is placed by a key".to_string()),
        };
        return Err(Refusal::new(
            range,
            format!(
                "`{component_name}` cannot be partitioned{what} even with {} held per instance{why}",
                names(&per_instance)
            ),
        ));
    };
    let placement_of = |r: RelationId| policy.iter().find(|p| p.relation == r).map(|p| &p.placement);

    // 2. Every rule that lets a per-instance value leave the component, directly or through the
    // relations that carry one (a column bound only by per-instance atoms).
    let carriers = carrying_columns(program, id, &per_instance);
    let aggregate_of = |r: RelationId| aggregates.iter().find(|(h, _)| *h == r).map(|(_, c)| *c);
    let mut sealed: Vec<Sealed> = Vec::new();
    let mut shares: Vec<RuleId> = Vec::new();
    let mut bounds: Vec<(RuleId, String)> = Vec::new();
    for &r in &comp.rules {
        let rule = program.rule(r);
        let Some(head) = rule.head.relation_id else { continue };
        let reads_local = rule.atoms().any(|a| a.relation_id.is_some_and(|x| carriers.iter().any(|(r, _)| *r == x)));
        let leaves = rule.kind == RuleKind::Async || program.relation(head).kind == RelationKind::Output;
        if !reads_local || !leaves || per_instance.contains(&head) {
            continue;
        }
        // Columns carried from per-instance relations: bound there and nowhere else.
        let mut carried: Vec<(usize, Combine)> = Vec::new();
        for (i, arg) in rule.head.args.iter().enumerate() {
            let HeadArg::Expr(expr) = arg else {
                return Err(Refusal::new(arg.range(), "an aggregate in a message head cannot be sealed"));
            };
            let mut vars = Vec::new();
            expr.variables(&mut vars);
            let local_vars: Vec<&str> =
                vars.iter().map(|v| v.0).filter(|v| bound_only_at(program, r, v, &carriers)).collect();
            if local_vars.is_empty() {
                continue;
            }
            let Some(var) = expr.as_var() else {
                return Err(Refusal::new(
                    expr.range,
                    format!(
                        "`{}` computes a message column from per-instance values: the parts could not be recombined",
                        display::rule(rule)
                    ),
                ));
            };
            let combine = trace(program, id, r, var, &carriers, &aggregate_of, &mut Vec::new())
                .map_err(|why| Refusal::new(expr.range, format!("`{}`: {why}", display::rule(rule))))?;
            carried.push((i, combine));
        }
        let sources: Vec<_> = rule
            .atoms()
            .filter(|a| !a.negated)
            .filter_map(|a| a.relation_id)
            .filter(|&x| matches!(program.relation(x).kind, RelationKind::Input | RelationKind::Channel))
            .collect();
        let keyed = sources.iter().any(|&s| matches!(placement_of(s), Some(RelationPlacement::Key { .. })));
        let reads_keyed_state = rule.atoms().filter_map(|a| a.relation_id).any(|x| {
            !matches!(program.relation(x).kind, RelationKind::Input | RelationKind::Channel)
                && matches!(placement_of(x), Some(RelationPlacement::Key { .. }))
        });
        if program.relation(head).kind == RelationKind::Output {
            return Err(Refusal::new(
                rule.head.range,
                format!(
                    "`{}` writes the output `{}` from per-instance values: clients cannot recombine its parts",
                    display::rule(rule),
                    rule.head.relation
                ),
            ));
        }
        if keyed {
            if let Some((i, c)) = carried.iter().find(|(_, c)| *c == Combine::Sum) {
                return Err(Refusal::new(
                    rule.head.args[*i].range(),
                    format!(
                        "`{}` answers one keyed message with one instance's {} — a part of the whole node's, not a bound of it",
                        display::rule(rule),
                        c.name()
                    ),
                ));
            }
            for &(i, combine) in &carried {
                let mut seen = Vec::new();
                bound_read_alone(program, head, i, combine, &mut seen).map_err(|(range, why)| {
                    Refusal::new(
                        range,
                        format!(
                            "`{}` answers a keyed message with one instance's {} in `{}`, and {why}: replies from different instances could be compared (a client could see a lower value after a higher one, as with monotonic reads or fencing tokens)",
                            display::rule(rule),
                            combine.name(),
                            program.relation(head).columns[i].name,
                        ),
                    )
                })?;
            }
            if !carried.is_empty() {
                bounds.push((
                    r,
                    carried
                        .iter()
                        .map(|(i, _)| program.relation(head).columns[*i].name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
            continue;
        }
        if carried.is_empty() && reads_keyed_state {
            shares.push(r);
            continue;
        }
        let relation = program.relation(head);
        let receiver = relation.component;
        if relation.kind != RelationKind::Channel || receiver == Some(id) || receiver.is_none() || !relation.declared {
            return Err(Refusal::new(
                rule.head.range,
                format!("`{}` answers a broadcast with per-instance values on `{}`, which is not a declared channel of another component, where the parts could be recombined", display::rule(rule), relation.name),
            ));
        }
        let mut columns = vec![None; relation.arity()];
        for (i, c) in carried {
            columns[i] = Some(c);
        }
        sealed.push(Sealed { rule: r, channel: head, columns });
    }
    for s in &sealed {
        if let Some(other) = program.rules_deriving(s.channel).find(|o| !sealed.iter().any(|x| x.rule == *o)) {
            return Err(Refusal::new(
                program.rule(other).head.range,
                format!(
                    "`{}` also sends `{}`: every sender of a sealed reply must be an instance of `{component_name}`",
                    display::rule(program.rule(other)),
                    program.relation(s.channel).name
                ),
            ));
        }
    }

    // 3. The edits: the placement, the senders, and each receiver's seal. What triggers a sealed
    // reply reaches every instance, even where one instance alone could handle it.
    let text = analysis.text();
    let mut policy = policy.clone();
    for s in &sealed {
        for atom in program.rule(s.rule).atoms().filter(|a| !a.negated) {
            if let Some(p) = policy.iter_mut().find(|p| Some(p.relation) == atom.relation_id) {
                if p.placement == RelationPlacement::Anywhere {
                    p.placement = RelationPlacement::Replicated;
                }
            }
        }
    }
    let policy = &policy;
    let keys = routing_keys(analysis, id, policy)?;
    let mut edits = vec![placement_edit(analysis, id, &keys)];
    let mut channels: Vec<RelationId> = Vec::new();
    for s in &sealed {
        if !channels.contains(&s.channel) {
            channels.push(s.channel);
        }
    }
    let mut taken: Vec<String> = Vec::new();
    let mut appended: Vec<(ComponentId, String)> = Vec::new();
    for &channel in &channels {
        let relation = program.relation(channel);
        let fresh = |base: String, taken: &mut Vec<String>| {
            let name = unused_name(&base, |n| {
                program.relation_by_name(n).is_some()
                    || program.component_by_name(n).is_some()
                    || taken.iter().any(|t| t == n)
            });
            taken.push(name.clone());
            name
        };
        let part = fresh(format!("{}_part", relation.name), &mut taken);
        let parts = fresh(format!("{}_parts", relation.name), &mut taken);
        let arrived = fresh(format!("{}_arrived", relation.name), &mut taken);
        let columns = &sealed.iter().find(|s| s.channel == channel).map(|s| s.columns.clone()).unwrap_or_default();
        let vars = unique_names(relation);
        let var = |base: &str| unused_name(base, |n| vars.iter().any(|v| v == n));
        let (index, count) = (var("part"), var("parts"));
        // Senders: `ch@d(args)` becomes `ch_part@d(args, index, count)` with `instance(index, count)`.
        for s in sealed.iter().filter(|s| s.channel == channel) {
            let rule = program.rule(s.rule);
            let mut used: Vec<(&str, TextRange)> = Vec::new();
            for a in rule.atoms() {
                a.args.iter().for_each(|e| e.variables(&mut used));
            }
            let local = |base: &str| unused_name(base, |n| used.iter().any(|(v, _)| *v == n));
            let (i, k) = (local("part"), local("parts"));
            let head_close = rule.head.range.end as usize - 1;
            let period = rule.range.end as usize - 1;
            let sep = if rule.head.args.is_empty() { "" } else { ", " };
            edits.push((rule.head.relation_range, part.clone()));
            edits.push((TextRange::empty(head_close), format!("{sep}{i}, {k}")));
            edits.push((TextRange::empty(period), format!(", instance({i}, {k})")));
        }
        // Receiver: the declaration becomes the part channel, the parts table and the sealed scratch.
        let typed = |extra: bool| {
            let mut cols: Vec<String> =
                vars.iter().zip(&relation.columns).map(|(v, c)| format!("{v}: {}", c.ty)).collect();
            if extra {
                cols.push(format!("{index}: int"));
                cols.push(format!("{count}: int"));
            }
            cols.join(", ")
        };
        let group: Vec<usize> = (0..relation.arity()).filter(|&c| columns[c].is_none()).collect();
        let key_cols: Vec<&str> = group.iter().map(|&c| vars[c].as_str()).chain([index.as_str()]).collect();
        edits.push((
            relation.range,
            format!(
                "channel {part}({})\n    table {parts}({}) key({})\n    scratch {}({})",
                typed(true),
                typed(true),
                key_cols.join(", "),
                relation.name,
                typed(false)
            ),
        ));
        let all: Vec<&str> = vars.iter().map(String::as_str).chain([index.as_str(), count.as_str()]).collect();
        let with_group = |only: Option<usize>, tail: &str| {
            let mut args: Vec<&str> = (0..relation.arity())
                .map(|c| if columns[c].is_none() || Some(c) == only { vars[c].as_str() } else { "_" })
                .collect();
            args.push(tail);
            args.join(", ")
        };
        let group_vars: Vec<&str> = group.iter().map(|&c| vars[c].as_str()).collect();
        let g = |extra: &[&str]| group_vars.iter().copied().chain(extra.iter().copied()).collect::<Vec<_>>().join(", ");
        let sender_component = &comp.name;
        let mut rules = vec![
            format!(
                "// Sealed `{}`: each instance of `{sender_component}` answers with its part; the reply counts once every instance's part is in.",
                relation.name
            ),
            format!("{parts}({}) :- {part}({}).", all.join(", "), all.join(", ")),
            format!("{arrived}({}) :- {parts}({}).", g(&[&count, &format!("count({index})")]), with_group(None, &format!("{index}, {count}"))),
        ];
        let mut body = vec![format!("{arrived}({})", g(&[&count, &count]))];
        for (c, combine) in columns.iter().enumerate() {
            let Some(combine) = combine else { continue };
            let x = vars[c].as_str();
            let name = fresh(format!("{}_{x}", relation.name), &mut taken);
            match combine {
                Combine::Max | Combine::Min => {
                    let f = combine.name();
                    rules.push(format!(
                        "{name}({}) :- {parts}({}).",
                        g(&[&format!("{f}({x})")]),
                        with_group(Some(c), "_, _")
                    ));
                    body.push(format!("{name}({})", g(&[x])));
                }
                Combine::Sum => {
                    // Sums add distinct values: `x * count + index` keeps equal parts distinct.
                    let e = var(&format!("{x}_tagged"));
                    rules.push(format!(
                        "{name}({}) :- {parts}({}), {e} = {x} * {count} + {index}.",
                        g(&[&count, &format!("sum({e})")]),
                        with_group(Some(c), &format!("{index}, {count}"))
                    ));
                    body.push(format!("{name}({})", g(&[&count, &e])));
                    body.push(format!("{x} = ({e} - {count} * ({count} - 1) / 2) / {count}"));
                }
            }
        }
        rules.push(format!("{}({}) :- {}.", relation.name, vars.join(", "), body.join(", ")));
        rules.push(format!(
            "delete {parts}({}) :- {parts}({}), {arrived}({}).",
            all.join(", "),
            all.join(", "),
            g(&[&count, &count])
        ));
        let receiver = relation.component.expect("checked above: a channel of another component");
        appended.push((receiver, rules.join("\n    ")));
    }
    for (receiver, rules) in &appended {
        let close = program.component(*receiver).range.end as usize - 1;
        edits.push((TextRange::empty(close), format!("\n    {rules}\n")));
    }
    let new_text = splice(text, &edits);

    // 4. Why, and what it changes.
    let placed: Vec<&PlacedRelation> = policy.iter().collect();
    let mut explanation = vec![format!(
        "sealed partitioning: `{component_name}` runs as N instances partitioned by {} ({}); {} are held by each instance over its own facts",
        key_label(program, policy),
        keys.join(", "),
        names(&per_instance)
    )];
    for p in placed.iter().filter(|p| matches!(p.placement, RelationPlacement::Replicated)) {
        if matches!(program.relation(p.relation).kind, RelationKind::Input | RelationKind::Channel) {
            explanation.push(format!("`{}` is broadcast to every instance", p.name));
        }
    }
    for s in &sealed {
        let relation = program.relation(s.channel);
        let combined: Vec<String> = s
            .columns
            .iter()
            .enumerate()
            .filter_map(|(c, comb)| comb.map(|comb| format!("`{}` by {}", relation.columns[c].name, comb.name())))
            .collect();
        explanation.push(format!(
            "seal: every instance answers `{}` with its part, tagged `instance(index, count)`; `{}` counts a `{}` once all parts are in, combining {}",
            display::rule(program.rule(s.rule)),
            relation.component.map_or("?", |c| program.component(c).name.as_str()),
            relation.name,
            if combined.is_empty() { "nothing".to_string() } else { combined.join(", ") }
        ));
    }
    for &r in &shares {
        explanation.push(format!(
            "share: `{}` answers a broadcast with each instance's own facts; their union is the whole node's",
            display::rule(program.rule(r))
        ));
    }
    for (r, cols) in &bounds {
        explanation.push(format!(
            "bound: `{}` answers a keyed message from one instance; its {cols} is that instance's maximum or minimum, a bound of the whole node's",
            display::rule(program.rule(*r))
        ));
    }
    explanation.push(format!(
        "not an equivalence: each instance acts on its own {}, which may differ from the whole node's (as the acceptor groups of Compartmentalized Paxos do); check the protocol's invariants with `compart verify --invariants-only`",
        names(&per_instance)
    ));
    finish(new_text, explanation)
}

/// The aggregates' heads, then every relation of the component derived only from per-instance
/// relations and fixed ones (built-in, static): each instance derives its own.
fn per_instance_relations(ctx: &Context<'_>, id: ComponentId, aggregates: &[(RelationId, Combine)]) -> Vec<RelationId> {
    let program = ctx.program;
    let mut local: Vec<RelationId> = aggregates.iter().map(|(h, _)| *h).collect();
    loop {
        let before = local.len();
        for &rel in &program.component(id).relations {
            let kind = program.relation(rel).kind;
            if local.contains(&rel) || !matches!(kind, RelationKind::Table | RelationKind::Scratch) {
                continue;
            }
            let derivers: Vec<RuleId> = program
                .rules_deriving(rel)
                .filter(|&r| matches!(program.rule(r).kind, RuleKind::SameTick | RuleKind::NextTick))
                .collect();
            let only_local = !derivers.is_empty()
                && derivers.iter().all(|&r| {
                    let rule = program.rule(r);
                    rule.atoms().all(|a| {
                        a.relation_id.is_some_and(|x| {
                            local.contains(&x)
                                || x == rel
                                || program.relation(x).kind == RelationKind::Builtin
                                || ctx.is_static[x.index()]
                        })
                    }) && rule.atoms().any(|a| a.relation_id.is_some_and(|x| local.contains(&x)))
                });
            if only_local {
                local.push(rel);
            }
        }
        if local.len() == before {
            return local;
        }
    }
}

/// The rules of the component that derive neither per-instance relations nor relations only
/// they read (an aggregate's input, `ballot_in`, is whatever facts reach the instance).
fn outside_aggregates(program: &Program, id: ComponentId, per_instance: &[RelationId]) -> Vec<RuleId> {
    let comp = program.component(id);
    let head = |r: RuleId| program.rule(r).head.relation_id;
    let mut inside: Vec<RelationId> = per_instance.to_vec();
    loop {
        let before = inside.len();
        for &rel in &comp.relations {
            let kind = program.relation(rel).kind;
            if inside.contains(&rel) || !matches!(kind, RelationKind::Table | RelationKind::Scratch) {
                continue;
            }
            let readers: Vec<RuleId> = comp
                .rules
                .iter()
                .copied()
                .filter(|&r| head(r) != Some(rel) && program.rule(r).atoms().any(|a| a.relation_id == Some(rel)))
                .collect();
            let read_by_invariant = comp
                .invariants
                .iter()
                .any(|&i| crate::model::atoms(&program.invariant(i).body).any(|a| a.relation_id == Some(rel)));
            if !readers.is_empty()
                && !read_by_invariant
                && readers.iter().all(|&r| head(r).is_some_and(|h| inside.contains(&h)))
            {
                inside.push(rel);
            }
        }
        if inside.len() == before {
            break;
        }
    }
    comp.rules.iter().copied().filter(|&r| head(r).is_none_or(|h| !inside.contains(&h))).collect()
}

/// The columns that carry per-instance values: every column of the per-instance relations, and
/// each column of the component's relations bound only at such columns (`ballot_in(b) :-
/// max_ballot(b)`).
fn carrying_columns(program: &Program, id: ComponentId, per_instance: &[RelationId]) -> Vec<(RelationId, usize)> {
    let mut carriers: Vec<(RelationId, usize)> =
        per_instance.iter().flat_map(|&r| (0..program.relation(r).arity()).map(move |c| (r, c))).collect();
    loop {
        let before = carriers.len();
        for &r in &program.component(id).rules {
            let rule = program.rule(r);
            let Some(head) = rule.head.relation_id else { continue };
            let local = program.relation(head).component == Some(id)
                && matches!(program.relation(head).kind, RelationKind::Table | RelationKind::Scratch);
            if !local || !matches!(rule.kind, RuleKind::SameTick | RuleKind::NextTick) {
                continue;
            }
            for (c, arg) in rule.head.args.iter().enumerate() {
                let mut vars = Vec::new();
                match arg {
                    HeadArg::Expr(e) => e.variables(&mut vars),
                    HeadArg::Aggregate(a) => a.arg.variables(&mut vars),
                }
                if !carriers.contains(&(head, c)) && vars.iter().any(|(v, _)| bound_only_at(program, r, v, &carriers)) {
                    carriers.push((head, c));
                }
            }
        }
        if carriers.len() == before {
            return carriers;
        }
    }
}

/// Whether one instance's bound in column `col` of `channel` is only ever read on its own, so
/// that no receiver can compare the bounds of two replies (which different instances answer):
/// every rule reading `channel` ignores the column, pins it to another column of the same fact
/// (`p2b(a, b, s, b)`: the bound equals the request's ballot), compares it only with values of
/// the same fact, passes it on unchanged on another channel (checked in turn), or, for a
/// maximum, copies it into a running maximum (`ballot_heard(m) :- p2b(_, _, _, m)`, see
/// `nack::running_maxima`), which a lower bound cannot lower. Err: where and why not.
fn bound_read_alone(
    program: &Program,
    channel: RelationId,
    col: usize,
    combine: Combine,
    seen: &mut Vec<(RelationId, usize)>,
) -> Result<(), (TextRange, String)> {
    if seen.contains(&(channel, col)) {
        return Ok(());
    }
    seen.push((channel, col));
    let name = &program.relation(channel).name;
    for q in program.rule_ids() {
        let rule = program.rule(q);
        for atom in rule.atoms().filter(|a| a.relation_id == Some(channel)) {
            let Some(arg) = atom.args.get(col) else { continue };
            if atom.negated {
                return Err((atom.range, format!("`{}` negates `{name}`", display::rule(rule))));
            }
            let Some(var) = arg.as_var() else { continue };
            let pinned = atom.args.iter().enumerate().any(|(j, a)| j != col && a.as_var() == Some(var));
            if pinned {
                continue;
            }
            let elsewhere = rule.atoms().filter(|a| !std::ptr::eq(*a, atom)).find(|a| {
                let mut vars = Vec::new();
                a.args.iter().for_each(|e| e.variables(&mut vars));
                vars.iter().any(|(v, _)| *v == var)
            });
            if let Some(other) = elsewhere {
                return Err((other.range, format!("`{}` joins it with `{}`", display::rule(rule), other.relation)));
            }
            let same_fact: Vec<&str> = atom.args.iter().filter_map(|a| a.as_var()).collect();
            for item in &rule.body {
                let crate::model::BodyItem::Condition(cond) = item else { continue };
                let mut vars = Vec::new();
                cond.left.variables(&mut vars);
                cond.right.variables(&mut vars);
                if vars.iter().any(|(v, _)| *v == var) && !vars.iter().all(|(v, _)| same_fact.contains(v)) {
                    return Err((
                        cond.range,
                        format!("`{}` compares it with other facts' values", display::rule(rule)),
                    ));
                }
            }
            let mut head_vars = Vec::new();
            if let Some(d) = &rule.head.destination {
                d.variables(&mut head_vars);
            }
            if head_vars.iter().any(|(v, _)| *v == var) {
                return Err((rule.head.range, format!("`{}` sends to it", display::rule(rule))));
            }
            for (k, head_arg) in rule.head.args.iter().enumerate() {
                let mut vars = Vec::new();
                match head_arg {
                    HeadArg::Expr(e) => e.variables(&mut vars),
                    HeadArg::Aggregate(a) => a.arg.variables(&mut vars),
                }
                if !vars.iter().any(|(v, _)| *v == var) {
                    continue;
                }
                let passed_on = matches!(head_arg, HeadArg::Expr(e) if e.as_var() == Some(var));
                let copied_into_running_max = combine == Combine::Max
                    && crate::rewrite::nack::copy_rule(rule) == Some((channel, col))
                    && rule
                        .head
                        .relation_id
                        .is_some_and(|h| crate::rewrite::nack::running_maxima(program, rule.component, &[h]).is_some());
                match (rule.kind, rule.head.relation_id) {
                    (RuleKind::Async, Some(next)) if passed_on => bound_read_alone(program, next, k, combine, seen)?,
                    _ if copied_into_running_max => {}
                    _ => {
                        return Err((
                            head_arg.range(),
                            format!("`{}` keeps it in `{}`", display::rule(rule), rule.head.relation),
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether `var` of rule `r` is bound only at carrying columns of positive atoms.
fn bound_only_at(program: &Program, r: RuleId, var: &str, carriers: &[(RelationId, usize)]) -> bool {
    let mut local = false;
    for atom in program.rule(r).atoms().filter(|a| !a.negated) {
        for (c, arg) in atom.args.iter().enumerate() {
            if arg.as_var() != Some(var) {
                continue;
            }
            if atom.relation_id.is_some_and(|x| carriers.contains(&(x, c))) {
                local = true;
            } else {
                return false;
            }
        }
    }
    local
}

/// How the parts of `var` (bound by per-instance atoms of rule `r`) combine: follow the column
/// back through the rules that derive it to the aggregate it comes from.
fn trace(
    program: &Program,
    id: ComponentId,
    r: RuleId,
    var: &str,
    carriers: &[(RelationId, usize)],
    aggregate_of: &dyn Fn(RelationId) -> Option<Combine>,
    visiting: &mut Vec<(RelationId, usize)>,
) -> Result<Combine, String> {
    let rule = program.rule(r);
    let mut found: Option<Combine> = None;
    for atom in rule.atoms().filter(|a| !a.negated) {
        let Some(rel) = atom.relation_id else { continue };
        for (c, arg) in atom.args.iter().enumerate() {
            if arg.as_var() != Some(var) || !carriers.contains(&(rel, c)) {
                continue;
            }
            if let Some(c2) = column(program, id, rel, c, carriers, aggregate_of, visiting)? {
                if found.is_some_and(|f| f != c2) {
                    return Err(format!("`{var}` combines aggregates of different kinds"));
                }
                found = Some(c2);
            }
        }
    }
    found.ok_or_else(|| format!("`{var}` comes from no aggregate of every fact"))
}

fn column(
    program: &Program,
    id: ComponentId,
    rel: RelationId,
    c: usize,
    carriers: &[(RelationId, usize)],
    aggregate_of: &dyn Fn(RelationId) -> Option<Combine>,
    visiting: &mut Vec<(RelationId, usize)>,
) -> Result<Option<Combine>, String> {
    if let Some(combine) = aggregate_of(rel) {
        return Ok(Some(combine));
    }
    if visiting.contains(&(rel, c)) {
        return Ok(None);
    }
    visiting.push((rel, c));
    let name = &program.relation(rel).name;
    let mut found: Option<Combine> = None;
    let mut constants: Vec<i64> = Vec::new();
    for d in program.rules_deriving(rel) {
        let rule = program.rule(d);
        if rule.component != id || matches!(rule.kind, RuleKind::Delete | RuleKind::Async) {
            continue;
        }
        let Some(HeadArg::Expr(expr)) = rule.head.args.get(c) else {
            return Err(format!("`{name}` is computed in a way whose parts could not be recombined"));
        };
        let combine = match &expr.kind {
            ExprKind::Int(v) => {
                constants.push(*v);
                continue;
            }
            ExprKind::Var(v) => match trace(program, id, d, v, carriers, aggregate_of, visiting) {
                Ok(c) => Some(c),
                Err(_) if visiting.len() > 1 => None,
                Err(e) => return Err(e),
            },
            _ => return Err(format!("`{}` computes `{name}` from per-instance values", display::rule(rule))),
        };
        if let Some(c2) = combine {
            if found.is_some_and(|f| f != c2) {
                return Err(format!("`{name}` mixes aggregates of different kinds"));
            }
            found = Some(c2);
        }
    }
    visiting.pop();
    if found == Some(Combine::Sum) && constants.iter().any(|&v| v != 0) {
        return Err(format!(
            "`{name}` may be a constant other than 0, which a sum of every instance's part would count once per instance"
        ));
    }
    Ok(found)
}
