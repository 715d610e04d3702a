//! Batching: a sequential component C that handles client requests one at a time handles one
//! batch per request instead. A new component, C's batcher, takes C's keyed request input: each
//! batcher instance numbers the requests of its tick, cuts them into batches of at most N, keeps
//! each batch's requests (`held`) and sends C one request per batch, whose key is the batch id
//! and whose other columns are placeholders. C runs unchanged on batches (Paxos: one slot per
//! batch, one p2a per batch to each acceptor, one p2b quorum per batch); where C output a reply,
//! it sends the batch's reply to the batchers, and the batcher holding the batch unbatches it: one
//! reply per request, with the request's own columns and, for a log position, the request's own
//! position in the batch's block of N (`slot * N + pos - 1`).
//!
//! Preconditions (each a function below that returns the refusal with its reason): C has one
//! input with a declared one-column int key (request ids are unique, so a batch's requests are
//! told apart) and is not partitioned already; the request's columns are carried through the
//! program unchanged, never inspected (no condition, expression, constant, join with another
//! value, negation or aggregate on a non-key column; the key only joined, counted or ranked):
//! then C treats a batch as it treats a request, and per-request outputs are a function of the
//! request and the batch's shared decisions; every output of C is derived in one tick (`:-`)
//! from the request's columns and log positions (an int column that is the one-column key of a
//! table of C holding the request, Paxos' `committed(slot, ..) key(slot)`: the original gives
//! each request its own, so unbatching gives each request of a batch its own); no other
//! component outputs a request column.
//!
//! Batches reach C the way the environment delivered its requests, which the program does not
//! say and the deployment's `[workload] send_to` does ([`Delivery`]): to every node of C (each
//! batch goes to every node, as each request did: Paxos' proposers all hear every request) or to
//! one node (each batch goes to one node, chosen by batch id: a choice the original's environment
//! could have made for each of its requests; sending it to every node would have every Mencius
//! leader propose it).
//!
//! Not an equivalence: positions are spaced by N (a batch of 3 with N = 8 fills 3 of its 8
//! positions) and requests are ordered by batch, so outputs differ from the original's in value;
//! the invariants and the answers (one reply per request) are what is kept, and what the bounded
//! check verifies (`compart verify --invariants-only`, like sealed partitioning).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::{AggregateFunc, ComponentId, ExprKind, HeadArg, RelationId, RelationKind, RuleId, RuleKind, Type};
use crate::rewrite::context::RewriteContext;
use crate::rewrite::{finish, splice, unused_name, Refusal, RewriteResult};
use crate::text::TextRange;
use crate::Analysis;

/// The default batch size of `compart rewrite --batch`.
pub const DEFAULT_BATCH_SIZE: usize = 16;
/// Positions are spaced by the batch size; beyond this a slot number grows too fast to read.
const MAX_BATCH_SIZE: usize = 4096;

/// How a column of one of C's outputs is rebuilt per request when a batch's reply is unbatched.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OutColumn {
    /// Carries the request's column `j` (the key: the batch id in C).
    Request(usize),
    /// A log position C gives each batch: the request's own is `d * N + pos - 1`.
    Position,
}

/// How the environment delivers C's requests (the deployment's `[workload] send_to`); batches
/// are delivered the same way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// Every node of C receives every request (`send_to = "all"`, the load generator's default).
    #[default]
    Every,
    /// Each request reaches one node of C (`send_to = "round-robin"`).
    One,
}

struct Batching<'n> {
    c: ComponentId,
    delivery: Delivery,
    c_name: &'n str,
    request: RelationId,
    key: usize,
    size: usize,
    outputs: Vec<(RelationId, Vec<OutColumn>)>,
}

/// The batcher a batching added (`RewriteResult::batcher`), as the deployment's `[batches]` records
/// it: `proposer_batcher = { channel = "request_batch", size = 64 }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Batcher {
    /// The new component in front of C.
    pub name: String,
    /// C's channel that receives one request per batch.
    pub channel: String,
    pub size: usize,
}

/// For each request column `j`: the (relation, column) pairs that only ever hold values of it.
type Carriers = Vec<BTreeSet<(RelationId, usize)>>;

