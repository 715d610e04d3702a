//! Renders lsp/docs/editor.svg from a real session with the server (in process): open
//! examples/voting.ded, ask for inlay hints and for the code actions on the broadcast rule, and
//! draw the lines with the hints where an editor shows them and the action menu under the rule.
//! The responses are saved beside it (lsp/docs/session.json) so the picture can be checked.
//!
//!     cargo run -p compart-lsp --example screenshot

use futures::StreamExt;
use serde_json::{json, Value};
use tower::{Service, ServiceExt};
use tower_lsp_server::jsonrpc::Request;

const FONT: f64 = 14.0;
const CHAR: f64 = 8.43; // DejaVu Sans Mono advance at 14px
const LINE: f64 = 21.0;
const LEFT: f64 = 56.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn color(line: &str, col: usize) -> &'static str {
    let t = line.trim_start();
    if t.starts_with("//") || line[..col.min(line.len())].contains("//") {
        "#6a9955"
    } else {
        "#d4d4d4"
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let text = std::fs::read_to_string(format!("{root}/examples/voting.ded")).unwrap();
    let uri = "file:///work/examples/voting.ded";
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.iter().position(|l| l.starts_with("component leader")).unwrap();
    let last = first + 25;
    let ballot = lines.iter().position(|l| l.trim_start().starts_with("ballot@p(")).unwrap();

    let (mut service, socket) = compart_lsp::service();
    let (mut requests, _) = socket.split();
    tokio::spawn(async move { while requests.next().await.is_some() {} });
    let mut send = async |method: &str, params: Value, id: Option<i64>| -> Value {
        let mut b = Request::build(method.to_string()).params(params);
        if let Some(id) = id {
            b = b.id(id);
        }
        let resp = service.ready().await.unwrap().call(b.finish()).await.unwrap();
        resp.map(|r| serde_json::to_value(r).unwrap()["result"].clone()).unwrap_or(Value::Null)
    };
    // Like VS Code, whose menu the picture draws: refused actions are shown, disabled.
    let capabilities = json!({ "textDocument": { "codeAction": { "disabledSupport": true } } });
    send("initialize", json!({ "capabilities": capabilities }), Some(1)).await;
    send("initialized", json!({}), None).await;
    send(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "compart", "version": 1, "text": text } }),
        None,
    )
    .await;
    let hints = send(
        "textDocument/inlayHint",
        json!({ "textDocument": { "uri": uri }, "range": { "start": { "line": first, "character": 0 }, "end": { "line": last, "character": 0 } } }),
        Some(2),
    )
    .await;
    let col = lines[ballot].find("ballot").unwrap();
    let actions = send(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": uri }, "range": { "start": { "line": ballot, "character": col }, "end": { "line": ballot, "character": col } }, "context": { "diagnostics": [] } }),
        Some(3),
    )
    .await;
    let session = json!({ "inlayHint": hints, "codeAction": actions.as_array().unwrap().iter().map(|a| json!({ "title": a["title"], "kind": a["kind"], "disabled": a["disabled"] })).collect::<Vec<_>>() });
    std::fs::write(format!("{root}/lsp/docs/session.json"), serde_json::to_string_pretty(&session).unwrap() + "\n")
        .unwrap();

    // Draw.
    let mut body = String::new();
    let mut width: f64 = 0.0;
    let menu_after = ballot - first;
    for (row, line_no) in (first..last).enumerate() {
        let line = lines[line_no];
        let y = 40.0 + row as f64 * LINE + if row > menu_after { 3.0 * LINE + 10.0 } else { 0.0 };
        body.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{y:.1}\" fill=\"#858585\" text-anchor=\"end\">{}</text>\n",
            LEFT - 14.0,
            line_no + 1
        ));
        let mut here: Vec<(usize, String, bool)> = hints
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["position"]["line"] == line_no)
            .map(|h| {
                let label = h["label"].as_str().unwrap_or("").to_string();
                let scaling = label.starts_with('⟨');
                (h["position"]["character"].as_u64().unwrap() as usize, label, scaling)
            })
            .collect();
        here.sort_by_key(|h| h.0);
        let mut x = LEFT;
        let mut at = 0;
        for (col, label, scaling) in here.into_iter().chain(std::iter::once((usize::MAX, String::new(), false))) {
            let end = col.min(line.len());
            let piece = &line[at..end];
            if !piece.is_empty() {
                body.push_str(&format!(
                    "<text x=\"{x:.1}\" y=\"{y:.1}\" fill=\"{}\" xml:space=\"preserve\">{}</text>\n",
                    color(line, at),
                    esc(piece)
                ));
                x += piece.chars().count() as f64 * CHAR;
            }
            at = end;
            if col == usize::MAX {
                break;
            }
            let pad = if scaling { CHAR } else { 0.0 };
            let w = label.chars().count() as f64 * CHAR * 0.92 + 8.0;
            let (bg, fg) = if scaling { ("#1f3a5f", "#9cdcfe") } else { ("#3a3d41", "#a0a0a0") };
            body.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" rx=\"4\" fill=\"{bg}\"/>\n<text x=\"{:.1}\" y=\"{y:.1}\" fill=\"{fg}\" font-size=\"{:.1}\" xml:space=\"preserve\">{}</text>\n",
                x + pad,
                y - FONT + 1.0,
                FONT + 5.0,
                x + pad + 4.0,
                FONT * 0.92,
                esc(&label)
            ));
            x += w + pad + 2.0;
        }
        width = width.max(x);
        if row == menu_after {
            // The code action menu, as the editor shows it under the cursor.
            let mx = LEFT + col as f64 * CHAR;
            let my = y + 10.0;
            let titles: Vec<(String, Option<String>)> = actions
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (a["title"].as_str().unwrap().to_string(), a["disabled"]["reason"].as_str().map(str::to_string))
                })
                .collect();
            let mw = titles.iter().map(|t| t.0.chars().count()).max().unwrap_or(10) as f64 * CHAR + 60.0;
            body.push_str(&format!(
                "<rect x=\"{mx:.1}\" y=\"{my:.1}\" width=\"{mw:.1}\" height=\"{:.1}\" rx=\"5\" fill=\"#252526\" stroke=\"#454545\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#858585\" font-size=\"12\">Refactor (rewrite)</text>\n",
                (titles.len() as f64 + 1.0) * LINE + 10.0,
                mx + 12.0,
                my + 18.0
            ));
            for (i, (title, disabled)) in titles.iter().enumerate() {
                let ty = my + 18.0 + (i as f64 + 1.0) * LINE;
                if i == 0 {
                    body.push_str(&format!(
                        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{LINE:.1}\" fill=\"#04395e\"/>\n",
                        mx + 2.0,
                        ty - 15.0,
                        mw - 4.0
                    ));
                }
                let fg = if disabled.is_some() { "#6b6b6b" } else { "#e0e0e0" };
                body.push_str(&format!(
                    "<text x=\"{:.1}\" y=\"{ty:.1}\" fill=\"#e2c08d\">✎</text><text x=\"{:.1}\" y=\"{ty:.1}\" fill=\"{fg}\">{}</text>\n",
                    mx + 12.0,
                    mx + 34.0,
                    esc(title)
                ));
            }
            width = width.max(mx + mw);
        }
    }
    let height = 40.0 + (last - first) as f64 * LINE + 3.0 * LINE + 20.0;
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{height:.0}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" font-size=\"{FONT}\">\n<rect width=\"100%\" height=\"100%\" fill=\"#1e1e1e\"/>\n<text x=\"12\" y=\"18\" fill=\"#858585\" font-size=\"12\">examples/voting.ded — inlay hints and code actions from compart lsp (rendered from lsp/docs/session.json)</text>\n{body}</svg>\n",
        width + 24.0
    );
    std::fs::write(format!("{root}/lsp/docs/editor.svg"), svg).unwrap();
    println!("wrote lsp/docs/editor.svg and lsp/docs/session.json");
}
