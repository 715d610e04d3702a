//! Grid quorums (flexible quorums, as in Flexible Paxos and Compartmentalized Paxos): where a
//! protocol's two quorums are count thresholds over the nodes of one component A (Paxos: phase 1
//! counts promises, phase 2 counts acceptances, both `2 * c > n` against `n(count(a)) :-
//! nodes("acceptor", a)`), A's nodes are arranged in R rows and the thresholds replaced: a
//! phase-2 quorum is one whole row, a phase-1 quorum holds a node of every row. Every set that
//! meets every row meets every whole row, so every phase-1 quorum intersects every phase-2 quorum,
//! which is all Paxos' safety asks of its quorums; two phase-2 quorums need not intersect.
//!
//! A node's place: its 1-based position among A's addresses as text (as `proposer_rank`), row
//! `(position - 1) % R`, computed by rules the rewrite adds from `nodes` alone (no new built-in).
//! Only R is in the program; the columns are what the deployment gives (`[grids] acceptor = {
//! rows = 2, columns = 3 }`, checked by the runtime against `[components]` and against R as
//! [`grid_rows_of`] reads it off the program). Rows are counted
//! from the nodes there are, so the argument above holds for any number of nodes (a node count
//! that is not R × C only makes rows uneven), and the minimal deployments the bounded check uses
//! still commit.
//!
//! Preconditions (each a function below that returns the refusal with its reason): some rule
//! counts A's nodes (`n(count(a)) :- nodes("A", a)`); rules compare a count with that number
//! by a threshold (`<`, `<=`, `>`, `>=`; a count joined with it or compared by `==` needs every
//! node, and there is no quorum to make flexible), over exactly two count relations (one kind of
//! quorum must intersect itself, which rows do not); each count relation is derived by one rule
//! whose one aggregate is `count(x)` of an address, is undeclared and is read by those
//! thresholds only (the rewrite changes its columns); and one of the two is phase 1: the
//! conclusion of its threshold flows (through positive body atoms, messages included) into
//! what the other counts, and not the other way round.
//!
//! Not an equivalence: a quorum commits with other, fewer nodes than the majority did, so outputs
//! may differ in timing and value; the invariants (Paxos' agreement) are what is kept, and what
//! the bounded check verifies (`compart verify --invariants-only`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::model::{
    AggregateFunc, BinaryOp, BodyItem, CompareOp, ComponentId, ExprKind, HeadArg, Program, RelationId, RelationKind,
    Rule, RuleId, RuleKind, Type, NODES_RELATION,
};
use crate::rewrite::context::RewriteContext;
use crate::rewrite::{finish, quorum_destinations, splice, unused_name, Refusal, RewriteResult};
use crate::scaling::display;
use crate::text::TextRange;
use crate::Analysis;

/// Rows of a grid when none are given (the editor's action): the smallest grid that is not one
/// row; the deployment's node count decides the columns.
pub const DEFAULT_GRID_ROWS: usize = 2;
/// More rows than this would be a phase-1 quorum larger than any deployment compart runs.
const MAX_GRID_ROWS: usize = 1000;

/// One threshold test: `test` compares `count_rel`'s count column with the node count.
struct Threshold {
    test: RuleId,
    count_rel: RelationId,
    /// The count column of `count_rel` (where its `count(x)` is in the head).
    column: usize,
    /// In `test`: the atom reading the count, the variable holding it, the atom reading the node
    /// count (removed when nothing else uses its variable), and the comparison.
    count_atom: usize,
    count_var: String,
    total_atom: TextRange,
    total_var_elsewhere: bool,
    condition: TextRange,
}

struct Quorum {
    count_rule: RuleId,
    /// The counted address variable of `count_rule`, and the range of `count(x)`'s argument.
    counted: String,
    counted_range: TextRange,
    tests: Vec<Threshold>,
}

struct Grid<'n> {
    a_name: &'n str,
    rows: usize,
    /// Relations counting A's nodes (`n_acceptors`).
    totals: Vec<RelationId>,
    phase1: Quorum,
    phase2: Quorum,
}

pub fn grid(analysis: &Analysis, component_name: &str, rows: usize) -> Result<RewriteResult, Refusal> {
    let cx = RewriteContext::new(analysis);
    let plan = precondition(&cx, component_name, rows)?;
    let new_text = transform(&cx, &plan);
    finish(new_text, explain(&cx, &plan))
}

