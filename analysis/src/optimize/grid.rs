//! Grid quorums in the optimizer's search (`Options::grid`, opt-in like batching: a grid changes
//! which nodes a commit waits for, and the deployment's node count).
//!
//! The cost model prices a grid as it prices any program: the rewritten counts join one more
//! atom (the node's row), and the component the quorums count gets rows x columns nodes. Every
//! node still receives every broadcast, so a grid lowers the quorum a commit waits for (latency,
//! and how many nodes may be slow or down), not the messages or the rule work per request: the
//! model predicts no gain and the step is not taken, with a note that says so. A broadcast to one
//! row only (a thrifty broadcast) is what would make it pay; that is another rewrite.

use super::{estimate, Options};
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
    },
    /// Why no grid was taken, for the plan's notes.
    NotTaken(Vec<String>),
}

/// Try a grid of `rows` over each component whose nodes some rule counts, on `text`.
pub(super) fn grid_step(text: &str, options: &Options, rows: usize, gate: &mut Gate<'_>) -> GridStep {
    let a = crate::analyze(text);
    let unscaled = |o: &Options| Options { machines: 0, ..o.clone() };
    let before = estimate(&a.program, &unscaled(options));
    let mut notes = Vec::new();
    let counted: Vec<String> =
        a.program.components.iter().map(|c| c.name.clone()).filter(|n| rewrite::nodes_counted(&a.program, n)).collect();
    for name in counted {
        let result = match rewrite::grid(&a, &name, rows) {
            Ok(result) => result,
            Err(refusal) => {
                notes.push(format!("grid quorums over `{name}` do not apply: {}", refusal.reason));
                continue;
            }
        };
        let next = crate::analyze(&result.new_text);
        // The grid is full: rows x columns nodes, the columns those the deployment's nodes fill.
        let nodes = options.logical(&a.program, &name);
        let columns = nodes.div_ceil(rows).max(1);
        let mut with = options.clone();
        with.logical.insert(name.clone(), rows * columns);
        let after = estimate(&next.program, &unscaled(&with));
        let description = format!(
            "grid quorums over `{name}`: {rows} x {columns}, a phase-2 quorum one row of {columns}, a phase-1 quorum a node of every row"
        );
        if after.throughput > before.throughput * 1.01 && after.machines <= options.machines {
            let Ok(checked) = gate(&result.new_text, &description, true) else { continue };
            return GridStep::Taken {
                text: result.new_text,
                options: Box::new(with),
                description,
                checked,
                grid: (name, rows, columns),
            };
        }
        notes.push(format!(
            "grid quorums over `{name}` ({rows} x {columns}) not taken: predicted {:.0} requests/s on {} machines against {:.0} on {} (every `{name}` node still receives every broadcast: a grid shrinks the quorum a commit waits for, not the messages or the work per request)",
            after.throughput, after.machines, before.throughput, before.machines
        ));
    }
    GridStep::NotTaken(notes)
}
