//! Code lenses above the first component: run the program on a local cluster, or simulate it.

use serde_json::Value;
use tower_lsp_server::ls_types::{CodeLens, Command};

use crate::converters::Converter;
use crate::documents::Snapshot;
use crate::handlers::commands::{RUN, SIMULATE};

/// While the buffer has errors, the lenses stay where they were in its last version without any
/// (on the first component's name, if no edit touched it since; stale.rs): disappearing at every
/// keystroke of a rule being typed helps no one. They run the buffer's text (commands.rs), so
/// while it has errors they answer with the first one.
pub fn code_lenses(snapshot: &Snapshot) -> Vec<CodeLens> {
    let analysis = &snapshot.analysis;
    let uri = &snapshot.uri;
    let Some(name_range) = snapshot.stale.lens else { return vec![] };
    let range = Converter::new(analysis).range(name_range);
    let lens = |title: &str, command: &str| CodeLens {
        range,
        command: Some(Command {
            title: title.into(),
            command: command.into(),
            arguments: Some(vec![Value::String(uri.as_str().to_string())]),
        }),
        data: None,
    };
    vec![lens("▶ Run local cluster", RUN), lens("⟳ Simulate", SIMULATE)]
}
