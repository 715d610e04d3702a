//! Code lenses above the first component: run the program on a local cluster, or simulate it.

use compart_analysis::Analysis;
use serde_json::Value;
use tower_lsp_server::ls_types::{CodeLens, Command, Uri};

use crate::converters::Converter;
use crate::handlers::commands::{RUN, SIMULATE};

pub fn code_lenses(analysis: &Analysis, uri: &Uri) -> Vec<CodeLens> {
    let Some(first) = analysis.program.components.first() else { return vec![] };
    // Running needs a program without errors; the lens would only fail.
    if analysis.has_errors() {
        return vec![];
    }
    let range = Converter::new(analysis).range(first.name_range);
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