fn precondition<'n>(cx: &RewriteContext<'_>, a_name: &'n str, rows: usize) -> Result<Grid<'n>, Refusal> {
    let a = cx.component(a_name)?;
    grid_rows(cx, a, rows)?;
    let totals = node_counts(cx, a, a_name)?;
    not_thrifty(cx, &totals, a_name)?;
    let thresholds = thresholds(cx, &totals, a_name)?;
    let (first, second) = two_quorums(cx, thresholds, a_name)?;
    let first = quorum(cx, first)?;
    let second = quorum(cx, second)?;
    let (phase1, phase2) = phases(cx, first, second, a_name)?;
    Ok(Grid { a_name, rows, totals, phase1, phase2 })
}

fn grid_rows(cx: &RewriteContext<'_>, a: ComponentId, rows: usize) -> Result<(), Refusal> {
    if !(1..=MAX_GRID_ROWS).contains(&rows) {
        return Err(Refusal::new(
            cx.program.component(a).name_range,
            format!("a grid has from 1 to {MAX_GRID_ROWS} rows, not {rows}"),
        ));
    }
    Ok(())
}

/// A thrifty broadcast to A (`rewrite::thrifty`) sends each message to a majority of A's nodes,
/// the rest on the widening timer. Over a grid a majority need not hold a whole row (2 x 3: two
/// nodes of each row), so without crashes the answers would wait for the timer: refused, naming
/// the send (its rank test would otherwise be taken for a third quorum). The other order composes:
/// over a grid, thrifty sends phase 2's broadcast to one row.
fn not_thrifty(cx: &RewriteContext<'_>, totals: &[RelationId], a_name: &str) -> Result<(), Refusal> {
    let program = cx.program;
    // The send picks its destinations by rank against A's node count (`thrifty_A_n(n)`).
    let send = program.rule_ids().find(|&id| {
        let rule = program.rule(id);
        quorum_destinations(program, rule, 3).is_some()
            && rule.atoms().any(|a| a.relation_id.is_some_and(|r| totals.contains(&r)))
    });
    match send {
        Some(id) => Err(Refusal::new(
            program.rule(id).range,
            format!(
                "rule {} (`{}`) is a thrifty broadcast to a majority of `{a_name}`: a grid's phase-2 quorum is one \
                 row, which a majority need not hold, so answers would wait for the widening timer; arrange the grid \
                 before the thrifty broadcast",
                program.rule_number(id),
                program.rule(id).head.relation
            ),
        )),
        None => Ok(()),
    }
}

/// `n(count(x)) :- nodes("A", x).`: the relations that hold the number of A's nodes.
fn node_counts(cx: &RewriteContext<'_>, a: ComponentId, a_name: &str) -> Result<Vec<RelationId>, Refusal> {
    let program = cx.program;
    let totals = totals(program, a_name);
    if totals.is_empty() {
        return Err(Refusal::new(
            program.component(a).name_range,
            format!(
                "no rule counts the nodes of `{a_name}` (`n(count(x)) :- nodes(\"{a_name}\", x).`): there is no quorum \
                 over `{a_name}` to arrange in a grid"
            ),
        ));
    }
    Ok(totals)
}

