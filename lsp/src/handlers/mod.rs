//! One file per feature. Handlers are synchronous functions of a [`Snapshot`](crate::documents::Snapshot)
//! and the request's parameters, so they are easy to test and never see a half-applied edit.

pub mod code_actions;
pub mod code_lens;
pub mod commands;
pub mod completion;
pub mod diagnostics;
pub mod edits;
pub mod folding;
pub mod formatting;
pub mod graph;
pub mod highlights;
pub mod hover;
pub mod inlay_hints;
pub mod navigation;
pub mod scaling;
pub mod selection_range;
pub mod semantic_tokens;
pub mod signature_help;
pub mod symbols;
pub mod workspace_symbols;
