//! Thrifty broadcast: a rule of component S that sends a message `m` to every node of component
//! C, whose answers S only counts against a majority, sends `m` to a quorum of C (⌊n/2⌋+1 of
//! its n nodes, rotating with the message so that the load spreads over C) instead; a message
//! that no quorum answered by the next `m_widen()` (a zero-column input, a timer from the
//! environment like Paxos' `timeout()`) is then sent to the other nodes of C, once.
//!
//! Why it is sound: every run of the rewritten program is a run of the original in which the
//! messages to the nodes outside the quorum are delayed until the widening (or forever, in a
//! finite prefix), which the language allows (messages arrive after an unbounded delay,
//! docs/language.md section 12); each message still reaches each node of C at most once. So
//! every invariant of the original holds. What the delay may cost is answers (liveness), which
//! is what the preconditions are about (docs/compartmentalization.md, "Thrifty broadcast"),
//! each a function below that returns the refusal naming the rule or atom in the way:
//!   - the rule sends `m` to every node of C: its destination is bound by `nodes("C", a)` and
//!     used nowhere else, and `m` carries `self`, the address C answers to;
//!   - what `m` changes in C is seen by S only: C outputs nothing from it, and sends what it
//!     derives from it only to S (so a node outside the quorum that lags is seen by S alone);
//!   - C answers the sender (a reply rule whose destination is `m`'s `self` column, and which
//!     puts its own `self` in the answer), and S counts the distinct senders of those answers,
//!     grouped by columns that the answer copies from `m` (so S can tell which message a quorum
//!     answered, and the rewrite widens only those that no quorum answered);
//!   - every rule of S that reads a count of the senders of a message C sends S from what `m`
//!     changes (an answer or not) compares it only with the number of C's nodes,
//!     in conditions that a quorum passes (`2 * c > n`), never joins it with that number (which
//!     needs every answer: 2PC's `yes_count(txn, n), n_participants(n)`), never negates it and
//!     never uses its value otherwise;
//!   - S is not partitioned (the messages waiting for a quorum and their count would have to
//!     live on the same instance).
//!
//! The bounded check (`compart verify`) compares outputs as well: without crashes every quorum
//! member answers, so the answers the original gives are given.
//!
//! Over a grid (`rewrite::grid` applied first, its row rules in S): a phase-2 quorum is one whole
//! row, so `m` goes to one row (`row(a, r), rows(k), r == hash(key) % k`, the non-empty rows
//! being 0..k), the other rows on the widening, and `m` is answered once a row's count reaches
//! the row's size. The same delay argument gives safety; the grid's intersection gives the rest.
//! Preconditions added (`row_send`, `row_count_use`): every count of the answers is per row
//! (a row column from `row(a, r)` of the counted node) and only joined with the row's size;
//! phase 1 (rows counted, a node of every row) is refused, its broadcast left whole.

use std::cell::Cell;
use std::collections::BTreeSet;

use crate::model::{
    AggregateFunc, BinaryOp, BodyItem, CompareOp, ComponentId, Expr, ExprKind, Function, HeadArg, RelationId,
    RelationKind, Rule, RuleId, RuleKind, NODES_RELATION,
};
use crate::rewrite::context::RewriteContext;
use crate::rewrite::{finish, select_rules, splice, unused_name, Refusal, RewriteResult};
use crate::text::TextRange;
use crate::Analysis;

/// Node counts a quorum threshold is checked for (a condition is evaluated, not solved).
const CHECKED_NODE_COUNTS: std::ops::RangeInclusive<i64> = 1..=9;
/// Origin tracing walks copies rule by rule; a budget keeps it linear on adversarial programs.
const TRACE_BUDGET: usize = 10_000;

/// A thrifty broadcast whose preconditions hold.
struct Thrifty {
    s: ComponentId,
    rule: RuleId,
    /// The `nodes("C", a)` atom that makes the rule a broadcast, and `a`.
    nodes_atom: TextRange,
    c_name: String,
    channel: RelationId,
    /// The relation of S that counts the answers' senders, and its count column.
    count: RelationId,
    count_col: usize,
    /// Each group column of `count` with the column of `m` it holds.
    group: Vec<(usize, usize)>,
    reply: RelationId,
    /// Over a grid of C: the send goes to one row instead of a majority.
    grid: Option<RowSend>,
}

/// A thrifty broadcast over a grid (`rewrite::grid` first): S counts the answers per row of C and
/// waits for a whole row (phase 2), so `m` goes to one row, chosen by the message's key.
struct RowSend {
    /// S's relation placing C's nodes in rows (`acceptor_row(a, r)`).
    row: RelationId,
    /// S's relation of each row's size (`acceptor_row_size(r, count(a))`).
    row_size: RelationId,
    /// The row column of the count (`accept_count(s, b, r, count(a))`).
    count_row_col: usize,
    /// S's relation counting the (non-empty) rows, when the grid added one there.
    rows: Option<RelationId>,
}

/// Rewrite the broadcast of `component_name` that `selector` picks (a rule number or head name),
/// or its only broadcast that can be thrifty.
pub fn thrifty(analysis: &Analysis, component_name: &str, selector: Option<&str>) -> Result<RewriteResult, Refusal> {
    let cx = RewriteContext::new(analysis);
    let s = cx.component(component_name)?;
    let program = cx.program;
    let plan = match selector {
        Some(selector) => {
            let rules = select_rules(analysis, component_name, &[selector])?;
            let sends: Vec<RuleId> =
                rules.iter().copied().filter(|&r| program.rule(r).kind == RuleKind::Async).collect();
            match sends.as_slice() {
                [one] => precondition(&cx, *one)?,
                [] => precondition(&cx, rules[0])?,
                [_, ..] => {
                    return Err(Refusal::new(
                        program.component(s).name_range,
                        format!(
                            "`{selector}` selects {} sending rules of `{component_name}`: name one by its number",
                            sends.len()
                        ),
                    ))
                }
            }
        }
        None => {
            let candidates = broadcasts(analysis, s);
            let Some(&first) = candidates.first() else {
                return Err(Refusal::new(
                    program.component(s).name_range,
                    format!("`{component_name}` sends no message to every node of a component (`m@a(..) :~ .., nodes(\"C\", a)`)"),
                ));
            };
            let mut passing: Vec<Thrifty> = candidates.iter().filter_map(|&r| precondition(&cx, r).ok()).collect();
            match passing.len() {
                0 => precondition(&cx, first)?,
                1 => passing.remove(0),
                _ => {
                    let list: Vec<String> = passing
                        .iter()
                        .map(|p| {
                            format!("rule {} (`{}`)", program.rule_number(p.rule), program.rule(p.rule).head.relation)
                        })
                        .collect();
                    return Err(Refusal::new(
                        program.component(s).name_range,
                        format!(
                            "`{component_name}` has several broadcasts that can be thrifty: {}; choose one (--rule)",
                            list.join(", ")
                        ),
                    ));
                }
            }
        }
    };
    let new_text = transform(&cx, &plan);
    finish(new_text, explain(&cx, &plan))
}

