//! Semantic checks over the lowered model. Each pass may fill in facts (types, strata) and report
//! diagnostics; none stops the others, so one error never hides an unrelated one.

mod forms;
mod lints;
mod safety;
mod stratify;
mod types;

use crate::diagnostics::Diagnostic;
use crate::model::Program;

pub use stratify::dependency_graph;

pub fn check(program: &mut Program, diagnostics: &mut Vec<Diagnostic>) {
    forms::check(program, diagnostics);
    types::check(program, diagnostics);
    safety::check(program, diagnostics);
    stratify::check(program, diagnostics);
    lints::check(program, diagnostics);
}
