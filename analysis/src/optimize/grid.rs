//! Grid quorums in the optimizer's search (`Options::grid`: rows 2 and 3 by default, checked on
//! invariants like batching: a grid changes which nodes a commit waits for, and the deployment's
//! node count).
//!
//! The grid is tried over each component whose nodes a quorum counts (Paxos' acceptors, not the
//! costliest component), with the columns the deployment's nodes fill (rounded up: 3 acceptors in
//! 2 rows are a 2 x 2 grid, in 3 rows a 3 x 1), within the budget. The cost model prices it as it
//! prices any program: the rewritten counts join one more atom (the node's row), and the component
//! gets rows x columns nodes. Alone, every node still receives every broadcast, so a grid lowers
//! the quorum a commit waits for (latency, and how many nodes may be slow or down), not the
//! messages or the rule work per request. The thrifty step follows the grid and, over it, sends the
//! phase-2 broadcast to one row (`rewrite::thrifty`), which lowers each node's share to 1 / rows:
//! so each grid is priced with the thrifty broadcasts that would follow it, against the program
//! with those that would follow without it, and the plan's note gives both figures.

use super::{estimate, thousands, thrifty_each, Estimate, GridChoice, Options, Profile};
use crate::model::Program;
use crate::rewrite;

/// The optimizer's gate on one candidate: (new text, description, invariants only) -> what the
/// check explored, or Err once the refusal is recorded.
pub(super) type Gate<'g> = dyn FnMut(&str, &str, bool) -> Result<Option<String>, ()> + 'g;

pub(super) enum GridStep {
    /// The grid paid and passed the check: the new text, the options with the component's new
    /// node count, the step's description and what the check explored.
    Taken {
        text: String,
        options: Box<Options>,
        description: String,
        checked: Option<String>,
        grid: (String, usize, usize),
        /// The budgeted estimate with the grid.
        estimate: Box<Estimate>,
        /// Whether it pays only with the thrifty broadcast to one row that follows it (dropped when
        /// the check refuses that).
        needs_thrifty: bool,
    },
    /// Why no grid was taken, for the plan's notes.
    NotTaken(Vec<String>),
}

/// Try a grid of each of `rows` over each component whose nodes a quorum counts, on `text`
/// (predicted `before` within the budget).
pub(super) fn grid_step(
    text: &str,
    options: &Options,
    before: &Estimate,
    rows: &[usize],
    gate: &mut Gate<'_>,
) -> GridStep {
    let a = crate::analyze(text);
    let mut notes = Vec::new();
    // (estimate, text, options, description, grid, with thrifty), for each grid that pays.
    let mut better = Vec::new();
    // The thrifty step comes next: what it would add, priced without the check.
    let then_thrifty = |text: &str, opts: &Options, now: &Estimate| {
        if !options.thrifty {
            return now.throughput;
        }
        let (t, taken, _) = thrifty_each(text, opts, now.throughput, true, &mut |_, _, _| Ok(None), Vec::new());
        if taken.is_empty() {
            now.throughput
        } else {
            estimate(&crate::analyze(&t).program, opts).throughput
        }
    };
    let without = then_thrifty(text, options, before);
    let thrifty_note = |alone: f64, total: f64| {
        if total > alone {
            format!(" ({} with the thrifty broadcasts that follow)", thousands(total))
        } else {
            String::new()
        }
    };
    let counted: Vec<String> =
        a.program.components.iter().map(|c| c.name.clone()).filter(|n| rewrite::counted_by_quorum(&a, n)).collect();
    for name in counted {
        let mut priced = Vec::new();
        for &r in rows {
            let result = match rewrite::grid(&a, &name, r) {
                Ok(result) => result,
                Err(refusal) => {
                    let note = format!("grid quorums over `{name}` do not apply: {}", refusal.reason);
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                    continue;
                }
            };
            let next = crate::analyze(&result.new_text);
            // The grid is full: rows x columns nodes, the columns those the deployment's nodes fill.
            let nodes = options.logical(&a.program, &name);
            let columns = nodes.div_ceil(r).max(1);
            // Unasked, a grid may not tolerate fewer crashes than the majorities it replaces.
            if let Some(why) = fewer_crashes_tolerated(nodes, r, columns).filter(|_| options.grid == GridChoice::Search)
            {
                notes.push(format!(
                    "grid quorums over `{name}`: {r} x {columns} not tried: {why} (`--grid-rows {r}` tries it)"
                ));
                continue;
            }
            let mut with = options.clone();
            with.logical.insert(name.clone(), r * columns);
            if let Some(profile) = &mut with.profile {
                keep_measured(&a.program, &next.program, profile);
            }
            let after = estimate(&next.program, &with);
            let description = format!(
                "grid quorums over `{name}`: {r} x {columns}, a phase-2 quorum one row of {columns}, a phase-1 quorum a node of every row"
            );
            let total = then_thrifty(&result.new_text, &with, &after).max(after.throughput);
            priced.push(format!(
                "{r} x {columns} predicts {} requests/s on {} machines{}",
                thousands(after.throughput),
                after.machines,
                thrifty_note(after.throughput, total)
            ));
            if total > without.max(before.throughput) * 1.01 && after.machines <= options.machines {
                better.push((after, result.new_text, with, description, (name.clone(), r, columns), total));
            }
        }
        if !priced.is_empty() && better.iter().all(|b| b.4 .0 != name) {
            notes.push(format!(
                "grid quorums over `{name}` not taken: {}, against {} on {} without{} (alone, a grid shrinks the \
                 quorum a commit waits for, not the messages or the work per request; with a thrifty broadcast to \
                 one row, each `{name}` node receives 1 / rows of it)",
                priced.join(", "),
                thousands(before.throughput),
                before.machines,
                thrifty_note(before.throughput, without)
            ));
        }
    }
    better.sort_by(|p, q| q.5.total_cmp(&p.5));
    for (after, new_text, with, description, grid, _) in better {
        let Ok(checked) = gate(&new_text, &description, true) else { continue };
        let needs_thrifty = after.throughput <= without.max(before.throughput) * 1.01;
        let estimate = Box::new(after);
        return GridStep::Taken {
            text: new_text,
            options: Box::new(with),
            description,
            checked,
            grid,
            estimate,
            needs_thrifty,
        };
    }
    GridStep::NotTaken(notes)
}