/// Every rule comparing a count with a node count by a threshold. A count that must equal the
/// node count (joined with it, or `==`) is a refusal when no threshold is found.
fn thresholds(cx: &RewriteContext<'_>, totals: &[RelationId], a_name: &str) -> Result<Vec<Threshold>, Refusal> {
    let program = cx.program;
    let mut out = Vec::new();
    let mut every: Option<(RuleId, TextRange, String)> = None;
    let count_column = |rel: RelationId| -> Option<usize> {
        let mut derivers = program.rules_deriving(rel).filter(|&d| program.rule(d).kind != RuleKind::Delete);
        let d = derivers.next()?;
        program
            .rule(d)
            .head
            .args
            .iter()
            .position(|h| matches!(h, HeadArg::Aggregate(g) if g.func == AggregateFunc::Count))
    };
    for &total in totals {
        for &r in cx.readers(total) {
            let rule = program.rule(r);
            for total_atom in rule.atoms().filter(|t| t.relation_id == Some(total) && !t.negated) {
                let Some(n) = total_atom.args.first().and_then(|e| e.as_var()) else { continue };
                for (k, atom) in rule.atoms().enumerate() {
                    let Some(rel) = atom.relation_id.filter(|&rel| !atom.negated && !totals.contains(&rel)) else {
                        continue;
                    };
                    let Some(column) = count_column(rel) else { continue };
                    let Some(c) = atom.args.get(column).and_then(|e| e.as_var()) else { continue };
                    if c == n {
                        every.get_or_insert((
                            r,
                            atom.range,
                            format!("`{}` joined with `{}`", atom.relation, total_atom.relation),
                        ));
                        continue;
                    }
                    let mentions = |e: &crate::model::Expr, v: &str| {
                        let mut vars = Vec::new();
                        e.variables(&mut vars);
                        vars.iter().any(|(name, _)| *name == v)
                    };
                    for cond in rule.body.iter().filter_map(|b| match b {
                        BodyItem::Condition(c) => Some(c),
                        BodyItem::Atom(_) => None,
                    }) {
                        let both = (mentions(&cond.left, c) && mentions(&cond.right, n))
                            || (mentions(&cond.left, n) && mentions(&cond.right, c));
                        if !both {
                            continue;
                        }
                        if matches!(cond.op, CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le) {
                            let uses = rule
                                .body
                                .iter()
                                .filter(|b| b.range() != cond.range && b.range() != total_atom.range)
                                .any(|b| match b {
                                    BodyItem::Atom(x) => x.args.iter().any(|e| mentions(e, n)),
                                    BodyItem::Condition(x) => mentions(&x.left, n) || mentions(&x.right, n),
                                })
                                || rule.head.args.iter().any(|h| match h {
                                    HeadArg::Expr(e) => mentions(e, n),
                                    HeadArg::Aggregate(g) => mentions(&g.arg, n),
                                });
                            out.push(Threshold {
                                test: r,
                                count_rel: rel,
                                column,
                                count_atom: k,
                                count_var: c.to_string(),
                                total_atom: total_atom.range,
                                total_var_elsewhere: uses,
                                condition: cond.range,
                            });
                        } else {
                            every.get_or_insert((r, cond.range, format!("`{}`", display_condition(cx, cond.range))));
                        }
                    }
                }
            }
        }
    }
    if out.is_empty() {
        return Err(match every {
            Some((r, range, how)) => Refusal::new(
                range,
                format!(
                    "rule {} (`{}`) needs every node of `{a_name}` ({how}: the count equals the number of nodes), not a \
                     count threshold: there is no quorum to make flexible",
                    program.rule_number(r),
                    program.rule(r).head.relation
                ),
            ),
            None => Refusal::new(
                program.relation(totals[0]).range,
                format!(
                    "no rule compares a count with the number of `{a_name}` nodes (`{}`) by a threshold such as \
                     `2 * c > n`: there is no quorum over `{a_name}`",
                    program.relation(totals[0]).name
                ),
            ),
        });
    }
    Ok(out)
}

fn display_condition(cx: &RewriteContext<'_>, range: TextRange) -> String {
    cx.text[range.start as usize..range.end as usize].to_string()
}

/// The thresholds grouped by the count they test: exactly two counts.
fn two_quorums(
    cx: &RewriteContext<'_>,
    thresholds: Vec<Threshold>,
    a_name: &str,
) -> Result<(Vec<Threshold>, Vec<Threshold>), Refusal> {
    let program = cx.program;
    let mut by_count: BTreeMap<RelationId, Vec<Threshold>> = BTreeMap::new();
    for t in thresholds {
        by_count.entry(t.count_rel).or_default().push(t);
    }
    let describe = |ts: &[Threshold]| {
        let t = &ts[0];
        format!("rule {} (`{}`)", program.rule_number(t.test), program.rule(t.test).head.relation)
    };
    let mut groups: Vec<Vec<Threshold>> = by_count.into_values().collect();
    // Source order, so that refusals name the first rule in the way.
    groups.sort_by_key(|g| program.rule(g[0].test).range.start);
    match groups.len() {
        1 => Err(Refusal::new(
            program.rule(groups[0][0].test).range,
            format!(
                "only one quorum over `{a_name}` ({}): a grid trades one quorum's size against another's, and quorums \
                 of one kind must all intersect, which rows do not; there is nothing to make flexible",
                describe(&groups[0])
            ),
        )),
        2 => {
            let second = groups.pop().unwrap_or_default();
            let first = groups.pop().unwrap_or_default();
            Ok((first, second))
        }
        _ => Err(Refusal::new(
            program.rule(groups[2][0].test).range,
            format!(
                "three or more quorums over `{a_name}` ({}, {} and {}): a grid pairs a phase-1 with a phase-2 quorum",
                describe(&groups[0]),
                describe(&groups[1]),
                describe(&groups[2])
            ),
        )),
    }
}