/// Rewrite one broadcast rule (the editor's code action, the optimizer's step).
pub fn thrifty_rule(analysis: &Analysis, rule: RuleId) -> Result<RewriteResult, Refusal> {
    let cx = RewriteContext::new(analysis);
    let plan = precondition(&cx, rule)?;
    let new_text = transform(&cx, &plan);
    finish(new_text, explain(&cx, &plan))
}

/// The rules of `s` that send to every node of a component: the candidates, whether or not
/// their preconditions hold.
pub fn broadcasts(analysis: &Analysis, s: ComponentId) -> Vec<RuleId> {
    let program = &analysis.program;
    program
        .component(s)
        .rules
        .iter()
        .copied()
        .filter(|&r| {
            let rule = program.rule(r);
            rule.kind == RuleKind::Async && matches!(rule.addressee(), Some((_, None)))
        })
        .collect()
}

/// For a send the rewrite produced: how many nodes of `of` nodes get each message, a quorum
/// (`n / 2 + 1`) for the quorum send, the rest for the widening; over a grid of R rows, a row
/// (`of / R`, rounded up) and the rest. None for any other rule. The optimizer's cost model reads
/// it (messages: a quorum or a row instead of every node).
pub fn quorum_destinations(program: &crate::model::Program, rule: &Rule, of: usize) -> Option<usize> {
    if rule.kind != RuleKind::Async {
        return None;
    }
    if let Some(row) = row_destinations(program, rule, of) {
        return Some(row);
    }
    let quorum = of / 2 + 1;
    rule.body.iter().find_map(|item| {
        let BodyItem::Condition(cond) = item else { return None };
        let ExprKind::Binary(BinaryOp::Add, half, one) = &cond.right.kind else { return None };
        let ExprKind::Binary(BinaryOp::Div, n, two) = &half.kind else { return None };
        let n = n.as_var()?;
        if !matches!(one.kind, ExprKind::Int(1)) || !matches!(two.kind, ExprKind::Int(2)) {
            return None;
        }
        // `n` counts the nodes the message goes to (`thrifty_C_n(n)`).
        let counts_nodes = rule.atoms().any(|a| {
            a.args.first().and_then(Expr::as_var) == Some(n)
                && a.args.len() == 1
                && a.relation_id.is_some_and(|r| {
                    program.rules_deriving(r).all(|d| {
                        let d = program.rule(d);
                        matches!(d.head.args.as_slice(), [HeadArg::Aggregate(agg)] if agg.func == AggregateFunc::Count)
                            && d.atoms().all(|b| b.relation == NODES_RELATION)
                    })
                })
        });
        match cond.op {
            CompareOp::Lt if counts_nodes => Some(quorum.min(of)),
            CompareOp::Ge if counts_nodes => Some(of.saturating_sub(quorum)),
            _ => None,
        }
    })
}

/// [`quorum_destinations`] of a send to one row (`row(a, r), rows(k), r == hash(..) % k`) or to
/// the other rows (`!=`): `of` nodes in R rows fill min(R, of) of them.
fn row_destinations(program: &crate::model::Program, rule: &Rule, of: usize) -> Option<usize> {
    rule.body.iter().find_map(|item| {
        let BodyItem::Condition(cond) = item else { return None };
        let ExprKind::Binary(BinaryOp::Rem, key, k) = &cond.right.kind else { return None };
        let (r, k) = (cond.left.as_var()?, k.as_var()?);
        if !matches!(key.kind, ExprKind::Call(Function::Hash, _)) {
            return None;
        }
        // `r` is a node's row in the grid, `k` the number of rows.
        let rows = rule.atoms().filter(|a| !a.negated).find_map(|a| {
            let [_, ar] = a.args.as_slice() else { return None };
            if ar.as_var() != Some(r) {
                return None;
            }
            program.rules_deriving(a.relation_id?).find_map(|d| super::grid::row_rule(program, program.rule(d)))
        })?;
        rule.atoms().find(|a| a.args.len() == 1 && a.args[0].as_var() == Some(k))?;
        let row = of.div_ceil(rows.1.min(of).max(1));
        match cond.op {
            CompareOp::Eq => Some(row.min(of)),
            CompareOp::Ne => Some(of.saturating_sub(row)),
            _ => None,
        }
    })
}