/// Why a `rows` x `columns` grid tolerates fewer crashed nodes than majorities of `nodes` do
/// (⌊(nodes − 1) / 2⌋ for each phase), else None. A phase-2 quorum needs a whole row: each crash
/// may take out a row, so it survives `rows − 1`; a phase-1 quorum needs a node of every row: it
/// is lost when a whole row is, so it survives `columns − 1`. A 3 x 1 grid over 3 acceptors
/// commits with one acceptor, but a crash stops every leader change until the node returns.
fn fewer_crashes_tolerated(nodes: usize, rows: usize, columns: usize) -> Option<String> {
    let majority = nodes.saturating_sub(1) / 2;
    let (phase2, phase1) = (rows.saturating_sub(1), columns.saturating_sub(1));
    (phase1.min(phase2) < majority).then(|| {
        format!(
            "it tolerates {phase1} crash(es) in phase 1 and {phase2} in phase 2, where majorities of {nodes} \
             tolerate {majority} in each"
        )
    })
}

/// The grid changes the rules that count and test the quorums in place (a row column, a join with
/// the row): each still derives about the facts it did per request, so it keeps the measured
/// frequency of the rule it replaces (the only one of its component with its head), which a
/// profile matches by text. Without that they would fall back to the static estimate, and the
/// difference between the two, not the grid, would decide whether it pays.
fn keep_measured(before: &Program, after: &Program, profile: &mut Profile) {
    let head = |p: &Program, r: &crate::model::Rule| (p.component(r.component).name.clone(), r.head.relation.clone());
    for rule in &after.rules {
        let key = Profile::key(rule);
        if profile.rule_facts.contains_key(&key) {
            continue;
        }
        let mut same = before.rules.iter().filter(|o| o.kind == rule.kind && head(before, o) == head(after, rule));
        let (Some(old), None) = (same.next(), same.next()) else { continue };
        if let Some(&facts) = profile.rule_facts.get(&Profile::key(old)) {
            profile.rule_facts.insert(key, facts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Majorities of 3 survive one crash in each phase: so does a 2 x 2 grid, not a 3 x 1 (phase 1
    /// needs the single node of every row). Majorities of 6 survive two: a 3 x 2 grid one in phase 1.
    #[test]
    fn grids_tolerating_fewer_crashes_than_majorities_are_named() {
        assert_eq!(fewer_crashes_tolerated(3, 2, 2), None);
        assert_eq!(fewer_crashes_tolerated(4, 2, 2), None);
        let why = fewer_crashes_tolerated(3, 3, 1).expect("3 x 1 loses phase 1 to one crash");
        assert!(why.contains("0 crash(es) in phase 1 and 2 in phase 2") && why.contains("tolerate 1"), "{why}");
        assert!(fewer_crashes_tolerated(6, 3, 2).is_some());
    }

    /// The grid's counting and testing rules keep the measured frequencies of the rules they
    /// replace; the row rules it adds, which replace nothing, stay unmeasured (static estimate).
    #[test]
    fn a_grid_keeps_the_measured_frequencies_of_the_rules_it_changes() {
        let paxos = crate::analyze(include_str!("../../../examples/paxos.ded"));
        let mut profile = Profile::default();
        for rule in &paxos.program.rules {
            profile.rule_facts.insert(Profile::key(rule), 7.0);
        }
        let measured = profile.rule_facts.len();
        let gridded = crate::analyze(&rewrite::grid(&paxos, "acceptor", 2).unwrap().new_text);
        keep_measured(&paxos.program, &gridded.program, &mut profile);
        let facts = |head: &str| {
            let rules: Vec<_> = gridded.program.rules.iter().filter(|r| r.head.relation == head).collect();
            rules.iter().map(|r| profile.rule_facts.get(&Profile::key(r)).copied()).collect::<Vec<_>>()
        };
        // Changed in place (a row column, a join with the row size): measured as before.
        assert_eq!(facts("accept_count"), [Some(7.0)]);
        assert_eq!(facts("commit"), [Some(7.0)]);
        assert!(profile.rule_facts.len() > measured);
        // Added by the grid: no measurement to keep.
        assert!(facts("acceptor_row").iter().all(Option::is_none), "{:?}", facts("acceptor_row"));
    }
}