pub fn batch(
    analysis: &Analysis,
    component_name: &str,
    size: usize,
    delivery: Delivery,
) -> Result<RewriteResult, Refusal> {
    let cx = RewriteContext::new(analysis);
    let plan = precondition(&cx, component_name, size, delivery)?;
    let n = names(&cx, &plan);
    let new_text = transform(&cx, &plan, &n);
    let mut result = finish(new_text, explain(&cx, &plan))?;
    result.batcher = Some(Batcher { name: n.batcher, channel: n.request_batch, size });
    Ok(result)
}

fn precondition<'n>(
    cx: &RewriteContext<'_>,
    c_name: &'n str,
    size: usize,
    delivery: Delivery,
) -> Result<Batching<'n>, Refusal> {
    let c = cx.component(c_name)?;
    batch_size(cx, c, size)?;
    not_partitioned(cx, c, c_name)?;
    let (request, key) = request_input(cx, c, c_name)?;
    let carriers = carriers(cx, request);
    values_opaque(cx, request, key, &carriers)?;
    let outputs = outputs_unbatchable(cx, c, c_name, request, &carriers)?;
    no_other_output_carries(cx, c, request, &carriers)?;
    Ok(Batching { c, delivery, c_name, request, key, size, outputs })
}

fn batch_size(cx: &RewriteContext<'_>, c: ComponentId, size: usize) -> Result<(), Refusal> {
    if !(2..=MAX_BATCH_SIZE).contains(&size) {
        return Err(Refusal::new(
            cx.program.component(c).name_range,
            format!("a batch holds from 2 to {MAX_BATCH_SIZE} requests, not {size}"),
        ));
    }
    Ok(())
}

/// Batch ids and positions are numbered per node; instances of a partitioned C would need them
/// per instance, and a partitioned component is not the sequential bottleneck batching is for.
fn not_partitioned(cx: &RewriteContext<'_>, c: ComponentId, c_name: &str) -> Result<(), Refusal> {
    match &cx.program.component(c).placement {
        Some(p) => Err(Refusal::new(
            p.range,
            format!("`{c_name}` is partitioned already: batch it before partitioning, or partition it instead"),
        )),
        None => Ok(()),
    }
}

