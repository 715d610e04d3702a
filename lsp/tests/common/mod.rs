//! An in-process LSP client: drives the tower `LspService` with JSON-RPC messages and collects
//! what the server sends back (notifications and requests).

#![allow(dead_code)]

use std::time::Duration;

use compart_lsp::Backend;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower::{Service, ServiceExt};
use tower_lsp_server::jsonrpc::Request;
use tower_lsp_server::LspService;

pub struct Client {
    service: LspService<Backend>,
    from_server: mpsc::UnboundedReceiver<Value>,
    next_id: i64,
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

pub fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

impl Client {
    pub fn new() -> Self {
        let (service, socket) = compart_lsp::service();
        let (tx, from_server) = mpsc::unbounded_channel();
        let (mut requests, _responses) = socket.split();
        tokio::spawn(async move {
            while let Some(message) = requests.next().await {
                if tx.send(serde_json::to_value(message).unwrap()).is_err() {
                    break;
                }
            }
        });
        Client { service, from_server, next_id: 0 }
    }

    /// Initialize with UTF-16 positions and the given initializationOptions.
    pub async fn initialized(options: Value) -> Self {
        Client::initialized_with(json!({}), options).await
    }

    /// Initialize declaring these client capabilities.
    pub async fn initialized_with(capabilities: Value, options: Value) -> Self {
        let mut client = Client::new();
        let params = json!({ "capabilities": capabilities, "initializationOptions": options });
        let result = client.request("initialize", params).await;
        assert!(result.get("result").is_some(), "{result}");
        client.notify("initialized", json!({})).await;
        client
    }

    /// Send a request; the whole response (`result` or `error`).
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let request = Request::build(method.to_string()).params(params).id(self.next_id).finish();
        let response = self.service.ready().await.unwrap().call(request).await.unwrap();
        serde_json::to_value(response.expect("a request gets a response")).unwrap()
    }

    pub async fn result(&mut self, method: &str, params: Value) -> Value {
        let response = self.request(method, params).await;
        response.get("result").cloned().unwrap_or_else(|| panic!("{method} failed: {response}"))
    }

    pub async fn notify(&mut self, method: &str, params: Value) {
        let request = Request::build(method.to_string()).params(params).finish();
        let response = self.service.ready().await.unwrap().call(request).await.unwrap();
        assert!(response.is_none());
    }

    /// The next message from the server with this method (others are skipped).
    pub async fn next(&mut self, method: &str) -> Value {
        let wait = async {
            loop {
                let message = self.from_server.recv().await.expect("server is alive");
                if message["method"] == method {
                    return message["params"].clone();
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("no {method} from the server"))
    }

    /// Everything the server sent so far, without waiting.
    pub fn drain(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(m) = self.from_server.try_recv() {
            out.push(m);
        }
        out
    }

    pub async fn open(&mut self, uri: &str, text: &str) -> Value {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "compart", "version": 1, "text": text } }),
        )
        .await;
        self.next("textDocument/publishDiagnostics").await
    }
}

/// What VS Code declares about code actions: it shows refused ones (`disabled`) as such.
pub fn disabled_support() -> Value {
    json!({ "textDocument": { "codeAction": { "disabledSupport": true } } })
}

pub fn pos(line: u32, character: u32) -> Value {
    json!({ "line": line, "character": character })
}

pub fn doc(uri: &str) -> Value {
    json!({ "uri": uri })
}

pub fn at(uri: &str, line: u32, character: u32) -> Value {
    json!({ "textDocument": doc(uri), "position": pos(line, character) })
}

/// The (line, UTF-16 column) of the n-th occurrence (0-based) of `needle` in `text`.
pub fn find(text: &str, needle: &str, n: usize) -> (u32, u32) {
    let offset = text.match_indices(needle).nth(n).unwrap_or_else(|| panic!("no {needle} #{n}")).0;
    let line = text[..offset].matches('\n').count() as u32;
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    (line, text[start..offset].encode_utf16().count() as u32)
}

pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

/// `text` after the client applies LSP `edits` (UTF-16 positions, non-overlapping), as an editor
/// does: the last first, so that earlier ranges stay valid.
pub fn apply_lsp_edits(text: &str, edits: &Value) -> String {
    let index = compart_analysis::LineIndex::new(text);
    let offset = |p: &Value| {
        let lc = compart_analysis::text::LineCol {
            line: p["line"].as_u64().unwrap() as u32,
            col: p["character"].as_u64().unwrap() as u32,
        };
        index.offset_utf16(text, lc)
    };
    let mut ranges: Vec<(usize, usize, &str)> = edits
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (offset(&e["range"]["start"]), offset(&e["range"]["end"]), e["newText"].as_str().unwrap()))
        .collect();
    ranges.sort_by_key(|r| (r.0, r.1));
    let mut out = text.to_string();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlapping edits: {edits}");
    }
    for (start, end, new_text) in ranges.into_iter().rev() {
        out.replace_range(start..end, new_text);
    }
    out
}