/// The count relation of one quorum: derived by one rule whose one aggregate is `count(x)` of an
/// address, undeclared (the rewrite changes its columns), read only by the thresholds.
fn quorum(cx: &RewriteContext<'_>, tests: Vec<Threshold>) -> Result<Quorum, Refusal> {
    let program = cx.program;
    let rel = tests[0].count_rel;
    let relation = program.relation(rel);
    let name = &relation.name;
    let derivers: Vec<RuleId> = program.rules_deriving(rel).collect();
    let [count_rule] = derivers[..] else {
        let second = derivers.get(1).map_or(relation.range, |&d| program.rule(d).range);
        return Err(Refusal::new(
            second,
            format!(
                "`{name}` is derived by {} rules: the grid rewrite counts rows in the one rule that counts",
                derivers.len()
            ),
        ));
    };
    let rule = program.rule(count_rule);
    let aggregates: Vec<_> = rule
        .head
        .args
        .iter()
        .filter_map(|h| match h {
            HeadArg::Aggregate(g) => Some(g),
            HeadArg::Expr(_) => None,
        })
        .collect();
    let counted = match aggregates[..] {
        [g] if g.func == AggregateFunc::Count => g.arg.as_var().map(|v| (v.to_string(), g.arg.range)),
        _ => None,
    };
    let Some((counted, counted_range)) = counted else {
        return Err(Refusal::new(rule.head.range, format!("`{name}` has other aggregates than one `count(x)`")));
    };
    let ty = rule.variables.iter().find(|v| v.name == counted).map(|v| v.ty);
    if ty != Some(Type::Addr) {
        return Err(Refusal::new(
            counted_range,
            format!("`{name}` counts `{counted}`, which is not an address: a grid quorum counts nodes"),
        ));
    }
    if relation.kind != RelationKind::Scratch || rule.kind != RuleKind::SameTick {
        return Err(Refusal::new(
            relation.range,
            format!("`{name}` is declared or derived for a later tick: the grid rewrite adds a row column to it, so it must be a scratch count derived with `:-`"),
        ));
    }
    let tests_at: BTreeSet<RuleId> = tests.iter().map(|t| t.test).collect();
    if let Some(&other) = cx.readers(rel).iter().find(|r| !tests_at.contains(r)) {
        return Err(Refusal::new(
            program.rule(other).range,
            format!(
                "rule {} (`{}`) reads `{name}` other than in a quorum threshold: the grid rewrite changes what `{name}` holds",
                program.rule_number(other),
                program.rule(other).head.relation
            ),
        ));
    }
    if let Some(inv) =
        program.invariants.iter().find(|i| crate::model::atoms(&i.body).any(|a| a.relation_id == Some(rel)))
    {
        return Err(Refusal::new(
            inv.name_range,
            format!("invariant `{}` reads `{name}`: the grid rewrite changes what `{name}` holds", inv.name),
        ));
    }
    Ok(Quorum { count_rule, counted, counted_range, tests })
}

