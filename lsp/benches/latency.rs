//! Editor latency on a large program: time from `didChange` to the published diagnostics, and to
//! the inlay-hint response (type hints + scaling classes), on a generated 5,000-line program.
//!
//!     cargo bench -p compart-lsp --bench latency            # 5,000 lines, 200 edits
//!     LINES=20000 EDITS=50 cargo bench -p compart-lsp --bench latency
//!
//! Then a rule is typed one character at a time (the component has a syntax error until its `.`).
//! Prints p50/p95/max in milliseconds. The goal is p95 < 50 ms at 5,000 lines.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower::{Service, ServiceExt};
use tower_lsp_server::jsonrpc::Request;

/// One voting-style component (leader + participant pair) with distinct names: ~30 lines.
fn unit(i: usize) -> String {
    format!(
        "// unit {i}: a leader that collects one vote per participant
component leader{i} {{
    input   request{i}(id: int, payload: string) key(id)
    output  reply{i}(id: int, payload: string)
    channel vote{i}(id: int, voter: addr)
    table   pending{i}(id: int, payload: string) key(id)
    table   votes{i}(id: int, voter: addr)

    pending{i}(id, payload) :- request{i}(id, payload).
    ballot{i}@p(id, payload, self) :~ request{i}(id, payload), nodes(\"participant{i}\", p).
    votes{i}(id, voter) :- vote{i}(id, voter).
    members{i}(count(p)) :- nodes(\"participant{i}\", p).
    tally{i}(id, count(voter)) :- votes{i}(id, voter).
    done{i}(id, payload) :- pending{i}(id, payload), tally{i}(id, n), members{i}(n).
    reply{i}(id, payload) :- done{i}(id, payload).
    delete pending{i}(id, payload) :- done{i}(id, payload).
    delete votes{i}(id, voter) :- votes{i}(id, voter), done{i}(id, _).
    big{i}(id) :- tally{i}(id, n), n > {i} + 1000.

    invariant bounded{i}(id) :- tally{i}(id, n), members{i}(m), n > m.
}}

component participant{i} {{
    channel ballot{i}(id: int, payload: string, sender: addr)
    vote{i}@sender(id, self) :~ ballot{i}(id, _, sender).
}}

"
    )
}

fn program(lines: usize) -> String {
    let mut text = String::new();
    let mut i = 0;
    while text.lines().count() < lines {
        text.push_str(&unit(i));
        i += 1;
    }
    text
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<44} n={:<4} p50 {:>7.2} ms   p95 {:>7.2} ms   max {:>7.2} ms",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.95),
        percentile(&samples, 1.0)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let lines: usize = std::env::var("LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let edits: usize = std::env::var("EDITS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let text = program(lines);
    let line_count = text.lines().count();
    println!("program: {line_count} lines, {} bytes, {edits} edits", text.len());

    // Where the time goes, outside the server: parse, analyse, classify.
    let t = Instant::now();
    let syntax = compart_analysis::SyntaxTree::parse(text.as_str());
    let parse = t.elapsed();
    let t = Instant::now();
    let analysis = compart_analysis::analyze_syntax(syntax.clone());
    let analyze = t.elapsed();
    let at = text.find("+ 1000.").unwrap();
    let t = Instant::now();
    let edited = syntax.edit(compart_analysis::TextRange::new(at + 2, at + 2), "7");
    let reparse = t.elapsed();
    let t = Instant::now();
    let ctx = compart_analysis::scaling::Context::new(&analysis.program);
    let context = t.elapsed();
    let t = Instant::now();
    let first = compart_analysis::model::ComponentId(0);
    let _ = ctx.verdict(first, &analysis.program.component(first).rules);
    let one_verdict = t.elapsed();
    let t = Instant::now();
    let _ = compart_analysis::scaling::classify(&analysis.program);
    let classify = t.elapsed();
    drop(edited);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "parse {:.1} ms, incremental reparse {:.1} ms, analyze {:.1} ms, scaling Context::new {:.1} ms, one component verdict {:.2} ms, classify {:.1} ms",
        ms(parse), ms(reparse), ms(analyze), ms(context), ms(one_verdict), ms(classify)
    );

    let (mut service, socket) = compart_lsp::service();
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let (mut requests, _) = socket.split();
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            let _ = tx.send(serde_json::to_value(m).unwrap());
        }
    });
    let mut id = 0;
    let mut call = async |service: &mut tower_lsp_server::LspService<compart_lsp::Backend>,
                          method: &str,
                          params: Value,
                          is_request: bool| {
        let mut b = Request::build(method.to_string()).params(params);
        if is_request {
            id += 1;
            b = b.id(id);
        }
        service.ready().await.unwrap().call(b.finish()).await.unwrap()
    };
    // Like VS Code: code action edits can be resolved later, refused actions are shown disabled.
    let capabilities = json!({ "textDocument": { "codeAction": { "resolveSupport": { "properties": ["edit"] }, "disabledSupport": true } } });
    call(&mut service, "initialize", json!({ "capabilities": capabilities }), true).await;
    call(&mut service, "initialized", json!({}), false).await;
    let uri = "file:///bench/big.ded";
    let started = Instant::now();
    call(
        &mut service,
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "compart", "version": 1, "text": text } }),
        false,
    )
    .await;
    loop {
        let m = rx.recv().await.unwrap();
        if m["method"] == "textDocument/publishDiagnostics" {
            break;
        }
    }
    println!("didOpen -> diagnostics: {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);

    // Edits in the middle of the file: type a digit into a rule's constant, then delete it again.
    let target_line =
        text.lines().enumerate().filter(|(_, l)| l.contains("+ 1000.")).map(|(i, _)| i).nth(line_count / 60).unwrap();
    let col = text.lines().nth(target_line).unwrap().find("1000").unwrap() as u32;
    let mut to_diagnostics = Vec::new();
    let mut to_hints_visible = Vec::new();
    let mut to_hints_full = Vec::new();
    for edit in 0..edits {
        let version = edit as i32 + 2;
        let change = if edit % 2 == 0 {
            json!({ "range": { "start": { "line": target_line, "character": col }, "end": { "line": target_line, "character": col } }, "text": "7" })
        } else {
            json!({ "range": { "start": { "line": target_line, "character": col }, "end": { "line": target_line, "character": col + 1 } }, "text": "" })
        };
        let t0 = Instant::now();
        call(
            &mut service,
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": [change] }),
            false,
        )
        .await;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.unwrap().unwrap();
            if m["method"] == "textDocument/publishDiagnostics" && m["params"]["version"] == version {
                break;
            }
        }
        to_diagnostics.push(t0.elapsed());
        // What an editor asks for after a change: the hints of the visible screen...
        let visible = json!({ "start": { "line": target_line.saturating_sub(30), "character": 0 }, "end": { "line": target_line + 30, "character": 0 } });
        let t1 = Instant::now();
        let r = call(
            &mut service,
            "textDocument/inlayHint",
            json!({ "textDocument": { "uri": uri }, "range": visible }),
            true,
        )
        .await;
        to_hints_visible.push(t0.elapsed());
        assert!(serde_json::to_value(r).unwrap()["result"].as_array().is_some_and(|a| !a.is_empty()));
        let _ = t1;
        // ...and, every 10th edit, of the whole file (a fresh version: the scaling report is reused).
        if edit % 10 == 0 {
            let whole =
                json!({ "start": { "line": 0, "character": 0 }, "end": { "line": line_count + 1, "character": 0 } });
            let t2 = Instant::now();
            call(
                &mut service,
                "textDocument/inlayHint",
                json!({ "textDocument": { "uri": uri }, "range": whole }),
                true,
            )
            .await;
            to_hints_full.push(t2.elapsed());
        }
    }
    // Code actions at the edited rule (listed lazily at this size), then resolving the decoupling.
    let mut code_actions = Vec::new();
    let mut resolves = Vec::new();
    for i in 0..6 {
        let here = json!({ "start": { "line": target_line, "character": col }, "end": { "line": target_line, "character": col } });
        let t = Instant::now();
        let r = call(
            &mut service,
            "textDocument/codeAction",
            json!({ "textDocument": { "uri": uri }, "range": here, "context": { "diagnostics": [] } }),
            true,
        )
        .await;
        code_actions.push(t.elapsed());
        let actions = serde_json::to_value(r).unwrap()["result"].clone();
        assert!(actions.as_array().is_some_and(|a| a.len() >= 2), "{actions}");
        if i < 3 {
            let t = Instant::now();
            let r = call(&mut service, "codeAction/resolve", actions[0].clone(), true).await;
            resolves.push(t.elapsed());
            // The rewrite comes as an edit, or as the `compart.applyRewrite` command that computes
            // and checks it when chosen (then resolving has nothing to add).
            let resolved = serde_json::to_value(r).unwrap()["result"].clone();
            assert!(resolved["edit"].is_object() || resolved["command"].is_object(), "{resolved}");
        }
    }
    // A rule typed one character at a time on a new line after the edited one: until its `.` the
    // component has a syntax error and shows its last clean classes (lsp/src/stale.rs).
    let typed = "\n    late(id, n) :- tally(id, n), n > 2.";
    let mut position = (target_line as u32, text.lines().nth(target_line).unwrap().len() as u32);
    let mut version = edits as i32 + 1;
    let mut broken_diagnostics = Vec::new();
    let mut broken_hints = Vec::new();
    for ch in typed.chars() {
        version += 1;
        let at = json!({ "line": position.0, "character": position.1 });
        position = if ch == '\n' { (position.0 + 1, 0) } else { (position.0, position.1 + 1) };
        let change = json!({ "range": { "start": at, "end": at }, "text": ch.to_string() });
        let t0 = Instant::now();
        call(
            &mut service,
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": [change] }),
            false,
        )
        .await;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.unwrap().unwrap();
            if m["method"] == "textDocument/publishDiagnostics" && m["params"]["version"] == version {
                break;
            }
        }
        broken_diagnostics.push(t0.elapsed());
        let visible = json!({ "start": { "line": target_line.saturating_sub(30), "character": 0 }, "end": { "line": target_line + 30, "character": 0 } });
        let r = call(
            &mut service,
            "textDocument/inlayHint",
            json!({ "textDocument": { "uri": uri }, "range": visible }),
            true,
        )
        .await;
        broken_hints.push(t0.elapsed());
        let hints = serde_json::to_value(r).unwrap()["result"].clone();
        let classes = hints
            .as_array()
            .map_or(0, |a| a.iter().filter(|h| h["label"].as_str().is_some_and(|l| l.starts_with('⟨'))).count());
        assert!(classes > 0, "{hints}");
    }
    report("didChange -> publishDiagnostics", to_diagnostics);
    report("didChange -> inlay hints (visible 60 lines)", to_hints_visible);
    report("inlay hints, whole file (same version)", to_hints_full);
    report("codeAction at a rule (listed, resolved later)", code_actions);
    report("codeAction/resolve of the decoupling", resolves);
    report("typing a rule: didChange -> publishDiagnostics", broken_diagnostics);
    report("typing a rule: didChange -> inlay hints (visible)", broken_hints);
}
