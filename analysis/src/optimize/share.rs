//! Shared proxies in the optimizer's search (`Options::share`, on by default): merge two stateless
//! components into one (`rewrite::share`) when the machines that frees, given by the scale-out to
//! the bottleneck, raise the prediction.
//!
//! The cost model prices the merged program as any program: the merged component's load per
//! request is the sum of the parts' (each message is handled as before, on one set of instances),
//! and its logical nodes are the most either part had. Two lightly loaded parts then need fewer
//! machines than they held, and `estimate` under the budget hands the difference to the costliest
//! component; a merge whose summed load becomes the bottleneck does not pay and is not taken.

use super::grid::Gate;
use super::{estimate, Options};
use crate::rewrite;

pub(super) struct Shared {
    pub text: String,
    pub options: Box<Options>,
    pub description: String,
    pub checked: Option<String>,
    /// "`x` and `y` into `P`", for what the search's stop message said before the merge.
    pub merged: String,
}

/// The best merge of two stateless components of `text` that raises the budgeted prediction by
/// 1% and passes `gate`, if any.
pub(super) fn share_step(text: &str, options: &Options, invariants_only: bool, gate: &mut Gate<'_>) -> Option<Shared> {
    let a = crate::analyze(text);
    let program = &a.program;
    let now = estimate(program, options).throughput;
    let mut better = Vec::new();
    for first in program.component_ids() {
        for second in rewrite::share_candidates(program, first).into_iter().filter(|&c| c > first) {
            let (x, y) = (&program.component(first).name, &program.component(second).name);
            let into = rewrite::unused_name(&format!("{x}_{y}"), |n| {
                program.component_by_name(n).is_some() || program.relation_by_name(n).is_some()
            });
            let Ok(result) = rewrite::share(&a, x, y, &into) else { continue };
            let next = crate::analyze(&result.new_text);
            let mut with = options.clone();
            let nodes = options.logical(program, x).max(options.logical(program, y));
            with.logical.insert(into.clone(), nodes);
            let est = estimate(&next.program, &with);
            if est.throughput > now * 1.01 && est.machines <= options.machines {
                let description = format!(
                    "shared proxies: `{x}` and `{y}` as one component `{into}` (stateless: the machines freed go to the bottleneck)"
                );
                better.push((
                    est.throughput,
                    result.new_text,
                    with,
                    description,
                    format!("`{x}` and `{y}` into `{into}`"),
                ));
            }
        }
    }
    better.sort_by(|p, q| q.0.total_cmp(&p.0));
    better.into_iter().find_map(|(_, text, with, description, merged)| {
        let checked = gate(&text, &description, invariants_only).ok()?;
        Some(Shared { text, options: Box::new(with), description, checked, merged })
    })
}