/// Phase 1 gates phase 2: the conclusion of its threshold flows into what the other counts.
fn phases(cx: &RewriteContext<'_>, x: Quorum, y: Quorum, a_name: &str) -> Result<(Quorum, Quorum), Refusal> {
    let program = cx.program;
    let reaches = |from: &Quorum, to: &Quorum| {
        let target = program.rule(to.count_rule).head.relation_id;
        from.tests.iter().any(|t| {
            let start = program.rule(t.test).head.relation_id;
            start.is_some()
                && reachable(program, start.into_iter().collect()).contains(&target.unwrap_or(RelationId(u32::MAX)))
        })
    };
    match (reaches(&x, &y), reaches(&y, &x)) {
        (true, false) => Ok((x, y)),
        (false, true) => Ok((y, x)),
        (both, _) => {
            let t = &x.tests[0];
            let how = if both { "each leads to the other" } else { "neither leads to the other" };
            Err(Refusal::new(
                program.rule(t.test).range,
                format!(
                    "cannot tell the phase-1 quorum over `{a_name}` from the phase-2 one: of `{}` and `{}`, {how} (phase 1's \
                     conclusion must flow into what phase 2 counts)",
                    program.relation(x.tests[0].count_rel).name,
                    program.relation(y.tests[0].count_rel).name
                ),
            ))
        }
    }
}

/// Relations derived, through positive body atoms of rules that add facts (messages, next-tick
/// and same-tick rules; deletions remove), from `start`.
fn reachable(program: &Program, start: Vec<RelationId>) -> BTreeSet<RelationId> {
    let mut seen: BTreeSet<RelationId> = start.iter().copied().collect();
    let mut queue: VecDeque<RelationId> = start.into();
    while let Some(rel) = queue.pop_front() {
        for r in program.rule_ids() {
            let rule = program.rule(r);
            if matches!(rule.kind, RuleKind::Delete | RuleKind::Fact) {
                continue;
            }
            if !rule.atoms().any(|a| !a.negated && a.relation_id == Some(rel)) {
                continue;
            }
            if let Some(h) = rule.head.relation_id {
                if seen.insert(h) {
                    queue.push_back(h);
                }
            }
        }
    }
    seen
}

/// The helper relations of one component holding quorum tests.
struct Helpers {
    row: String,
    row_size: String,
    rows: String,
}

