//! `compart/graph` (a custom request): the component graph of a document for the editor's
//! picture (VS Code's webview), as `compart graph` computes it (`compart_analysis::graph`), with
//! ranges in LSP positions so that a click can go to the component.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tower_lsp_server::ls_types::TextDocumentIdentifier;

use crate::converters::Converter;
use crate::documents::Snapshot;

pub const METHOD: &str = "compart/graph";

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphParams {
    pub text_document: TextDocumentIdentifier,
}

/// `{ version, components: [{ name, kind, class, summary, range }], edges: [{ from, to, relations }] }`;
/// `from`/`to` null stand for the clients. While the document has errors, the graph is of what
/// parsed (`hasErrors` says so).
pub fn graph(snapshot: &Snapshot) -> Value {
    let analysis = &snapshot.analysis;
    let graph = compart_analysis::graph::graph(&analysis.program, snapshot.scaling());
    let converter = Converter::new(analysis);
    let components: Vec<Value> = graph
        .components
        .iter()
        .map(|c| {
            json!({ "name": c.name, "kind": c.kind, "class": c.class, "summary": c.summary,
                    "range": converter.range(c.range) })
        })
        .collect();
    json!({
        "uri": snapshot.uri.as_str(),
        "version": snapshot.version,
        "hasErrors": analysis.has_errors(),
        "components": components,
        "edges": graph.edges,
    })
}