/// C's one input whose key is a single int column: the requests (ids unique, so the requests of
/// a batch are told apart by it and the batch id can take its place).
fn request_input(cx: &RewriteContext<'_>, c: ComponentId, c_name: &str) -> Result<(RelationId, usize), Refusal> {
    let program = cx.program;
    let comp = program.component(c);
    let inputs: Vec<RelationId> = comp
        .relations
        .iter()
        .copied()
        .filter(|&r| program.relation(r).kind == RelationKind::Input && program.relation(r).arity() > 0)
        .collect();
    let keyed: Vec<(RelationId, usize)> = inputs
        .iter()
        .filter_map(|&r| match program.relation(r).key.as_deref() {
            Some([k]) if program.relation(r).columns[*k].ty == Type::Int => Some((r, *k)),
            _ => None,
        })
        .collect();
    match keyed.as_slice() {
        [one] => Ok(*one),
        [] => {
            let range = inputs.first().map_or(comp.name_range, |&r| program.relation(r).range);
            Err(Refusal::new(
                range,
                format!(
                    "`{c_name}` has no input with a one-column int key (`key(id)`): batching needs request ids \
                     that are unique, to tell a batch's requests apart"
                ),
            ))
        }
        [_, second, ..] => Err(Refusal::new(
            program.relation(second.0).range,
            format!(
                "`{c_name}` has several keyed inputs ({}): batching handles one kind of request",
                keyed.iter().map(|(r, _)| format!("`{}`", program.relation(*r).name)).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// Greatest fixpoint: a column carries request column `j` when every rule deriving its relation
/// puts there a variable bound at a column that carries `j` (the request itself carries its own).
/// Facts, and relations nothing derives, carry nothing.
fn carriers(cx: &RewriteContext<'_>, request: RelationId) -> Carriers {
    let program = cx.program;
    let req = program.relation(request);
    let mut out = Vec::new();
    for (j, col) in req.columns.iter().enumerate() {
        let mut set: BTreeSet<(RelationId, usize)> = program
            .relation_ids()
            .filter(|&r| r != request && !cx.is_builtin(r))
            .flat_map(|r| {
                program.relation(r).columns.iter().enumerate().filter(|(_, c)| c.ty == col.ty).map(move |(i, _)| (r, i))
            })
            .collect();
        set.insert((request, j));
        loop {
            let before = set.len();
            let snapshot = set.clone();
            set.retain(|&(r, i)| {
                if r == request {
                    return true;
                }
                let mut derivers = program.rules_deriving(r).filter(|&d| program.rule(d).kind != RuleKind::Delete);
                let mut any = false;
                let all = derivers.all(|d| {
                    any = true;
                    let rule = program.rule(d);
                    let Some(HeadArg::Expr(e)) = rule.head.args.get(i) else { return false };
                    let Some(v) = e.as_var() else { return false };
                    rule.atoms().filter(|a| !a.negated).any(|a| {
                        a.args.iter().enumerate().any(|(k, arg)| {
                            arg.as_var() == Some(v) && a.relation_id.is_some_and(|ar| snapshot.contains(&(ar, k)))
                        })
                    })
                });
                any && all
            });
            if set.len() == before {
                break;
            }
        }
        out.push(set);
    }
    out
}

fn carried(carriers: &Carriers, rel: Option<RelationId>, col: usize) -> Option<usize> {
    let rel = rel?;
    carriers.iter().position(|set| set.contains(&(rel, col)))
}

/// The request's values are carried, never inspected: a batch stands for its requests only if
/// the program cannot tell it from one request. Rules are checked, invariants are not (they
/// observe; the bounded check checks them).
fn values_opaque(cx: &RewriteContext<'_>, request: RelationId, key: usize, carriers: &Carriers) -> Result<(), Refusal> {
    let program = cx.program;
    let req = program.relation(request);
    let col_name = |j: usize| &req.columns[j].name;
    for r in program.rule_ids() {
        let rule = program.rule(r);
        // Variables bound to a request column, and where.
        let mut bound: BTreeMap<&str, usize> = BTreeMap::new();
        let mut positive_uses: BTreeMap<&str, usize> = BTreeMap::new();
        for atom in rule.atoms() {
            for (k, arg) in atom.args.iter().enumerate() {
                let Some(j) = carried(carriers, atom.relation_id, k) else { continue };
                match &arg.kind {
                    ExprKind::Var(v) => {
                        if let Some(&other) = bound.get(v.as_str()) {
                            if other != j {
                                return Err(Refusal::new(
                                    arg.range,
                                    format!(
                                        "`{v}` holds both the request's `{}` and its `{}`: a batch has one value for both",
                                        col_name(other),
                                        col_name(j)
                                    ),
                                ));
                            }
                        }
                        bound.insert(v, j);
                    }
                    ExprKind::Wildcard => {}
                    _ => {
                        return Err(Refusal::new(
                            arg.range,
                            format!(
                                "`{}` compares the request's `{}` with a value: a batch's placeholder would compare differently",
                                atom.relation,
                                col_name(j)
                            ),
                        ))
                    }
                }
            }
        }
        for atom in rule.atoms() {
            for (k, arg) in atom.args.iter().enumerate() {
                let mut vars = Vec::new();
                arg.variables(&mut vars);
                for (v, range) in vars {
                    let Some(&j) = bound.get(v) else { continue };
                    let here = carried(carriers, atom.relation_id, k);
                    if arg.as_var().is_none() {
                        return Err(inspected(range, v, col_name(j), "computes with it"));
                    }
                    if here != Some(j) {
                        return Err(inspected(
                            range,
                            v,
                            col_name(j),
                            &format!("joins it with `{}`, which holds other values", atom.relation),
                        ));
                    }
                    if j != key {
                        if atom.negated {
                            return Err(inspected(range, v, col_name(j), "tests its absence"));
                        }
                        let uses = positive_uses.entry(v).or_default();
                        *uses += 1;
                        if *uses > 1 {
                            return Err(inspected(range, v, col_name(j), "joins two requests' values on it"));
                        }
                    }
                }
            }
        }
        for item in &rule.body {
            if let crate::model::BodyItem::Condition(cond) = item {
                let mut vars = Vec::new();
                cond.left.variables(&mut vars);
                cond.right.variables(&mut vars);
                if let Some((v, range)) = vars.into_iter().find(|(v, _)| bound.contains_key(v)) {
                    return Err(inspected(range, v, col_name(bound[v]), "tests it in a condition"));
                }
            }
        }
        if let Some(dest) = &rule.head.destination {
            let mut vars = Vec::new();
            dest.variables(&mut vars);
            if let Some((v, range)) = vars.into_iter().find(|(v, _)| bound.contains_key(v)) {
                return Err(inspected(range, v, col_name(bound[v]), "sends to it"));
            }
        }
        for (i, arg) in rule.head.args.iter().enumerate() {
            match arg {
                HeadArg::Expr(e) => {
                    let mut vars = Vec::new();
                    e.variables(&mut vars);
                    for (v, range) in vars {
                        let Some(&j) = bound.get(v) else { continue };
                        if e.as_var().is_none() {
                            return Err(inspected(range, v, col_name(j), "computes with it"));
                        }
                        // A rank's own column holds the ranked key; anything else must carry it.
                        let ranked = rule.rank_columns().is_some_and(|(_, c)| c == i);
                        if !ranked && carried(carriers, rule.head.relation_id, i) != Some(j) {
                            return Err(inspected(
                                range,
                                v,
                                col_name(j),
                                &format!("puts it in `{}`, which holds other values too", rule.head.relation),
                            ));
                        }
                    }
                }
                HeadArg::Aggregate(agg) => {
                    let mut vars = Vec::new();
                    agg.arg.variables(&mut vars);
                    for (v, range) in vars {
                        let Some(&j) = bound.get(v) else { continue };
                        // Counting and ranking requests count and rank batches instead (one slot
                        // per batch); a max, min, sum or choice of ids would change meaning.
                        let counts = matches!(agg.func, AggregateFunc::Count | AggregateFunc::Rank);
                        if j != key || !counts {
                            return Err(inspected(
                                range,
                                v,
                                col_name(j),
                                &format!("aggregates it with `{}`", agg.func.name()),
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn inspected(range: TextRange, var: &str, column: &str, how: &str) -> Refusal {
    Refusal::new(
        range,
        format!(
            "`{var}` is the request's `{column}`, and this rule {how}: a batch would not behave as its requests do, \
             so per-request outputs would not be a function of the request and the batch's decisions"
        ),
    )
}

/// Every output of C is rebuilt per request from the batch's reply: each column carries a
/// request column or is a log position, and is derived in one tick so that the rule can send it.
fn outputs_unbatchable(
    cx: &RewriteContext<'_>,
    c: ComponentId,
    c_name: &str,
    request: RelationId,
    carriers: &Carriers,
) -> Result<Vec<(RelationId, Vec<OutColumn>)>, Refusal> {
    let program = cx.program;
    let positions = positions(cx, c, request, carriers);
    let mut out = Vec::new();
    let outputs: Vec<RelationId> = program
        .component(c)
        .relations
        .iter()
        .copied()
        .filter(|&r| program.relation(r).kind == RelationKind::Output)
        .collect();
    if outputs.is_empty() {
        return Err(Refusal::new(
            program.component(c).name_range,
            format!("`{c_name}` has no output: there is no reply to unbatch"),
        ));
    }
    for o in outputs {
        let rel = program.relation(o);
        let rules: Vec<RuleId> = program.rules_deriving(o).collect();
        if let Some(&r) = rules.iter().find(|&&r| program.rule(r).kind != RuleKind::SameTick) {
            return Err(Refusal::new(
                program.rule(r).range,
                format!(
                    "`{}` is output by a rule other than `:-`: its batch's reply could not be sent instead",
                    rel.name
                ),
            ));
        }
        let mut columns = Vec::new();
        for (i, col) in rel.columns.iter().enumerate() {
            if let Some(j) = carried(carriers, Some(o), i) {
                columns.push(OutColumn::Request(j));
                continue;
            }
            let is_position = col.ty == Type::Int
                && !rules.is_empty()
                && rules.iter().all(|&r| {
                    let rule = program.rule(r);
                    let Some(HeadArg::Expr(e)) = rule.head.args.get(i) else { return false };
                    let Some(v) = e.as_var() else { return false };
                    rule.atoms().filter(|a| !a.negated).any(|a| {
                        a.args.iter().enumerate().any(|(k, arg)| {
                            arg.as_var() == Some(v) && a.relation_id.is_some_and(|ar| positions.contains(&(ar, k)))
                        })
                    })
                });
            if !is_position {
                return Err(Refusal::new(
                    col.name_range,
                    format!(
                        "column `{}` of output `{}` is neither a column of the request nor a log position (the key of \
                         a table of `{c_name}` holding one request each): every request of a batch would get the \
                         batch's one value, where the original may give each its own",
                        col.name, rel.name
                    ),
                ));
            }
            columns.push(OutColumn::Position);
        }
        if !columns
            .iter()
            .any(|&k| matches!(k, OutColumn::Request(j) if program.relation(request).key.as_deref() == Some(&[j])))
        {
            return Err(Refusal::new(
                rel.name_range,
                format!(
                    "output `{}` does not carry the request's `{}`: its batch's reply cannot be told apart",
                    rel.name,
                    key_name(cx, request)
                ),
            ));
        }
        out.push((o, columns));
    }
    Ok(out)
}

fn key_name(cx: &RewriteContext<'_>, request: RelationId) -> String {
    let rel = cx.program.relation(request);
    rel.key.as_deref().and_then(|k| k.first()).map_or(String::new(), |&k| rel.columns[k].name.clone())
}

/// Log positions of C: the one-column int key of a table of C that holds the request's key in
/// another column (one request per value), and the columns of C's relations copied into it.
fn positions(
    cx: &RewriteContext<'_>,
    c: ComponentId,
    request: RelationId,
    carriers: &Carriers,
) -> BTreeSet<(RelationId, usize)> {
    let program = cx.program;
    let key = program.relation(request).key.as_deref().and_then(|k| k.first().copied());
    let mut out = BTreeSet::new();
    for &r in &program.component(c).relations {
        let rel = program.relation(r);
        let Some([k]) = rel.key.as_deref() else { continue };
        let holds_request = (0..rel.arity()).any(|i| i != *k && key.is_some() && carried(carriers, Some(r), i) == key);
        if rel.kind == RelationKind::Table && rel.columns[*k].ty == Type::Int && holds_request {
            out.insert((r, *k));
        }
    }
    // One step back: the relation a position table is derived from holds the same positions.
    let tables = out.clone();
    for &(t, k) in &tables {
        for d in program.rules_deriving(t) {
            let rule = program.rule(d);
            if rule.kind == RuleKind::Delete {
                continue;
            }
            let Some(HeadArg::Expr(e)) = rule.head.args.get(k) else { continue };
            let Some(v) = e.as_var() else { continue };
            for a in rule.atoms().filter(|a| !a.negated) {
                for (i, arg) in a.args.iter().enumerate() {
                    if let (Some(ar), Some(av)) = (a.relation_id, arg.as_var()) {
                        if av == v && program.relation(ar).component == Some(c) {
                            out.insert((ar, i));
                        }
                    }
                }
            }
        }
    }
    out
}

/// An output of another component holding request values would show batch ids and placeholders.
fn no_other_output_carries(
    cx: &RewriteContext<'_>,
    c: ComponentId,
    request: RelationId,
    carriers: &Carriers,
) -> Result<(), Refusal> {
    let program = cx.program;
    for r in program.relation_ids() {
        let rel = program.relation(r);
        if rel.kind != RelationKind::Output || rel.component == Some(c) {
            continue;
        }
        if let Some(i) = (0..rel.arity()).find(|&i| carried(carriers, Some(r), i).is_some()) {
            return Err(Refusal::new(
                rel.columns[i].name_range,
                format!(
                    "output `{}` of another component carries the request's `{}`: it would show batches, which only \
                     the batcher unbatches",
                    rel.name,
                    program.relation(request).columns[carried(carriers, Some(r), i).unwrap_or(0)].name
                ),
            ));
        }
    }
    Ok(())
}

struct Names {
    batcher: String,
    request_batch: String,
    reply_batch: Vec<String>,
    held: String,
    next: String,
    rank: String,
    count: String,
    batcher_rank: String,
    batchers: String,
    formed: String,
    /// With [`Delivery::One`]: each node of C's 1-based rank by address, and their number.
    target_rank: String,
    targets: String,
}

fn names(cx: &RewriteContext<'_>, plan: &Batching<'_>) -> Names {
    let program = cx.program;
    let mut taken: BTreeSet<String> = program.relations.iter().map(|r| r.name.clone()).collect();
    taken.extend(program.components.iter().map(|c| c.name.clone()));
    let mut fresh = |base: &str| {
        let name = unused_name(base, |n| taken.contains(n));
        taken.insert(name.clone());
        name
    };
    let req = &program.relation(plan.request).name;
    Names {
        batcher: fresh(&format!("{}_batcher", plan.c_name)),
        request_batch: fresh(&format!("{req}_batch")),
        reply_batch: plan.outputs.iter().map(|(o, _)| fresh(&format!("{}_batch", program.relation(*o).name))).collect(),
        held: fresh("batch_held"),
        next: fresh("batch_next"),
        rank: fresh("batch_rank"),
        count: fresh("batch_count"),
        batcher_rank: fresh("batcher_rank"),
        batchers: fresh("batchers"),
        formed: fresh("batch_formed"),
        target_rank: fresh("batch_target_rank"),
        targets: fresh("batch_targets"),
    }
}

fn columns_decl(cx: &RewriteContext<'_>, rel: RelationId) -> String {
    let rel = cx.program.relation(rel);
    rel.columns.iter().map(|c| format!("{}: {}", c.name, c.ty)).collect::<Vec<_>>().join(", ")
}

/// A value of type `ty` for a batch's placeholder column (never inspected: checked).
fn placeholder(ty: Type) -> &'static str {
    match ty {
        Type::Int => "0",
        Type::Bool => "false",
        Type::Addr => "self",
        _ => "\"\"",
    }
}

fn transform(cx: &RewriteContext<'_>, plan: &Batching<'_>, n: &Names) -> String {
    let program = cx.program;
    let text = cx.text;
    let comp = program.component(plan.c);
    let req = program.relation(plan.request);
    let mut edits: Vec<(TextRange, String)> = Vec::new();
    // C receives batches: the input becomes a channel from the batchers.
    // A line comment only where the declaration ends its line (a one-line component goes on).
    let decl_range = to_line_end(text, req.range);
    let ends_line = text[decl_range.end as usize..].trim_start_matches([' ', '\t']).starts_with(['\n', '\r'])
        || decl_range.end as usize == text.len();
    let comment = if ends_line { format!("  // one request per batch, from `{}`", n.batcher) } else { String::new() };
    edits.push((decl_range, format!("channel {}({}){comment}", n.request_batch, columns_decl(cx, plan.request))));
    let outputs: Vec<RelationId> = plan.outputs.iter().map(|(o, _)| *o).collect();
    let renames = |r: RuleId| -> Vec<(TextRange, String)> {
        let atoms = program.rule(r).atoms().filter(|a| a.relation_id == Some(plan.request));
        atoms.map(|a| (a.relation_range, n.request_batch.clone())).collect()
    };
    // Output rules are rebuilt whole below, with their renames.
    for &r in comp.rules.iter().filter(|&&r| !program.rule(r).head.relation_id.is_some_and(|h| outputs.contains(&h))) {
        edits.extend(renames(r));
    }
    // C's outputs become the batch's replies, sent to every batcher (the one holding the batch
    // unbatches it; the others hold nothing of it).
    for ((o, _), reply_batch) in plan.outputs.iter().zip(&n.reply_batch) {
        edits.push((to_line_end(text, program.relation(*o).range), String::new()));
        for d in program.rules_deriving(*o) {
            let rule = program.rule(d);
            let dest = unused_name("batcher", |v| rule.variables.iter().any(|x| x.name == v));
            let args: Vec<&str> =
                rule.head.args.iter().map(|a| &text[a.range().start as usize..a.range().end as usize]).collect();
            let body = match (rule.body.first(), rule.body.last()) {
                (Some(first), Some(last)) => {
                    let (start, end) = (first.range().start, last.range().end);
                    let local: Vec<(TextRange, String)> = renames(d)
                        .into_iter()
                        .map(|(range, name)| {
                            (TextRange::new((range.start - start) as usize, (range.end - start) as usize), name)
                        })
                        .collect();
                    splice(&text[start as usize..end as usize], &local)
                }
                _ => String::new(),
            };
            let sep = if body.is_empty() { "" } else { ", " };
            edits.push((
                rule.range,
                format!("{reply_batch}@{dest}({}) :~ {body}{sep}nodes(\"{}\", {dest}).", args.join(", "), n.batcher),
            ));
        }
    }
    // The batcher goes right after C.
    edits.push((TextRange::empty(comp.range.end as usize), batcher(cx, plan, n)));
    splice(text, &edits)
}

/// A declaration's range with the comment that ends its line: both go when it moves.
fn to_line_end(text: &str, range: TextRange) -> TextRange {
    let end = range.end as usize;
    let rest = &text[end..];
    let line = rest.find('\n').map_or(rest, |i| &rest[..i]);
    if line.trim_start().starts_with("//") {
        TextRange::new(range.start as usize, end + line.len())
    } else {
        range
    }
}

fn batcher(cx: &RewriteContext<'_>, plan: &Batching<'_>, n: &Names) -> String {
    let program = cx.program;
    let text = cx.text;
    let req = program.relation(plan.request);
    let size = plan.size;
    let key_col = &req.columns[plan.key].name;
    let q: Vec<String> = (0..req.arity()).map(|j| format!("q{j}")).collect();
    let q_all = q.join(", ");
    let k = &q[plan.key];
    let wild: Vec<&str> = (0..req.arity()).map(|j| if j == plan.key { k.as_str() } else { "_" }).collect::<Vec<_>>();
    let wild = wild.join(", ");
    let decl = |r: RelationId| &text[program.relation(r).range.start as usize..program.relation(r).range.end as usize];
    let mut s = String::new();
    s.push_str(&format!(
        "\n\n// Batches `{}` for `{}` (compart rewrite --batch {} --size {size}): each instance numbers its\n\
         // tick's requests, cuts them into batches of at most {size}, keeps them, and sends one request per batch.\n",
        req.name, plan.c_name, plan.c_name
    ));
    s.push_str(&format!("component {} partitioned by {}.{key_col} {{\n", n.batcher, req.name));
    s.push_str(&format!("    {}\n", decl(plan.request)));
    for ((o, _), reply_batch) in plan.outputs.iter().zip(&n.reply_batch) {
        s.push_str(&format!("    {}\n", decl(*o)));
        s.push_str(&format!("    channel {reply_batch}({})\n", columns_decl(cx, *o)));
    }
    let req_cols = columns_decl(cx, plan.request);
    s.push_str(&format!(
        "    table {}(batch: int, pos: int, {req_cols}) key(batch, pos)  // requests waiting for their batch's reply\n",
        n.held
    ));
    s.push_str(&format!("    table {}(n: int) key()  // batches this instance formed\n\n", n.next));
    s.push_str(&format!("    {}(0).\n\n", n.next));
    s.push_str("    // Batch ids are unique: numbered per instance, interleaved over instances and batchers.\n");
    s.push_str(&format!("    {}(count(a)) :- nodes(\"{}\", a), str(a) <= str(self).\n", n.batcher_rank, n.batcher));
    s.push_str(&format!("    {}(count(a)) :- nodes(\"{}\", a).\n", n.batchers, n.batcher));
    s.push_str(&format!("    {}({k}, rank({k})) :- {}({wild}).\n", n.rank, req.name));
    s.push_str(&format!("    {}(count({k})) :- {}({wild}).\n", n.count, req.name));
    s.push_str(&format!(
        "    {formed}(batch, pos, {q_all}) :-\n        {r}({q_all}),\n        {rank}({k}, i),\n        {next}(n),\n        \
         instance(x, xs),\n        {br}(b),\n        {bs}(nb),\n        pos = (i - 1) % {size} + 1,\n        \
         batch = ((n + (i - 1) / {size}) * xs + x) * nb + b - 1.\n",
        formed = n.formed,
        r = req.name,
        rank = n.rank,
        next = n.next,
        br = n.batcher_rank,
        bs = n.batchers,
    ));
    s.push_str(&format!("    {}(batch, pos, {q_all}) :- {}(batch, pos, {q_all}).\n", n.held, n.formed));
    let placeholders: Vec<String> = req
        .columns
        .iter()
        .enumerate()
        .map(|(j, c)| if j == plan.key { "batch".to_string() } else { placeholder(c.ty).to_string() })
        .collect();
    let formed_wild: Vec<&str> = std::iter::repeat_n("_", req.arity() + 1).collect();
    match plan.delivery {
        Delivery::Every => s.push_str(&format!(
            "    {}@p({}) :~ {}(batch, {}), nodes(\"{}\", p).\n",
            n.request_batch,
            placeholders.join(", "),
            n.formed,
            formed_wild.join(", "),
            plan.c_name
        )),
        Delivery::One => {
            s.push_str(&format!(
                "    // Each request reached one node of `{c}`: so does each batch, the node chosen by batch id.\n    \
                 {rank}(p, count(a)) :- nodes(\"{c}\", p), nodes(\"{c}\", a), str(a) <= str(p).\n    \
                 {targets}(count(a)) :- nodes(\"{c}\", a).\n",
                c = plan.c_name,
                rank = n.target_rank,
                targets = n.targets,
            ));
            s.push_str(&format!(
                "    {}@p({}) :~ {}(batch, {}), {}(p, r), {}(m), r = batch % m + 1.\n",
                n.request_batch,
                placeholders.join(", "),
                n.formed,
                formed_wild.join(", "),
                n.target_rank,
                n.targets,
            ));
        }
    }
    s.push_str(&format!(
        "    {next}(n + (c + {size} - 1) / {size}) :+ {next}(n), {count}(c).\n    delete {next}(n) :- {next}(n), {count}(_).\n\n",
        next = n.next,
        count = n.count
    ));
    s.push_str("    // Unbatching: each request of the batch gets its own reply.\n");
    for ((o, columns), reply_batch) in plan.outputs.iter().zip(&n.reply_batch) {
        let rel = program.relation(*o);
        let mut batch_args = Vec::new();
        let mut out_args = Vec::new();
        for (i, col) in columns.iter().enumerate() {
            match col {
                OutColumn::Request(j) if *j == plan.key => {
                    batch_args.push("batch".to_string());
                    out_args.push(q[*j].clone());
                }
                OutColumn::Request(j) => {
                    batch_args.push("_".to_string());
                    out_args.push(q[*j].clone());
                }
                OutColumn::Position => {
                    batch_args.push(format!("d{i}"));
                    out_args.push(format!("d{i} * {size} + pos - 1"));
                }
            }
        }
        s.push_str(&format!(
            "    {}({}) :- {reply_batch}({}), {}(batch, pos, {q_all}).\n",
            rel.name,
            out_args.join(", "),
            batch_args.join(", "),
            n.held
        ));
        let only_batch: Vec<&str> =
            columns.iter().map(|c| if *c == OutColumn::Request(plan.key) { "batch" } else { "_" }).collect();
        s.push_str(&format!(
            "    delete {held}(batch, pos, {q_all}) :- {held}(batch, pos, {q_all}), {reply_batch}({}).\n",
            only_batch.join(", "),
            held = n.held,
        ));
    }
    s.push_str("}\n");
    s
}

fn explain(cx: &RewriteContext<'_>, plan: &Batching<'_>) -> Vec<String> {
    let program = cx.program;
    let req = program.relation(plan.request);
    let outputs: Vec<String> = plan.outputs.iter().map(|(o, _)| format!("`{}`", program.relation(*o).name)).collect();
    vec![
        format!(
            "batching: `{}_batcher` instances (partitioned by `{}`) collect each tick's `{}` facts into batches of at most {}, and send `{}` one request per batch",
            plan.c_name, req.columns[plan.key].name, req.name, plan.size, plan.c_name
        ),
        match plan.delivery {
            Delivery::Every => format!(
                "each batch goes to every node of `{}`, as each request did (`send_to = \"all\"`, the load generator's default)",
                plan.c_name
            ),
            Delivery::One => format!(
                "each batch goes to one node of `{}`, chosen by batch id, as each request went to one node (`send_to = \"round-robin\"`): a choice the original's clients could have made",
                plan.c_name
            ),
        },
        format!(
            "`{}` never inspects a request's columns (carried unchanged, the key only joined, counted or ranked): it handles a batch as it handled a request, so its per-batch decisions (one log position per batch) are shared by the batch's requests",
            plan.c_name
        ),
        format!(
            "the reply path unbatches: {} facts go to every batcher, and the one holding the batch answers each request with its own columns and its own position (batch position * {} + its place in the batch - 1)",
            outputs.join(", "),
            plan.size
        ),
        "not an equivalence: positions are spaced by the batch size and ordered by batch; the invariants hold of batches, and every request is still answered: verify with `compart verify --invariants-only`".into(),
    ]
}