fn transform(cx: &RewriteContext<'_>, plan: &Grid<'_>) -> String {
    let program = cx.program;
    let a = plan.a_name;
    let mut edits: Vec<(TextRange, String)> = Vec::new();
    // Names: fresh per program, one set per component that holds a test.
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut fresh = |base: String| {
        let name = unused_name(&base, |n| {
            taken.contains(n) || program.relation_by_name(n).is_some() || program.component_by_name(n).is_some()
        });
        taken.insert(name.clone());
        name
    };
    let mut helpers: BTreeMap<ComponentId, Helpers> = BTreeMap::new();
    let all_tests = plan.phase1.tests.iter().map(|t| (1, t)).chain(plan.phase2.tests.iter().map(|t| (2, t)));
    let mut phases_in: BTreeMap<ComponentId, BTreeSet<u8>> = BTreeMap::new();
    for (phase, t) in all_tests {
        phases_in.entry(program.rule(t.test).component).or_default().insert(phase);
    }
    for (&c, phases) in &phases_in {
        let position = fresh(format!("{a}_position"));
        // Only the helpers this component's phases read take a name.
        let h = Helpers {
            row: fresh(format!("{a}_row")),
            row_size: if phases.contains(&2) { fresh(format!("{a}_row_size")) } else { String::new() },
            rows: if phases.contains(&1) { fresh(format!("{a}_rows")) } else { String::new() },
        };
        let rows = plan.rows;
        let mut text = format!(
            "// Grid quorums over `{a}` (compart rewrite --grid): the node at position i (from 1, by\n    \
             // address as text) is in row (i - 1) % {rows}. A phase-2 quorum is a whole row, a phase-1\n    \
             // quorum holds a node of every row: each of these meets each of those.\n    \
             {position}(a, count(o)) :- nodes(\"{a}\", a), nodes(\"{a}\", o), str(o) <= str(a).\n    \
             {row}(a, r) :- {position}(a, i), r = (i - 1) % {rows}.\n",
            row = h.row
        );
        if phases.contains(&2) {
            text.push_str(&format!("    {}(r, count(a)) :- {}(a, r).\n", h.row_size, h.row));
        }
        if phases.contains(&1) {
            text.push_str(&format!("    {}(count(r)) :- {}(_, r).\n", h.rows, h.row));
        }
        // Before the component's first count rule, with its indentation.
        let first = [plan.phase1.count_rule, plan.phase2.count_rule]
            .into_iter()
            .filter(|&r| program.rule(r).component == c)
            .map(|r| program.rule(r).range.start)
            .min()
            .unwrap_or(program.component(c).range.end.saturating_sub(1));
        edits.push((TextRange::empty(first as usize), format!("{text}\n    ")));
        helpers.insert(c, h);
    }
    for (phase, q) in [(1, &plan.phase1), (2, &plan.phase2)] {
        let rule = program.rule(q.count_rule);
        // A count is read by its own component's tests, so its component has helpers.
        let Some(h) = helpers.get(&rule.component) else { continue };
        let r = fresh_var(rule);
        let last = rule.body.last().map_or(rule.head.range.end, |b| b.range().end);
        edits.push((TextRange::empty(last as usize), format!(", {}({}, {r})", h.row, q.counted)));
        if phase == 1 {
            // Count the rows the promises come from, not the nodes.
            edits.push((q.counted_range, r.clone()));
        } else {
            // Count per row: a row column before the count.
            let at = rule.head.args.iter().find(|h| matches!(h, HeadArg::Aggregate(_))).map_or(0, |h| h.range().start);
            edits.push((TextRange::empty(at as usize), format!("{r}, ")));
        }
        for t in &q.tests {
            let test = program.rule(t.test);
            let Some(atom) = test.atoms().nth(t.count_atom) else { continue };
            let replacement = if phase == 1 {
                format!("{}({})", h.rows, t.count_var)
            } else {
                let r = fresh_var(test);
                if let Some(arg) = atom.args.get(t.column) {
                    edits.push((TextRange::empty(arg.range.start as usize), format!("{r}, ")));
                }
                format!("{}({r}, {})", h.row_size, t.count_var)
            };
            edits.push((t.condition, replacement));
            if !t.total_var_elsewhere {
                edits.push((item_with_separator(test, t.total_atom), String::new()));
            }
        }
    }
    // A node count nothing reads any more goes.
    for &total in &plan.totals {
        let removed: Vec<RuleId> = [&plan.phase1, &plan.phase2]
            .iter()
            .flat_map(|q| q.tests.iter())
            .filter(|t| {
                !t.total_var_elsewhere
                    && program.rule(t.test).atoms().any(|x| x.range == t.total_atom && x.relation_id == Some(total))
            })
            .map(|t| t.test)
            .collect();
        let still_read = cx.readers(total).iter().any(|r| !removed.contains(r))
            || program.invariants.iter().any(|i| crate::model::atoms(&i.body).any(|x| x.relation_id == Some(total)));
        if !still_read {
            for d in program.rules_deriving(total) {
                edits.push((program.rule(d).range, String::new()));
            }
        }
    }
    splice(cx.text, &edits)
}

/// A variable for the row that `rule` does not use: `r`, `r2`, ...
fn fresh_var(rule: &Rule) -> String {
    unused_name("r", |n| rule.variables.iter().any(|v| v.name == n))
}

/// A body item's range with the separator that joins it to the next item (or to the previous one,
/// for the last item), so that removing it leaves a well-formed body.
fn item_with_separator(rule: &Rule, item: TextRange) -> TextRange {
    let ranges: Vec<TextRange> = rule.body.iter().map(BodyItem::range).collect();
    let Some(i) = ranges.iter().position(|r| *r == item) else { return item };
    match (ranges.get(i + 1), i.checked_sub(1).map(|p| ranges[p])) {
        (Some(next), _) => TextRange::new(item.start as usize, next.start as usize),
        (None, Some(prev)) => TextRange::new(prev.end as usize, item.end as usize),
        (None, None) => item,
    }
}