fn precondition(cx: &RewriteContext<'_>, rule_id: RuleId) -> Result<Thrifty, Refusal> {
    let program = cx.program;
    let rule = program.rule(rule_id);
    let s = rule.component;
    let s_name = &program.component(s).name;
    let (c, channel, nodes_atom) = broadcast_shape(cx, rule_id)?;
    let c_name = program.component(c).name.clone();
    not_partitioned(cx, s)?;
    let sender_cols: Vec<usize> = rule
        .head
        .args
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(a, HeadArg::Expr(e) if matches!(e.kind, ExprKind::SelfAddr)))
        .map(|(i, _)| i)
        .collect();
    if sender_cols.is_empty() {
        return Err(Refusal::new(
            rule.head.range,
            format!(
                "`{}` does not carry its sender's address (`self`): the nodes of `{c_name}` cannot answer `{s_name}`, \
                 whose count of answers tells when a quorum is enough",
                rule.head.relation
            ),
        ));
    }
    let (replies, answers) = seen_by_sender_only(cx, s, c, channel, &sender_cols)?;
    if replies.is_empty() {
        return Err(Refusal::new(
            rule.range,
            format!(
                "`{c_name}` never answers `{}` to its sender: there is no quorum of answers to wait for, and every node \
                 of `{c_name}` may need the message",
                rule.head.relation
            ),
        ));
    }
    let counted = counted_senders(cx, s, &replies);
    // Over a grid phase 1 counts rows, not the answers' senders.
    let row = grid_row(cx, s, &c_name);
    if let (None, Some(row)) = (&counted, row) {
        return Err(phase1_over_grid(cx, rule_id, row, &c_name));
    }
    let (count, count_col, reply) = counted.ok_or_else(|| {
        let names: BTreeSet<&str> = replies.iter().map(|(_, h, _)| program.relation(*h).name.as_str()).collect();
        Refusal::new(
            rule.range,
            format!(
                "nothing in `{s_name}` counts the senders of the answers ({}): thrifty broadcast needs a receiver that \
                 waits for a quorum of them",
                names.into_iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let grid = match row {
        Some(row) => Some(row_send(cx, rule_id, row, count, &c_name)?),
        None => None,
    };
    for &(x, col) in &all_counts(cx, s, &answers) {
        thresholds(cx, s, &c_name, x, col, grid.as_ref())?;
    }
    let group = group_columns(cx, channel, count, count_col, &replies, grid.as_ref().map(|g| g.count_row_col))?;
    Ok(Thrifty { s, rule: rule_id, nodes_atom, c_name, channel, count, count_col, group, reply, grid })
}

/// The rule sends `m` to every node of C: `nodes("C", a)` binds the destination, which nothing
/// else uses; something else in the body says when (else it would send in every tick).
fn broadcast_shape(cx: &RewriteContext<'_>, rule_id: RuleId) -> Result<(ComponentId, RelationId, TextRange), Refusal> {
    let program = cx.program;
    let rule = program.rule(rule_id);
    let what = format!("rule {} of `{}`", program.rule_number(rule_id), program.component(rule.component).name);
    if rule.kind != RuleKind::Async {
        return Err(Refusal::new(
            rule.range,
            format!(
                "{what} (`{}`) sends nothing: thrifty broadcast rewrites a `:~` rule that sends to every node of a component",
                rule.head.relation
            ),
        ));
    }
    let not_broadcast = || {
        Refusal::new(
            rule.head.range,
            format!(
                "{what} does not send `{}` to every node of a component (`{}@a(..) :~ .., nodes(\"C\", a)`)",
                rule.head.relation, rule.head.relation
            ),
        )
    };
    let (c_name, partner) = rule.addressee().ok_or_else(not_broadcast)?;
    if let Some(p) = partner {
        return Err(Refusal::new(
            p.range,
            format!("{what} sends `{}` to one partner node, not to every node of `{c_name}`", rule.head.relation),
        ));
    }
    let dest = rule.head.destination.as_ref().and_then(Expr::as_var).ok_or_else(not_broadcast)?;
    let c = program.component_by_name(c_name).ok_or_else(not_broadcast)?;
    let channel = rule.head.relation_id.ok_or_else(not_broadcast)?;
    // A program with errors may reach here from the editor; the new rules copy every column.
    if rule.head.args.len() != program.relation(channel).arity() {
        return Err(Refusal::new(
            rule.head.range,
            format!(
                "{what} sends {} values, and `{}` has {} columns: fix the error first",
                rule.head.args.len(),
                rule.head.relation,
                program.relation(channel).arity()
            ),
        ));
    }
    let is_nodes = |a: &crate::model::Atom| {
        a.relation == NODES_RELATION
            && !a.negated
            && a.args.get(1).and_then(Expr::as_var) == Some(dest)
            && matches!(a.args.first().map(|e| &e.kind), Some(ExprKind::Str(n)) if n == c_name)
    };
    let nodes_atom = rule.atoms().find(|a| is_nodes(a)).ok_or_else(not_broadcast)?;
    // Any other use of the destination makes the message depend on which node it goes to.
    let mut uses: Vec<(&str, TextRange)> = Vec::new();
    for item in &rule.body {
        match item {
            BodyItem::Atom(a) if std::ptr::eq(a, nodes_atom) => {}
            BodyItem::Atom(a) => a.args.iter().for_each(|e| e.variables(&mut uses)),
            BodyItem::Condition(cond) => {
                cond.left.variables(&mut uses);
                cond.right.variables(&mut uses);
            }
        }
    }
    for arg in &rule.head.args {
        if let HeadArg::Expr(e) = arg {
            e.variables(&mut uses);
        }
    }
    if let Some((_, range)) = uses.iter().find(|(v, _)| *v == dest) {
        return Err(Refusal::new(
            *range,
            format!(
                "{what} uses its destination `{dest}` here: what it sends depends on the node of `{c_name}`, so it is \
                 not one message broadcast"
            ),
        ));
    }
    if rule.atoms().all(|a| std::ptr::eq(a, nodes_atom) || cx.is_builtin(a.relation_id.unwrap_or(channel))) {
        return Err(Refusal::new(
            rule.range,
            format!("{what} reads nothing but the deployment: it sends in every tick, and no answer ends a broadcast"),
        ));
    }
    Ok((c, channel, nodes_atom.range))
}

fn not_partitioned(cx: &RewriteContext<'_>, s: ComponentId) -> Result<(), Refusal> {
    match &cx.program.component(s).placement {
        Some(p) => Err(Refusal::new(
            p.range,
            format!(
                "`{}` is partitioned: the messages waiting for a quorum and the count of their answers could live on \
                 different instances; make the broadcast thrifty before partitioning",
                cx.program.component(s).name
            ),
        )),
        None => Ok(()),
    }
}

/// Every relation of C that depends on `m` (in this tick or later), `m` included.
fn closure(cx: &RewriteContext<'_>, c: ComponentId, m: RelationId) -> BTreeSet<RelationId> {
    let program = cx.program;
    let mut set = BTreeSet::from([m]);
    loop {
        let before = set.len();
        for &r in &program.component(c).rules {
            let rule = program.rule(r);
            if rule.atoms().any(|a| a.relation_id.is_some_and(|id| set.contains(&id))) {
                if let Some(h) = cx.local_head(c, rule) {
                    set.insert(h);
                }
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// An answer to the sender: a rule of C, its channel (of S), and the column holding C's `self`.
type Reply = (RuleId, RelationId, usize);

/// What `m` changes in C reaches S only, as messages; returns the answers to `m`'s sender, and
/// every message of C to S that depends on `m` and carries C's `self` (the answers included).
fn seen_by_sender_only(
    cx: &RewriteContext<'_>,
    s: ComponentId,
    c: ComponentId,
    m: RelationId,
    sender_cols: &[usize],
) -> Result<(Vec<Reply>, Vec<Reply>), Refusal> {
    let program = cx.program;
    let depends = closure(cx, c, m);
    let c_name = &program.component(c).name;
    let m_name = &program.relation(m).name;
    let (mut replies, mut answers) = (Vec::new(), Vec::new());
    for &r in &program.component(c).rules {
        let rule = program.rule(r);
        if !rule.atoms().any(|a| a.relation_id.is_some_and(|id| depends.contains(&id))) {
            continue;
        }
        let Some(h) = rule.head.relation_id else { continue };
        let head = program.relation(h);
        if head.kind == RelationKind::Output && rule.kind != RuleKind::Async {
            return Err(Refusal::new(
                rule.range,
                format!(
                    "`{c_name}` outputs `{}` from what `{m_name}` changes: a node of `{c_name}` outside the quorum would \
                     not output it until the widening",
                    head.name
                ),
            ));
        }
        if rule.kind != RuleKind::Async {
            continue;
        }
        if head.component != Some(s) {
            return Err(Refusal::new(
                rule.head.range,
                format!(
                    "`{c_name}` sends `{}` to `{}` from what `{m_name}` changes: only the sender `{}` may depend on it, as \
                     only the sender knows what no quorum answered",
                    head.name,
                    head.component.map_or("?", |o| program.component(o).name.as_str()),
                    program.component(s).name
                ),
            ));
        }
        let budget = Cell::new(TRACE_BUDGET);
        let to_sender = rule
            .head
            .destination
            .as_ref()
            .and_then(Expr::as_var)
            .and_then(|d| var_origin(cx, rule, d, &budget))
            .is_some_and(|(rel, col)| rel == m && sender_cols.contains(&col));
        let own =
            rule.head.args.iter().position(|a| matches!(a, HeadArg::Expr(e) if matches!(e.kind, ExprKind::SelfAddr)));
        if let Some(j) = own {
            // Whatever S counts of these, to the sender or not, must not need every node.
            answers.push((r, h, j));
            if to_sender {
                replies.push((r, h, j));
            }
        }
    }
    Ok((replies, answers))
}

/// Where the values of column `col` of `rel` are copied from: an input or channel column, when
/// every rule deriving `rel` copies one unchanged (through tables and scratch relations).
fn origin(cx: &RewriteContext<'_>, rel: RelationId, col: usize, budget: &Cell<usize>) -> Option<(RelationId, usize)> {
    let left = budget.get().checked_sub(1)?;
    budget.set(left);
    let program = cx.program;
    if matches!(program.relation(rel).kind, RelationKind::Channel | RelationKind::Input) {
        return Some((rel, col));
    }
    let mut found = None;
    for d in program.rules_deriving(rel) {
        let rule = program.rule(d);
        match rule.kind {
            RuleKind::Delete => continue,
            RuleKind::SameTick | RuleKind::NextTick => {}
            _ => return None,
        }
        let Some(HeadArg::Expr(e)) = rule.head.args.get(col) else { return None };
        let o = var_origin(cx, rule, e.as_var()?, budget)?;
        if found.is_some_and(|f| f != o) {
            return None;
        }
        found = Some(o);
    }
    found
}

/// The origin of a variable: the first positive atom that binds it and has one.
fn var_origin(cx: &RewriteContext<'_>, rule: &Rule, var: &str, budget: &Cell<usize>) -> Option<(RelationId, usize)> {
    rule.atoms().filter(|a| !a.negated).find_map(|a| {
        let rel = a.relation_id?;
        a.args.iter().enumerate().filter(|(_, e)| e.as_var() == Some(var)).find_map(|(i, _)| origin(cx, rel, i, budget))
    })
}

/// Every `count` aggregate of S over the senders of an answer: (relation, count column).
fn all_counts(cx: &RewriteContext<'_>, s: ComponentId, replies: &[Reply]) -> Vec<(RelationId, usize)> {
    counts_with_reply(cx, s, replies).into_iter().map(|(x, col, _)| (x, col)).collect()
}

fn counts_with_reply(
    cx: &RewriteContext<'_>,
    s: ComponentId,
    replies: &[Reply],
) -> Vec<(RelationId, usize, RelationId)> {
    let program = cx.program;
    let mut out = Vec::new();
    for &r in &program.component(s).rules {
        let rule = program.rule(r);
        let Some(x) = cx.local_head(s, rule) else { continue };
        for (i, arg) in rule.head.args.iter().enumerate() {
            let HeadArg::Aggregate(agg) = arg else { continue };
            let Some(v) = agg.arg.as_var() else { continue };
            if agg.func != AggregateFunc::Count {
                continue;
            }
            let budget = Cell::new(TRACE_BUDGET);
            let Some(o) = var_origin(cx, rule, v, &budget) else { continue };
            if let Some(&(_, h, _)) = replies.iter().find(|&&(_, h, j)| (h, j) == o) {
                if !out.iter().any(|&(y, c, _)| (y, c) == (x, i)) {
                    out.push((x, i, h));
                }
            }
        }
    }
    out
}

/// The first count of the answers' senders: the one the rewrite waits on.
fn counted_senders(
    cx: &RewriteContext<'_>,
    s: ComponentId,
    replies: &[Reply],
) -> Option<(RelationId, usize, RelationId)> {
    counts_with_reply(cx, s, replies).into_iter().next()
}

/// `N(count(a)) :- nodes("C", a).`: the number of C's nodes.
fn is_node_count(cx: &RewriteContext<'_>, rel: RelationId, c_name: &str) -> bool {
    let program = cx.program;
    let derivers: Vec<RuleId> = program.rules_deriving(rel).collect();
    let [d] = derivers.as_slice() else { return false };
    let rule = program.rule(*d);
    let [HeadArg::Aggregate(agg)] = rule.head.args.as_slice() else { return false };
    let atoms: Vec<_> = rule.atoms().collect();
    agg.func == AggregateFunc::Count
        && rule.body.len() == 1
        && atoms.len() == 1
        && atoms[0].relation == NODES_RELATION
        && matches!(atoms[0].args.first().map(|e| &e.kind), Some(ExprKind::Str(n)) if n == c_name)
        && atoms[0].args.get(1).and_then(Expr::as_var).is_some_and(|v| agg.arg.as_var() == Some(v))
}

/// Every rule of S reading the count `x` compares it with the number of C's nodes only, in
/// conditions a quorum passes.
fn thresholds(
    cx: &RewriteContext<'_>,
    s: ComponentId,
    c_name: &str,
    x: RelationId,
    col: usize,
    grid: Option<&RowSend>,
) -> Result<(), Refusal> {
    let program = cx.program;
    let x_name = &program.relation(x).name;
    // Over a grid every count of the answers is per row: the send reaches one row only.
    let row_col = match grid {
        Some(g) => match row_column(cx, x, g.row) {
            Some(k) => Some(k),
            None => {
                return Err(Refusal::new(
                    program.relation(x).range,
                    format!(
                    "`{x_name}` counts answers from `{c_name}` but not per row of its grid (`{}`): sent to one row, \
                         `{}` would wait for answers that only a majority, or every node, sends",
                    program.relation(g.row).name,
                    program.relation(x).name
                ),
                ))
            }
        },
        None => None,
    };
    for &r in cx.readers(x) {
        let rule = program.rule(r);
        if rule.component != s {
            continue;
        }
        let what =
            format!("rule {} of `{}` (`{}`)", program.rule_number(r), program.component(s).name, rule.head.relation);
        for atom in rule.atoms().filter(|a| a.relation_id == Some(x)) {
            if atom.negated {
                return Err(Refusal::new(
                    atom.range,
                    format!("{what} tests that `{x_name}` is absent: it waits on answers that a quorum may never send"),
                ));
            }
            let Some(arg) = atom.args.get(col) else { continue };
            let count_var = match &arg.kind {
                ExprKind::Wildcard => continue,
                ExprKind::Var(v) => v.as_str(),
                _ => {
                    return Err(Refusal::new(
                        arg.range,
                        format!(
                            "{what} waits for an exact number of answers in `{x_name}`, which a quorum may not reach"
                        ),
                    ))
                }
            };
            match (grid, row_col) {
                (Some(g), Some(k)) => {
                    let row_var = atom.args.get(k).and_then(Expr::as_var);
                    row_count_use(cx, rule, atom, (count_var, row_var), g, &what, x_name)?
                }
                _ => check_count_use(cx, rule, atom, count_var, c_name, &what, x_name)?,
            }
        }
    }
    Ok(())
}

fn check_count_use(
    cx: &RewriteContext<'_>,
    rule: &Rule,
    count_atom: &crate::model::Atom,
    count_var: &str,
    c_name: &str,
    what: &str,
    x_name: &str,
) -> Result<(), Refusal> {
    // Variables holding the number of C's nodes.
    let mut node_counts: BTreeSet<&str> = BTreeSet::new();
    for atom in rule.atoms().filter(|a| !a.negated && !std::ptr::eq(*a, count_atom)) {
        let Some(rel) = atom.relation_id else { continue };
        if is_node_count(cx, rel, c_name) {
            if let Some(v) = atom.args.first().and_then(Expr::as_var) {
                node_counts.insert(v);
            }
        }
    }
    let joined = rule
        .atoms()
        .filter(|a| !std::ptr::eq(*a, count_atom))
        .find(|a| a.args.iter().any(|e| e.as_var() == Some(count_var)));
    if let Some(atom) = joined {
        let why = match atom.relation_id {
            Some(rel) if is_node_count(cx, rel, c_name) => format!(
                "compares the count of answers `{count_var}` of `{x_name}` with every node of `{c_name}` \
                 (`{}`): it needs an answer from every node, which a quorum never sends",
                crate::scaling::display::atom(atom)
            ),
            _ => format!(
                "joins the count of answers `{count_var}` of `{x_name}` with `{}`: thrifty broadcast needs it \
                 compared with a majority of `{c_name}`'s nodes",
                atom.relation
            ),
        };
        return Err(Refusal::new(atom.range, format!("{what} {why}")));
    }
    let mut uses = Vec::new();
    for arg in &rule.head.args {
        match arg {
            HeadArg::Expr(e) => e.variables(&mut uses),
            HeadArg::Aggregate(a) => a.arg.variables(&mut uses),
        }
    }
    if let Some(d) = &rule.head.destination {
        d.variables(&mut uses);
    }
    if let Some((_, range)) = uses.iter().find(|(v, _)| *v == count_var) {
        return Err(Refusal::new(
            *range,
            format!(
                "{what} uses the count of answers `{count_var}` of `{x_name}` as a value: with a quorum it is smaller"
            ),
        ));
    }
    for item in &rule.body {
        let BodyItem::Condition(cond) = item else { continue };
        let mut vars = Vec::new();
        cond.left.variables(&mut vars);
        cond.right.variables(&mut vars);
        if !vars.iter().any(|(v, _)| *v == count_var) {
            continue;
        }
        if let Some((v, range)) = vars.iter().find(|(v, _)| *v != count_var && !node_counts.contains(v)) {
            return Err(Refusal::new(
                *range,
                format!(
                    "{what} compares the count of answers `{count_var}` of `{x_name}` with `{v}`, which is not the \
                     number of `{c_name}`'s nodes: thrifty broadcast needs a threshold that a quorum passes"
                ),
            ));
        }
        for n in CHECKED_NODE_COUNTS {
            let quorum = n / 2 + 1;
            let value = |v: &str| Some(if v == count_var { quorum } else { n });
            let passes = match (eval(&cond.left, &value), eval(&cond.right, &value)) {
                (Some(l), Some(r)) => Some(cond.op.holds(l.cmp(&r))),
                _ => None,
            };
            match passes {
                Some(true) => {}
                Some(false) => {
                    return Err(Refusal::new(
                        cond.range,
                        format!(
                            "{what} needs more answers than a quorum sends: with {n} node{} of `{c_name}`, a quorum \
                             ({quorum}) does not pass `{}`",
                            if n == 1 { "" } else { "s" },
                            crate::scaling::display::expr(&cond.left)
                                + " "
                                + cond.op.token()
                                + " "
                                + &crate::scaling::display::expr(&cond.right)
                        ),
                    ))
                }
                None => {
                    return Err(Refusal::new(
                        cond.range,
                        format!(
                            "{what} compares the count of answers `{count_var}` in a way compart cannot evaluate: \
                             thrifty broadcast needs integer arithmetic on the count and the number of nodes"
                        ),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Integer arithmetic of a threshold condition (None where the language gives nothing: division
/// by zero, overflow) or for what is not integer arithmetic.
fn eval(e: &Expr, value: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
    match &e.kind {
        ExprKind::Int(i) => Some(*i),
        ExprKind::Var(v) => value(v),
        ExprKind::Neg(x) => eval(x, value)?.checked_neg(),
        ExprKind::Binary(op, l, r) => {
            let (l, r) = (eval(l, value)?, eval(r, value)?);
            match op {
                BinaryOp::Add => l.checked_add(r),
                BinaryOp::Sub => l.checked_sub(r),
                BinaryOp::Mul => l.checked_mul(r),
                BinaryOp::Div => l.checked_div(r),
                BinaryOp::Rem => l.checked_rem(r),
                _ => None,
            }
        }
        ExprKind::Call(f, args) => {
            let args: Option<Vec<i64>> = args.iter().map(|a| eval(a, value)).collect();
            match (f, args?.as_slice()) {
                (Function::Min, [a, b]) => Some(*a.min(b)),
                (Function::Max, [a, b]) => Some(*a.max(b)),
                (Function::Abs, [a]) => a.checked_abs(),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Each group column of the count, with the column of `m` that the answer copies into it: so
/// that the sender can tell which of its messages a quorum answered.
fn group_columns(
    cx: &RewriteContext<'_>,
    m: RelationId,
    count: RelationId,
    count_col: usize,
    replies: &[Reply],
    row_col: Option<usize>,
) -> Result<Vec<(usize, usize)>, Refusal> {
    let program = cx.program;
    let count_rule = program
        .rules_deriving(count)
        .map(|r| program.rule(r))
        .find(|r| matches!(r.head.args.get(count_col), Some(HeadArg::Aggregate(_))));
    let Some(rule) = count_rule else {
        return Err(Refusal::new(program.relation(count).range, "internal error: the count has no rule".to_string()));
    };
    let mut out = Vec::new();
    for (i, arg) in rule.head.args.iter().enumerate() {
        let HeadArg::Expr(e) = arg else { continue };
        // The answering node's row (over a grid) is not the message's: it does not identify it.
        if Some(i) == row_col {
            continue;
        }
        let budget = Cell::new(TRACE_BUDGET);
        let from_m = e.as_var().and_then(|v| var_origin(cx, rule, v, &budget)).and_then(|(h, k)| {
            replies.iter().filter(|&&(_, reply, _)| reply == h).find_map(|&(rr, _, _)| {
                let reply_rule = program.rule(rr);
                let Some(HeadArg::Expr(a)) = reply_rule.head.args.get(k) else { return None };
                match var_origin(cx, reply_rule, a.as_var()?, &budget) {
                    Some((rel, l)) if rel == m => Some(l),
                    _ => None,
                }
            })
        });
        match from_m {
            Some(l) => out.push((i, l)),
            None => {
                return Err(Refusal::new(
                    e.range,
                    format!(
                        "`{}` groups its count by `{}`, which the answer does not copy from `{}`: the sender could not \
                         tell which of its messages a quorum answered",
                        rule.head.relation,
                        crate::scaling::display::expr(e),
                        program.relation(m).name
                    ),
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(Refusal::new(
            rule.head.range,
            format!(
                "`{}` counts every answer together: the sender could not tell which of its messages a quorum answered",
                rule.head.relation
            ),
        ));
    }
    Ok(out)
}

/// S's relation placing C's nodes in the rows of a grid (`rewrite::grid` adds it where the
/// quorums are tested): the program is gridded over C there.
fn grid_row(cx: &RewriteContext<'_>, s: ComponentId, c_name: &str) -> Option<RelationId> {
    let program = cx.program;
    program.component(s).rules.iter().find_map(|&r| {
        let rule = program.rule(r);
        let (c, _) = super::grid::row_rule(program, rule)?;
        (c == c_name).then_some(rule.head.relation_id?)
    })
}

/// The head column of `x`'s count rule holding the row of the counted node (`accept_count(s, b,
/// r, count(a)) :- .., acceptor_row(a, r)`), when it counts per row.
fn row_column(cx: &RewriteContext<'_>, x: RelationId, row: RelationId) -> Option<usize> {
    let program = cx.program;
    let rule = program.rules_deriving(x).map(|d| program.rule(d)).find(|r| r.kind != RuleKind::Delete)?;
    let counted = rule.head.args.iter().find_map(|h| match h {
        HeadArg::Aggregate(g) if g.func == AggregateFunc::Count => g.arg.as_var(),
        _ => None,
    })?;
    let row_var = rule.atoms().find_map(|a| match a.args.as_slice() {
        [n, r] if a.relation_id == Some(row) && !a.negated && n.as_var() == Some(counted) => r.as_var(),
        _ => None,
    })?;
    rule.head.args.iter().position(|h| matches!(h, HeadArg::Expr(e) if e.as_var() == Some(row_var)))
}

/// `rel`'s only rule when it counts over `row` alone (`... count(v) ... :- row(x, y).`): its head
/// arguments, the counted variable and the row atom's two arguments.
fn count_over_row<'p>(
    cx: &RewriteContext<'p>,
    rel: RelationId,
    row: RelationId,
) -> Option<(&'p [HeadArg], Option<&'p str>, [&'p Expr; 2])> {
    let program = cx.program;
    let derivers: Vec<RuleId> = program.rules_deriving(rel).collect();
    let [d] = derivers.as_slice() else { return None };
    let rule = program.rule(*d);
    let [BodyItem::Atom(atom)] = rule.body.as_slice() else { return None };
    let [x, y] = atom.args.as_slice() else { return None };
    let counted = rule.head.args.iter().find_map(|h| match h {
        HeadArg::Aggregate(g) if g.func == AggregateFunc::Count => Some(g.arg.as_var()),
        _ => None,
    })?;
    (atom.relation_id == Some(row) && !atom.negated).then_some((rule.head.args.as_slice(), counted, [x, y]))
}

/// `size(r, count(a)) :- row(a, r).`: the number of nodes in each row.
fn is_row_size(cx: &RewriteContext<'_>, rel: RelationId, row: RelationId) -> bool {
    let Some((head, counted, [a, ar])) = count_over_row(cx, rel, row) else { return false };
    let [HeadArg::Expr(r), HeadArg::Aggregate(_)] = head else { return false };
    a.as_var().is_some() && a.as_var() == counted && ar.as_var().is_some() && ar.as_var() == r.as_var()
}

/// `rows(count(r)) :- row(_, r).`: the number of non-empty rows.
fn is_row_count(cx: &RewriteContext<'_>, rel: RelationId, row: RelationId) -> bool {
    let Some((head, counted, [_, r])) = count_over_row(cx, rel, row) else { return false };
    matches!(head, [HeadArg::Aggregate(_)]) && r.as_var().is_some() && r.as_var() == counted
}

/// Over a grid of C, the broadcast's answers must be counted per row and tested against a whole
/// row (phase 2): the send to one row passes exactly that test.
fn row_send(
    cx: &RewriteContext<'_>,
    rule_id: RuleId,
    row: RelationId,
    count: RelationId,
    c_name: &str,
) -> Result<RowSend, Refusal> {
    let program = cx.program;
    let Some(count_row_col) = row_column(cx, count, row) else {
        return Err(phase1_over_grid(cx, rule_id, row, c_name));
    };
    let s = program.rule(rule_id).component;
    // The row sizes the count is joined with (checked with each reader in `row_count_use`).
    let sizes = cx.readers(count).iter().flat_map(|&r| program.rule(r).atoms()).filter_map(|a| a.relation_id);
    let row_size = sizes.into_iter().find(|&r| is_row_size(cx, r, row)).ok_or_else(|| {
        Refusal::new(
            program.relation(count).range,
            format!(
                "`{}` counts answers per row of `{c_name}`'s grid, but nothing compares it with a row's size: the \
                 send to one row needs the answers of a whole row to be enough (phase 2 of a grid)",
                program.relation(count).name
            ),
        )
    })?;
    let rows = program.component(s).relations.iter().copied().find(|&r| is_row_count(cx, r, row));
    Ok(RowSend { row, row_size, count_row_col, rows })
}

/// Phase 1 over a grid waits for a node of every row (it counts rows, not the answers' senders):
/// no one row holds that, so its broadcast stays whole (it is rare, once per leader change).
fn phase1_over_grid(cx: &RewriteContext<'_>, rule_id: RuleId, row: RelationId, c_name: &str) -> Refusal {
    let program = cx.program;
    let rule = program.rule(rule_id);
    Refusal::new(
        rule.range,
        format!(
            "rule {} (`{}`) broadcasts to `{c_name}`, whose nodes are in a grid (`{}`), and its answers are not \
             counted per row against a row's size: only phase 2's broadcast goes to one row; phase 1 waits for a \
             node of every row, which no one row holds, so its broadcast stays whole",
            program.rule_number(rule_id),
            rule.head.relation,
            program.relation(row).name
        ),
    )
}

/// Over a grid, a count of the answers is only joined with its row's size (`accept_count(s, b,
/// r, c), acceptor_row_size(r, c)`): the answers of the whole row the message went to pass it.
fn row_count_use(
    cx: &RewriteContext<'_>,
    rule: &Rule,
    count_atom: &crate::model::Atom,
    (count_var, row_var): (&str, Option<&str>),
    g: &RowSend,
    what: &str,
    x_name: &str,
) -> Result<(), Refusal> {
    let program = cx.program;
    let size = &program.relation(g.row_size).name;
    let uses_count = |e: &Expr| {
        let mut vars = Vec::new();
        e.variables(&mut vars);
        vars.iter().any(|(v, _)| *v == count_var)
    };
    let mut row_sized = false;
    for item in &rule.body {
        match item {
            BodyItem::Atom(a) if std::ptr::eq(a, count_atom) => {}
            BodyItem::Atom(a) if a.args.iter().any(uses_count) => {
                let joins_size = a.relation_id == Some(g.row_size)
                    && !a.negated
                    && row_var.is_some()
                    && matches!(a.args.as_slice(), [r, c] if r.as_var() == row_var && c.as_var() == Some(count_var));
                if !joins_size {
                    return Err(Refusal::new(
                        a.range,
                        format!(
                            "{what} joins the count of answers `{count_var}` of `{x_name}` with `{}`: over a grid, a \
                             message sent to one row is answered by that row, so the count must be compared with its \
                             row's size only (`{size}(r, {count_var})`)",
                            a.relation
                        ),
                    ));
                }
                row_sized = true;
            }
            BodyItem::Atom(_) => {}
            BodyItem::Condition(cond) if uses_count(&cond.left) || uses_count(&cond.right) => {
                return Err(Refusal::new(
                    cond.range,
                    format!(
                        "{what} compares the count of answers `{count_var}` of `{x_name}` by a condition: over a grid, \
                         a message sent to one row passes only a comparison with its row's size (`{size}`)"
                    ),
                ))
            }
            BodyItem::Condition(_) => {}
        }
    }
    let in_head = rule.head.args.iter().any(|h| match h {
        HeadArg::Expr(e) => uses_count(e),
        HeadArg::Aggregate(a) => uses_count(&a.arg),
    }) || rule.head.destination.as_ref().is_some_and(uses_count);
    if in_head || !row_sized {
        return Err(Refusal::new(
            count_atom.range,
            format!(
                "{what} reads the count of answers `{count_var}` of `{x_name}` other than against its row's size \
                 (`{size}`): over a grid, a message sent to one row is answered by that row only"
            ),
        ));
    }
    Ok(())
}

struct Names {
    widen: String,
    unanswered: String,
    rank: String,
    size: String,
    /// Over a grid whose rows S does not count yet: the relation counting them.
    rows: String,
    /// Variables of the new rules: one per column of `m`, then the destination, a node's rank,
    /// the number of nodes and the count.
    cols: Vec<String>,
    dest: String,
    r: String,
    n: String,
    c: String,
}

fn names(cx: &RewriteContext<'_>, plan: &Thrifty) -> Names {
    let program = cx.program;
    let mut taken: BTreeSet<String> = program.relations.iter().map(|r| r.name.clone()).collect();
    taken.extend(program.components.iter().map(|c| c.name.clone()));
    let mut fresh = |base: String| {
        let name = unused_name(&base, |n| taken.contains(n));
        taken.insert(name.clone());
        name
    };
    let m = &program.relation(plan.channel).name;
    let widen = fresh(format!("{m}_widen"));
    let unanswered = fresh(format!("{m}_unanswered"));
    let rank = fresh(format!("thrifty_{}_rank", plan.c_name));
    let size = fresh(format!("thrifty_{}_n", plan.c_name));
    let rows = fresh(format!("thrifty_{}_rows", plan.c_name));
    let mut vars: BTreeSet<String> = BTreeSet::new();
    let mut var = |base: &str| {
        let name = unused_name(base, |n| vars.contains(n));
        vars.insert(name.clone());
        name
    };
    let cols = program.relation(plan.channel).columns.iter().map(|c| var(&c.name)).collect();
    Names { widen, unanswered, rank, size, rows, cols, dest: var("a"), r: var("r"), n: var("n"), c: var("c") }
}

fn slice(text: &str, range: TextRange) -> &str {
    &text[range.start as usize..range.end as usize]
}

/// `(rank - 1 + n - hash(key) % n) % n`: a node's place in the rotation that starts at the
/// message's key, so that consecutive messages pick different quorums.
fn place(r: &str, n: &str, key: &[String]) -> String {
    format!("({r} - 1 + {n} - hash({}) % {n}) % {n}", key.join(", "))
}

fn transform(cx: &RewriteContext<'_>, plan: &Thrifty) -> String {
    let program = cx.program;
    let text = cx.text;
    let rule = program.rule(plan.rule);
    let m = program.relation(plan.channel);
    let comp = program.component(plan.s);
    let nm = names(cx, plan);
    let c_name = &plan.c_name;
    let mut edits: Vec<(TextRange, String)> = Vec::new();

    // The broadcast keeps its body; the quorum replaces "every node".
    let taken = |v: &str| rule.variables.iter().any(|x| x.name == v);
    let (r, n) = (unused_name("r", taken), unused_name("n", |v| taken(v) || v == unused_name("r", taken)));
    let dest = rule.head.destination.as_ref().and_then(Expr::as_var).unwrap_or("a");
    let key_of = |args: &dyn Fn(usize) -> String| -> Vec<String> { plan.group.iter().map(|&(_, l)| args(l)).collect() };
    let head_arg = |l: usize| slice(text, rule.head.args[l].range()).to_string();
    let key = key_of(&head_arg);
    // Over a grid, the row of the message's key; else a majority rotating with it.
    let grid = plan.grid.as_ref().map(|g| {
        let rows = g.rows.map_or_else(|| nm.rows.clone(), |rel| program.relation(rel).name.clone());
        (g, program.relation(g.row).name.clone(), program.relation(g.row_size).name.clone(), rows)
    });
    let quorum = match &grid {
        Some((_, row, _, rows)) => format!("{row}({dest}, {r}), {rows}({n}), {r} == hash({}) % {n}", key.join(", ")),
        None => format!("{}({dest}, {r}), {}({n}), {} < {n} / 2 + 1", nm.rank, nm.size, place(&r, &n, &key)),
    };
    edits.push((plan.nodes_atom, quorum));

    // Declarations after the component's last declaration (or at its start).
    let decls = format!(
        "\n    input {}()  // from the environment (a timer): `{}` that no quorum answered yet goes to the other nodes of `{c_name}`\n    \
         table {}({})  // `{}` sent to a quorum of `{c_name}` only, until a quorum answers or `{}()`\n",
        nm.widen,
        m.name,
        nm.unanswered,
        m.columns.iter().map(|c| format!("{}: {}", c.name, c.ty)).collect::<Vec<_>>().join(", "),
        m.name,
        nm.widen,
    );
    let last_decl = comp
        .relations
        .iter()
        .map(|&id| program.relation(id))
        .filter(|rel| {
            rel.declared && rel.range.end > 0 && comp.range.start <= rel.range.start && rel.range.end <= comp.range.end
        })
        .map(|rel| line_end(text, rel.range.end as usize))
        .max();
    let at = last_decl.unwrap_or_else(|| {
        let start = comp.range.start as usize;
        text[start..].find('{').map_or(comp.range.end as usize, |i| start + i + 1)
    });
    edits.push((TextRange::empty(at), decls));

    // The new rules, right after the broadcast.
    let body: Vec<&str> =
        rule.body.iter().filter(|item| item.range() != plan.nodes_atom).map(|item| slice(text, item.range())).collect();
    let head_args: Vec<String> = (0..m.arity()).map(head_arg).collect();
    let cols = nm.cols.join(", ");
    let col_key = key_of(&|l| nm.cols[l].clone());
    let count = program.relation(plan.count);
    let row_col = plan.grid.as_ref().map(|g| g.count_row_col);
    let count_args: Vec<String> = (0..count.arity())
        .map(|i| {
            if i == plan.count_col {
                nm.c.clone()
            } else if Some(i) == row_col {
                nm.r.clone()
            } else if let Some(&(_, l)) = plan.group.iter().find(|&&(g, _)| g == i) {
                nm.cols[l].clone()
            } else {
                "_".to_string()
            }
        })
        .collect();
    let (a, rv, nv) = (&nm.dest, &nm.r, &nm.n);
    let mut s = String::new();
    let keys = key.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    let (to, quorum) = match &grid {
        Some(_) => (format!("one row of `{c_name}`'s grid\n    // (rotating with {keys})"), "row"),
        None => (
            format!("a quorum of `{c_name}`\n    // (n / 2 + 1 of its n nodes, by rank, rotating with {keys})"),
            "quorum",
        ),
    };
    s.push_str(&format!(
        "\n\n    // Thrifty broadcast (compart rewrite --thrifty {s} --rule {num}): `{mname}` goes to {to}; what no {quorum} answered by\n    \
         // `{widen}()` goes to the other nodes then, once.\n",
        s = comp.name,
        num = program.rule_number(plan.rule),
        mname = m.name,
        widen = nm.widen,
    ));
    // Self-contained rules: their variables cannot clash.
    match &grid {
        Some((g, row, _, rows)) if g.rows.is_none() => {
            s.push_str(&format!("    {rows}(count(r)) :- {row}(_, r).\n"));
        }
        Some(_) => {}
        None => {
            s.push_str(&format!(
                "    {}(a, count(x)) :- nodes(\"{c_name}\", a), nodes(\"{c_name}\", x), str(x) <= str(a).\n",
                nm.rank
            ));
            s.push_str(&format!("    {}(count(a)) :- nodes(\"{c_name}\", a).\n", nm.size));
        }
    }
    s.push_str(&format!("    {}({}) :- {}.\n", nm.unanswered, head_args.join(", "), body.join(", ")));
    // Answered: a quorum (over a grid, a whole row) sent its answers.
    let answered = match &grid {
        Some((_, _, size, _)) => format!("{size}({rv}, {c})", c = nm.c),
        None => format!("{}({nv}),\n        {c} >= {nv} / 2 + 1", nm.size, c = nm.c),
    };
    s.push_str(&format!(
        "    delete {u}({cols}) :-\n        {u}({cols}),\n        {cnt}({cargs}),\n        {answered}.\n",
        u = nm.unanswered,
        cnt = count.name,
        cargs = count_args.join(", "),
    ));
    let others = match &grid {
        Some((_, row, _, rows)) => {
            format!("{row}({a}, {rv}),\n        {rows}({nv}),\n        {rv} != hash({}) % {nv}", col_key.join(", "))
        }
        None => format!(
            "{rank}({a}, {rv}),\n        {size}({nv}),\n        {place} >= {nv} / 2 + 1",
            rank = nm.rank,
            size = nm.size,
            place = place(rv, nv, &col_key)
        ),
    };
    s.push_str(&format!(
        "    {mname}@{a}({cols}) :~\n        {w}(),\n        {u}({cols}),\n        {others}.\n",
        mname = m.name,
        w = nm.widen,
        u = nm.unanswered,
    ));
    s.push_str(&format!("    delete {u}({cols}) :- {u}({cols}), {w}().", u = nm.unanswered, w = nm.widen));
    edits.push((TextRange::empty(rule.range.end as usize), s));
    splice(text, &edits)
}

/// The end of the line `at` is on, after a trailing comment (a declaration's comment stays).
fn line_end(text: &str, at: usize) -> usize {
    let rest = &text[at..];
    at + rest.find(['\n', '\r']).unwrap_or(rest.len())
}

fn explain(cx: &RewriteContext<'_>, plan: &Thrifty) -> Vec<String> {
    let program = cx.program;
    let m = &program.relation(plan.channel).name;
    let s = &program.component(plan.s).name;
    let count = &program.relation(plan.count).name;
    let reply = &program.relation(plan.reply).name;
    let c = &plan.c_name;
    let widen = names(cx, plan).widen;
    let (quorum, enough) = match &plan.grid {
        Some(g) => (
            format!("one row of `{c}`'s grid (`{}`, the row chosen by the message's key, rotating)", program.relation(g.row).name),
            format!(
                "`{s}` only counts the senders of `{reply}` per row (`{count}`) against a row's size (`{}`): a phase-2 quorum of the grid is one whole row, so that row's answers are enough; phase 1 (a node of every row) is not made thrifty",
                program.relation(g.row_size).name
            ),
        ),
        None => (
            format!("a quorum of `{c}` (n / 2 + 1 of its n nodes, rotating with the message)"),
            format!("`{s}` only counts the senders of `{reply}` (`{count}`) against a majority of `{c}`'s nodes, so a quorum's answers are enough"),
        ),
    };
    vec![
        format!(
            "thrifty broadcast: `{s}` sends `{m}` to {quorum} instead of to every node; what no quorum answered by `{widen}()` goes to the other nodes then, once"
        ),
        enough,
        format!(
            "every run is a run of the original in which `{m}` to the nodes outside the quorum is delayed until the widening: the invariants hold, and without crashes every answer still comes; after a crash of a quorum member the answers wait for `{widen}()`, a timer of the environment"
        ),
        format!(
            "`compart run` and `compart node` inject `{widen}()` when the deployment file says how often: `[timers]` with `{widen} = 0.2` (seconds)"
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(text: &str) -> Expr {
        let analysis = crate::analyze(&format!("component c {{ channel m(c: int)\n x(y) :- m(c), y = {text}.\n}}\n"));
        let rule = analysis.program.rule(RuleId(0));
        match &rule.body[1] {
            BodyItem::Condition(cond) => cond.right.clone(),
            _ => panic!("not a condition"),
        }
    }

    #[test]
    fn thresholds_evaluate_with_the_language_arithmetic() {
        let value = |v: &str| Some(if v == "c" { 2 } else { 3 });
        assert_eq!(eval(&expr("2 * c - 3 / 2 + min(c, 9) % 5"), &value), Some(5));
        assert_eq!(eval(&expr("c / 0"), &value), None, "division by zero gives nothing");
        assert_eq!(eval(&expr("str(c)"), &value), None);
    }
}