fn explain(cx: &RewriteContext<'_>, plan: &Grid<'_>) -> Vec<String> {
    let program = cx.program;
    let a = plan.a_name;
    let rows = plan.rows;
    let tests = |q: &Quorum| {
        q.tests
            .iter()
            .map(|t| format!("rule {} (`{}`)", program.rule_number(t.test), display::rule(program.rule(t.test))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let count = |q: &Quorum| program.relation(q.tests[0].count_rel).name.clone();
    vec![
        format!(
            "grid quorums: `{a}`'s nodes in {rows} row(s), the node at position i (by address) in row (i - 1) % {rows}; the deployment's `[grids] {a}` gives rows and columns"
        ),
        format!("phase 2 (`{}`, tested by {}): every node of one row, instead of a count threshold", count(&plan.phase2), tests(&plan.phase2)),
        format!(
            "phase 1 (`{}`, tested by {}): a node of every row; its conclusion flows into what phase 2 counts",
            count(&plan.phase1),
            tests(&plan.phase1)
        ),
        "every set holding a node of every row meets every whole row: each phase-1 quorum intersects each phase-2 quorum, for any number of nodes".into(),
        "not an equivalence (commits wait for other, fewer nodes): invariants are kept, check them with `compart verify --invariants-only`".into(),
    ]
}

/// Whether some rule compares a count with the number of `component`'s nodes by a threshold
/// (`2 * c > n`): nodes a quorum counts, where the optimizer tries a grid (and says why not).
pub fn counted_by_quorum(analysis: &Analysis, component: &str) -> bool {
    let cx = RewriteContext::new(analysis);
    let Ok(a) = cx.component(component) else { return false };
    node_counts(&cx, a, component).and_then(|totals| thresholds(&cx, &totals, component)).is_ok()
}

/// Whether some relation holds the number of `component`'s nodes: where a grid may apply, so
/// that the editor offers it there (and says why not when refused).
pub fn nodes_counted(program: &Program, component: &str) -> bool {
    !totals(program, component).is_empty()
}

/// The scratch relations derived only by `n(count(x)) :- nodes("A", x).`
fn totals(program: &Program, a_name: &str) -> Vec<RelationId> {
    let counts_nodes = |rule: &Rule| {
        let [HeadArg::Aggregate(agg)] = rule.head.args.as_slice() else { return false };
        let [BodyItem::Atom(atom)] = rule.body.as_slice() else { return false };
        agg.func == AggregateFunc::Count
            && !atom.negated
            && atom.relation == NODES_RELATION
            && matches!(atom.args.first().map(|e| &e.kind), Some(ExprKind::Str(n)) if n == a_name)
            && atom.args.get(1).and_then(|e| e.as_var()).is_some_and(|v| agg.arg.as_var() == Some(v))
    };
    program
        .relation_ids()
        .filter(|&r| program.relation(r).kind == RelationKind::Scratch)
        .filter(|&r| {
            let mut derivers = program.rules_deriving(r).peekable();
            derivers.peek().is_some() && derivers.all(|d| counts_nodes(program.rule(d)))
        })
        .collect()
}

/// The rows of the grid that [`grid`] arranged `component`'s nodes in, read off the rule it adds
/// (`row(a, r) :- position(a, i), r = (i - 1) % R.`, `position` counting `nodes("component", _)`):
/// the deployment file follows it (`deployment::rewrite_changes`).
pub fn grid_rows_of(program: &Program, component: &str) -> Option<usize> {
    program.rules.iter().find_map(|rule| row_rule(program, rule).filter(|(c, _)| c == component).map(|(_, r)| r))
}

/// For the rule [`grid`] adds to place a node in its row
/// (`row(a, r) :- position(a, i), r = (i - 1) % R.`): the component whose nodes it places and R.
/// The thrifty broadcast over a grid and the cost model read the rows off it.
pub(crate) fn row_rule(program: &Program, rule: &Rule) -> Option<(String, usize)> {
    let [BodyItem::Atom(atom), BodyItem::Condition(cond)] = rule.body.as_slice() else { return None };
    if cond.op != CompareOp::Assign {
        return None;
    }
    let ExprKind::Binary(BinaryOp::Rem, lhs, k) = &cond.right.kind else { return None };
    let (ExprKind::Binary(BinaryOp::Sub, i, one), ExprKind::Int(rows)) = (&lhs.kind, &k.kind) else { return None };
    if !matches!(one.kind, ExprKind::Int(1)) || i.as_var() != atom.args.get(1).and_then(|e| e.as_var()) {
        return None;
    }
    let position = atom.relation_id?;
    let component = program.rules_deriving(position).find_map(|d| {
        program.rule(d).atoms().find_map(|n| match n.args.first().map(|e| &e.kind) {
            Some(ExprKind::Str(c)) if n.relation == NODES_RELATION => Some(c.clone()),
            _ => None,
        })
    })?;
    (*rows > 0).then_some((component, *rows as usize))
}
