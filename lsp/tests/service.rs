//! The language server driven in process through tower's `LspService`: typed JSON-RPC in,
//! responses and notifications out, snapshots of what an editor would receive.

mod common;

use common::*;
use insta::assert_snapshot;
use serde_json::{json, Value};

const URI: &str = "file:///work/tally.ded";

async fn tally() -> (Client, String) {
    let mut client = Client::initialized(json!({})).await;
    let text = fixture("tally.ded");
    let diagnostics = client.open(URI, &text).await;
    assert_eq!(diagnostics["version"], 1);
    (client, text)
}

#[tokio::test]
async fn initialize_announces_capabilities() {
    let mut client = Client::new();
    let result = client.result("initialize", json!({ "capabilities": {} })).await;
    assert_snapshot!(pretty(&result));
}

#[tokio::test]
async fn diagnostics_with_related_information() {
    let mut client = Client::initialized(json!({})).await;
    let diagnostics = client.open(URI, &fixture("tally.ded")).await;
    assert_snapshot!(pretty(&diagnostics));
}

#[tokio::test]
async fn quick_fix_from_a_diagnostic() {
    let (mut client, text) = tally().await;
    let (line, col) = find(&text, "votess", 0);
    let actions = client
        .result(
            "textDocument/codeAction",
            json!({ "textDocument": doc(URI), "range": { "start": pos(line, col), "end": pos(line, col + 6) }, "context": { "diagnostics": [] } }),
        )
        .await;
    assert_snapshot!(pretty(&actions));
    let edit = &actions[0]["edit"]["changes"][URI][0];
    assert_eq!(edit["newText"], "votes");
    // Apply it as an editor would: the error goes away.
    client
        .notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": URI, "version": 2 }, "contentChanges": [{ "range": edit["range"], "text": "votes" }] }),
        )
        .await;
    let diagnostics = client.next("textDocument/publishDiagnostics").await;
    assert_eq!(diagnostics["version"], 2);
    let codes: Vec<&str> =
        diagnostics["diagnostics"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap()).collect();
    assert!(!codes.contains(&"E0101"), "{codes:?}");
}

#[tokio::test]
async fn incremental_changes_keep_positions_in_utf16() {
    let (mut client, text) = tally().await;
    // Insert a character after the astral clef on line 7 (`/* 𝄞 */`), then delete it again.
    let (line, col) = find(&text, " */ count_by_item", 0);
    let change = |version: i32, range: Value, text: &str| json!({ "textDocument": { "uri": URI, "version": version }, "contentChanges": [{ "range": range, "text": text }] });
    let here = json!({ "start": pos(line, col), "end": pos(line, col) });
    client.notify("textDocument/didChange", change(2, here, "!")).await;
    client.next("textDocument/publishDiagnostics").await;
    let hover = client.result("textDocument/hover", at(URI, line, col + 6)).await;
    assert_eq!(hover["range"]["start"], pos(line, col + 5), "{hover}");
    let bang = json!({ "start": pos(line, col), "end": pos(line, col + 1) });
    client.notify("textDocument/didChange", change(3, bang, "")).await;
    let diagnostics = client.next("textDocument/publishDiagnostics").await;
    assert_eq!(diagnostics["version"], 3);
    let fresh = Client::initialized(json!({})).await.open(URI, &text).await;
    assert_eq!(diagnostics["diagnostics"], fresh["diagnostics"]);
}

#[tokio::test]
async fn hover_on_relation_component_and_variable() {
    let (mut client, text) = tally().await;
    let mut out = Vec::new();
    for (needle, n) in [("votes", 1), ("tally", 1), ("voter", 3), ("count_by_item", 1), ("leader", 0)] {
        let (line, col) = find(&text, needle, n);
        let hover = client.result("textDocument/hover", at(URI, line, col + 1)).await;
        out.push(format!("{needle}#{n}:\n{}", hover["contents"]["value"].as_str().unwrap_or("<none>")));
    }
    assert_snapshot!(out.join("\n\n"));
}

#[tokio::test]
async fn definition_references_and_rename() {
    let (mut client, text) = tally().await;
    let (line, col) = find(&text, "vote(", 2);
    let def = client.result("textDocument/definition", at(URI, line, col)).await;
    assert_eq!(def["range"]["start"], json!({ "line": 2, "character": 12 }));

    let mut params = at(URI, line, col);
    params["context"] = json!({ "includeDeclaration": true });
    let refs = client.result("textDocument/references", params).await;
    // Declaration, two body atoms and the async head in `client`.
    assert_eq!(refs.as_array().unwrap().len(), 4, "{refs}");

    let (cl, cc) = find(&text, "tally", 1);
    let prepare = client.result("textDocument/prepareRename", at(URI, cl, cc)).await;
    assert_eq!(prepare["start"], pos(cl, cc));
    let mut params = at(URI, cl, cc);
    params["newName"] = json!("counter");
    let edit = client.result("textDocument/rename", params).await;
    assert_snapshot!(pretty(&edit));

    // Clashes and bad names are errors.
    let mut params = at(URI, line, col);
    params["newName"] = json!("votes");
    assert!(client.request("textDocument/rename", params.clone()).await.get("error").is_some());
    params["newName"] = json!("9lives");
    assert!(client.request("textDocument/rename", params).await.get("error").is_some());
}

#[tokio::test]
async fn variable_rename_stays_in_its_rule() {
    let (mut client, text) = tally().await;
    let (line, col) = find(&text, "winner(item", 1);
    let mut params = at(URI, line, col + 7);
    params["newName"] = json!("thing");
    let edit = client.result("textDocument/rename", params).await;
    let edits = edit["changes"][URI].as_array().unwrap();
    assert_eq!(edits.len(), 2, "{edit}");
    assert!(edits.iter().all(|e| e["range"]["start"]["line"] == line));
}

#[tokio::test]
async fn outline_folding_tokens_and_lenses() {
    let (mut client, _) = tally().await;
    let symbols = client.result("textDocument/documentSymbol", json!({ "textDocument": doc(URI) })).await;
    assert_snapshot!("symbols", pretty(&symbols));
    let folds = client.result("textDocument/foldingRange", json!({ "textDocument": doc(URI) })).await;
    assert_snapshot!("folds", pretty(&folds));
    let tokens = client.result("textDocument/semanticTokens/full", json!({ "textDocument": doc(URI) })).await;
    let data = tokens["data"].as_array().unwrap();
    assert_eq!(data.len() % 5, 0);
    // A second initialize is refused.
    assert_eq!(client.request("initialize", json!({ "capabilities": {} })).await["error"]["code"], -32600);
    // Decode to (line, col, length, type) rows so the snapshot can be read.
    let types = compart_lsp::handlers::semantic_tokens::TYPES;
    let (mut line, mut col) = (0, 0);
    let rows: Vec<String> = data
        .chunks(5)
        .take(40)
        .map(|t| {
            let (dl, dc, len, ty) =
                (t[0].as_u64().unwrap(), t[1].as_u64().unwrap(), t[2].as_u64().unwrap(), t[3].as_u64().unwrap());
            line += dl;
            col = if dl == 0 { col + dc } else { dc };
            format!("{line}:{col} len {len} {} mods {}", types[ty as usize].as_str(), t[4])
        })
        .collect();
    assert_snapshot!("tokens", rows.join("\n"));
}

#[tokio::test]
async fn lenses_need_an_error_free_program() {
    let mut client = Client::initialized(json!({})).await;
    let uri = "file:///work/voting.ded";
    let diagnostics = client.open(uri, &example("voting.ded")).await;
    let errors = diagnostics["diagnostics"].as_array().unwrap().iter().filter(|d| d["severity"] == 1).count();
    assert_eq!(errors, 0, "{diagnostics}");
    let lenses = client.result("textDocument/codeLens", json!({ "textDocument": doc(uri) })).await;
    assert_snapshot!(pretty(&lenses));
    // With an error, no lenses: running would only fail.
    let (mut client, _) = tally().await;
    let lenses = client.result("textDocument/codeLens", json!({ "textDocument": doc(URI) })).await;
    assert_eq!(lenses, json!([]));
}

#[tokio::test]
async fn inlay_hints_show_inferred_types() {
    let (mut client, _) = tally().await;
    let hints = client
        .result(
            "textDocument/inlayHint",
            json!({ "textDocument": doc(URI), "range": { "start": pos(0, 0), "end": pos(20, 0) } }),
        )
        .await;
    assert_snapshot!(pretty(&hints));
}

#[tokio::test]
async fn completion_of_relations_and_columns() {
    let (mut client, text) = tally().await;
    // Inside `count_by_item(` in the winner rule: the relation's columns, the second one first.
    let (line, col) = find(&text, "item, n), n > 2", 0);
    let items = client.result("textDocument/completion", at(URI, line, col + 6)).await;
    let labels: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} [{}] {}",
                i["label"].as_str().unwrap(),
                i["sortText"].as_str().unwrap_or(""),
                i["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_snapshot!("columns", labels.join("\n"));
    // At the start of a body item: relation names of this component first.
    let (line, col) = find(&text, "vote(item, who)", 0);
    let items = client.result("textDocument/completion", at(URI, line, col)).await;
    let first: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["sortText"].as_str().unwrap().starts_with('0'))
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    assert_snapshot!("relations", first.join(", "));
}

#[tokio::test]
async fn formatting_whole_document_or_error() {
    let mut client = Client::initialized(json!({})).await;
    let uri = "file:///work/messy.ded";
    client.open(uri, "component c {\ntable t(x: int)\n   t(1).\n}\n").await;
    let edits = client
        .result(
            "textDocument/formatting",
            json!({ "textDocument": doc(uri), "options": { "tabSize": 4, "insertSpaces": true } }),
        )
        .await;
    assert_snapshot!(pretty(&edits));
    let bad = "file:///work/bad.ded";
    client.open(bad, "component c {\ntable t(x: int\n").await;
    let response = client
        .request(
            "textDocument/formatting",
            json!({ "textDocument": doc(bad), "options": { "tabSize": 4, "insertSpaces": true } }),
        )
        .await;
    assert_eq!(response["error"]["code"], -32803, "{response}");
}

#[tokio::test]
async fn bad_requests_are_errors_not_crashes() {
    let (mut client, _) = tally().await;
    // A line past the end.
    let response = client.request("textDocument/hover", at(URI, 999, 0)).await;
    assert_eq!(response["error"]["code"], -32602, "{response}");
    // A column past the end of a line is the line's end (per the specification), not an error.
    assert!(client.request("textDocument/hover", at(URI, 0, 9999)).await.get("result").is_some());
    // A document that is not open.
    let response = client.request("textDocument/hover", at("file:///nope.ded", 0, 0)).await;
    assert_eq!(response["error"]["code"], -32602);
    // Unknown method.
    let response = client.request("compart/nope", json!({})).await;
    assert_eq!(response["error"]["code"], -32601);
    // Missing parameters.
    let response = client.request("textDocument/hover", json!({ "textDocument": doc(URI) })).await;
    assert_eq!(response["error"]["code"], -32602);
    // Edits to a closed document, stale versions and out-of-range edits are logged and ignored.
    client.drain();
    client
        .notify("textDocument/didChange", json!({ "textDocument": { "uri": "file:///closed.ded", "version": 2 }, "contentChanges": [{ "text": "x" }] }))
        .await;
    client
        .notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": URI, "version": 1 }, "contentChanges": [{ "text": "x" }] }),
        )
        .await;
    let far = json!({ "start": pos(500, 0), "end": pos(500, 1) });
    client
        .notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": URI, "version": 7 }, "contentChanges": [{ "range": far, "text": "x" }] }),
        )
        .await;
    let mut logs = Vec::new();
    for _ in 0..3 {
        logs.push(client.next("window/logMessage").await["message"].as_str().unwrap().to_string());
    }
    assert_snapshot!(logs.join("\n"));
    // The server still answers, at the old version.
    let symbols = client.result("textDocument/documentSymbol", json!({ "textDocument": doc(URI) })).await;
    assert!(!symbols.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn commands_validate_arguments() {
    let mut client = Client::initialized(json!({ "compartPath": "/nonexistent/compart" })).await;
    let response =
        client.request("workspace/executeCommand", json!({ "command": "compart.fly", "arguments": [] })).await;
    assert_eq!(response["error"]["code"], -32602);
    let response =
        client.request("workspace/executeCommand", json!({ "command": "compart.run", "arguments": [42] })).await;
    assert_eq!(response["error"]["code"], -32602);
    // Neither open nor on disk.
    let simulate_x = json!({ "command": "compart.simulate", "arguments": ["file:///nonexistent/x.ded"] });
    let response = client.request("workspace/executeCommand", simulate_x.clone()).await;
    assert!(response["error"]["message"].as_str().unwrap().contains("cannot read"), "{response}");
    // Open (its buffer is what runs), but without a deployment file.
    client.open("file:///nonexistent/x.ded", "component c {}\n").await;
    let response = client.request("workspace/executeCommand", simulate_x).await;
    assert!(response["error"]["message"].as_str().unwrap().contains("no deployment file"), "{response}");
    let voting = format!("file://{}/../examples/voting.ded", env!("CARGO_MANIFEST_DIR"));
    let response = client
        .request("workspace/executeCommand", json!({ "command": "compart.simulate", "arguments": [voting] }))
        .await;
    assert_eq!(response["error"]["code"], -32803, "{response}");
    assert!(response["error"]["message"].as_str().unwrap().contains("cannot start"));
}

async fn voting() -> (Client, String) {
    let mut client = Client::initialized(json!({})).await;
    let text = example("voting.ded");
    client.open(VOTING, &text).await;
    (client, text)
}

const VOTING: &str = "file:///work/examples/voting.ded";

#[tokio::test]
async fn scaling_classes_as_inlay_hints() {
    let (mut client, text) = voting().await;
    let hints = client
        .result(
            "textDocument/inlayHint",
            json!({ "textDocument": doc(VOTING), "range": { "start": pos(0, 0), "end": pos(999, 0) } }),
        )
        .await;
    let lines: Vec<&str> = text.lines().collect();
    let rows: Vec<String> = hints
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let (line, col) = (
                h["position"]["line"].as_u64().unwrap() as usize,
                h["position"]["character"].as_u64().unwrap() as usize,
            );
            let label = h["label"].as_str().unwrap();
            let source: String = lines[line].chars().take(col).collect();
            format!(
                "{:>3}: {}{}",
                line + 1,
                source.trim_start(),
                if label.starts_with(':') { label.to_string() } else { format!("  {label}") }
            )
        })
        .collect();
    assert_snapshot!(rows.join("\n"));
    // The tooltip explains the component's class.
    let leader = hints.as_array().unwrap().iter().find(|h| h["label"] == "⟨partitioned by id⟩").unwrap();
    assert!(leader["tooltip"]["value"].as_str().unwrap().contains("aggregates `count`"), "{leader}");
}

#[tokio::test]
async fn hover_explains_the_component_class() {
    let (mut client, text) = voting().await;
    let (line, col) = find(&text, "component leader", 0);
    let hover = client.result("textDocument/hover", at(VOTING, line, col + 11)).await;
    assert_snapshot!(hover["contents"]["value"].as_str().unwrap());
}

#[tokio::test]
async fn decouple_and_partition_code_actions() {
    let (mut client, text) = voting().await;
    // The broadcast rule: decoupling it is allowed (functional), and leader can be partitioned.
    let (line, col) = find(&text, "ballot@p(id", 0);
    let actions = client
        .result(
            "textDocument/codeAction",
            json!({ "textDocument": doc(VOTING), "range": { "start": pos(line, col), "end": pos(line, col) }, "context": { "diagnostics": [] } }),
        )
        .await;
    let titles: Vec<String> = actions
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} [{}]{}",
                a["title"].as_str().unwrap(),
                a["kind"].as_str().unwrap(),
                a["disabled"]["reason"].as_str().map(|r| format!(" disabled: {r}")).unwrap_or_default()
            )
        })
        .collect();
    assert_snapshot!("voting_actions", titles.join("\n"));
    // Choosing it runs the command that checks the rewrite before applying it (tests/lsp_stdio.rs
    // runs it with the real binary); here, the rewrite it names.
    let decouple = &actions[0];
    assert!(decouple.get("edit").is_none(), "{decouple}");
    assert_eq!(decouple["command"]["command"], "compart.applyRewrite");
    let data = &decouple["command"]["arguments"][0];
    assert_eq!(data["rewrite"], "decouple");
    let analysis = compart_analysis::analyze(&text);
    let rules: Vec<compart_analysis::model::RuleId> = data["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| compart_analysis::model::RuleId(r.as_u64().unwrap() as u32))
        .collect();
    let new_text = compart_analysis::rewrite::decouple(&analysis, "leader", &rules, data["name"].as_str().unwrap())
        .unwrap()
        .new_text;
    assert!(new_text.contains("component leader_ballot"), "{new_text}");
    // Applying it yields a program without errors.
    let end = find(&format!("{text}\u{0}"), "\u{0}", 0);
    client
        .notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": VOTING, "version": 2 }, "contentChanges": [{ "range": { "start": pos(0, 0), "end": pos(end.0, end.1) }, "text": new_text }] }),
        )
        .await;
    let diagnostics = client.next("textDocument/publishDiagnostics").await;
    assert!(diagnostics["diagnostics"].as_array().unwrap().iter().all(|d| d["severity"] != 1), "{diagnostics}");
}

/// The code actions on the running maximum of a component that must stay sequential: the
/// partition rewrite is refused there.
const SEQ_URI: &str = "file:///work/seq.ded";
const SEQ_TEXT: &str = "component seq {\n    input req(id: int)\n    output highest(n: int)\n    table seen(id: int)\n    seen(id) :- req(id).\n    top(max(id)) :- seen(id).\n    highest(n) :- top(n).\n}\n";

async fn sequential_max_actions(client: &mut Client) -> Value {
    let (uri, text) = (SEQ_URI, SEQ_TEXT);
    client.open(uri, text).await;
    let (line, col) = find(text, "top(max", 0);
    client
        .result(
            "textDocument/codeAction",
            json!({ "textDocument": doc(uri), "range": { "start": pos(line, col), "end": pos(line + 1, 5) }, "context": { "diagnostics": [] } }),
        )
        .await
}

#[tokio::test]
async fn refused_rewrites_are_disabled_with_a_reason() {
    let mut client = Client::initialized_with(disabled_support(), json!({})).await;
    let actions = sequential_max_actions(&mut client).await;
    let rows: Vec<String> = actions
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} | enabled: {} | {}",
                a["title"].as_str().unwrap(),
                a.get("command").is_some(),
                a["disabled"]["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_snapshot!(rows.join("\n"));
    assert!(actions.as_array().unwrap().iter().any(|a| a.get("disabled").is_some()), "{actions}");
}

/// Batching is offered on a sequential component: on Paxos' proposer it runs (it would be checked
/// when chosen), on the acceptor it is disabled with the reason (it has no requests).
#[tokio::test]
async fn batching_is_offered_on_sequential_components() {
    let mut client = Client::initialized_with(disabled_support(), json!({})).await;
    let uri = "file:///work/examples/paxos.ded";
    let text = example("paxos.ded");
    client.open(uri, &text).await;
    let mut rows = Vec::new();
    for at in ["heard_max(max(b))", "promised(max(b))"] {
        let (line, col) = find(&text, at, 0);
        let params = json!({ "textDocument": doc(uri), "range": { "start": pos(line, col), "end": pos(line, col) }, "context": { "diagnostics": [] } });
        let actions = client.result("textDocument/codeAction", params).await;
        let batch = actions
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["title"].as_str().is_some_and(|t| t.starts_with("Batch")))
            .unwrap_or_else(|| panic!("no batch action at {at}: {actions}"))
            .clone();
        rows.push(format!(
            "{} | enabled: {} | {}",
            batch["title"].as_str().unwrap(),
            batch.get("command").is_some(),
            batch["disabled"]["reason"].as_str().unwrap_or("")
        ));
    }
    assert_snapshot!(rows.join("\n"));
}

/// Grid quorums are offered on a component whose nodes a rule counts: on Paxos' acceptor they
/// apply (checked when chosen), on 2PC's participant the action is disabled with the rule that
/// needs every vote; a component whose nodes nothing counts gets none.
#[tokio::test]
async fn grid_quorums_are_offered_where_nodes_are_counted() {
    let mut client = Client::initialized_with(disabled_support(), json!({})).await;
    let mut rows = Vec::new();
    for (name, at) in
        [("paxos", "promised(max(b))"), ("two_phase_commit", "vote@coord("), ("paxos", "heard_max(max(b))")]
    {
        let uri = format!("file:///work/examples/{name}.ded");
        let text = example(&format!("{name}.ded"));
        client.open(&uri, &text).await;
        let (line, col) = find(&text, at, 0);
        let params = json!({ "textDocument": doc(&uri), "range": { "start": pos(line, col), "end": pos(line, col) }, "context": { "diagnostics": [] } });
        let actions = client.result("textDocument/codeAction", params).await;
        let grid =
            actions.as_array().unwrap().iter().find(|a| a["title"].as_str().is_some_and(|t| t.starts_with("Arrange")));
        rows.push(match grid {
            Some(a) => format!(
                "{name} at {at}: {} | enabled: {} | {}",
                a["title"].as_str().unwrap(),
                a.get("command").is_some(),
                a["disabled"]["reason"].as_str().unwrap_or("")
            ),
            None => format!("{name} at {at}: no grid action"),
        });
    }
    assert_snapshot!(rows.join("\n"));
}

/// Shared proxies are offered on a stateless component with every other stateless one: enabled
/// for the two broadcasters of tests/fixtures/fanout_proxies.ded, disabled with the reason for the
/// coordinator (it receives client input); the command names both components and the new one.
#[tokio::test]
async fn shared_proxies_are_offered_between_stateless_components() {
    let mut client = Client::initialized_with(disabled_support(), json!({})).await;
    let uri = "file:///work/tests/fixtures/fanout_proxies.ded";
    let text = std::fs::read_to_string(format!("{}/../tests/fixtures/fanout_proxies.ded", env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    client.open(uri, &text).await;
    let (line, col) = find(&text, "store@r(k, v)", 0);
    let params = json!({ "textDocument": doc(uri), "range": { "start": pos(line, col), "end": pos(line, col) }, "context": { "diagnostics": [] } });
    let actions = client.result("textDocument/codeAction", params).await;
    let shares: Vec<&Value> = actions
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["title"].as_str().is_some_and(|t| t.starts_with("Share")))
        .collect();
    let rows: Vec<String> = shares
        .iter()
        .map(|a| {
            format!(
                "{} | enabled: {} | {}",
                a["title"].as_str().unwrap(),
                a.get("command").is_some(),
                a["disabled"]["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_snapshot!(rows.join("\n"));
    let enabled = shares.iter().find(|a| a.get("command").is_some()).expect("an enabled share action");
    let data = &enabled["command"]["arguments"][0];
    assert_eq!((data["rewrite"].as_str(), data["component"].as_str()), (Some("share"), Some("put_proxy")));
    let analysis = compart_analysis::analyze(&text);
    let result = compart_analysis::rewrite::share(
        &analysis,
        "put_proxy",
        data["with"].as_str().unwrap(),
        data["name"].as_str().unwrap(),
    )
    .unwrap();
    assert!(result.new_text.contains("component put_proxy_get_proxy {"), "{}", result.new_text);
}

#[tokio::test]
async fn large_programs_check_rewrites_when_chosen() {
    let mut client = Client::initialized_with(disabled_support(), json!({})).await;
    // Past LAZY_ABOVE_LINES with comment lines: the same program, but long.
    let text = format!("{}{}", example("voting.ded"), "// filler\n".repeat(1600));
    client.open(VOTING, &text).await;
    let (line, col) = find(&text, "ballot@p(id", 0);
    let params = json!({ "textDocument": doc(VOTING), "range": { "start": pos(line, col), "end": pos(line, col) }, "context": { "diagnostics": [] } });
    let actions = client.result("textDocument/codeAction", params.clone()).await;
    let actions = actions.as_array().unwrap();
    // Decouple the rule, make its broadcast thrifty, partition the component.
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert!(actions.iter().all(|a| a.get("edit").is_none() && a["command"]["command"] == "compart.applyRewrite"));
    // No voting.toml beside this URI, and the client cannot create files: the title says so.
    assert_eq!(actions[2]["title"], "Partition `leader` by `id` (program only: no voting.toml to update)");
    // Resolving changes nothing: the command carries the rewrite.
    let resolved = client.result("codeAction/resolve", actions[0].clone()).await;
    assert_eq!(resolved["command"], actions[0]["command"]);
    // After an edit the offered action is stale: running it is an error, not a stale edit.
    client
        .notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": VOTING, "version": 2 }, "contentChanges": [{ "range": { "start": pos(0, 0), "end": pos(0, 0) }, "text": "\n" }] }),
        )
        .await;
    let command = &actions[2]["command"];
    let response = client
        .request(
            "workspace/executeCommand",
            json!({ "command": command["command"], "arguments": command["arguments"] }),
        )
        .await;
    assert!(response["error"]["message"].as_str().unwrap().contains("changed"), "{response}");

    // A sequential component: the partition action is disabled with the reason, without a rewrite.
    let uri = "file:///work/seq_long.ded";
    let seq = format!(
        "component seq {{\n    input req(id: int)\n    output highest(n: int)\n    table seen(id: int)\n    seen(id) :- req(id).\n    top(max(id)) :- seen(id).\n    highest(n) :- top(n).\n}}\n{}",
        "// filler\n".repeat(1600)
    );
    client.open(uri, &seq).await;
    let actions = client
        .result("textDocument/codeAction", json!({ "textDocument": doc(uri), "range": { "start": pos(5, 6), "end": pos(5, 6) }, "context": { "diagnostics": [] } }))
        .await;
    let partition =
        actions.as_array().unwrap().iter().find(|a| a["title"].as_str().unwrap().starts_with("Partition")).unwrap();
    assert!(partition["disabled"]["reason"].as_str().unwrap().contains("cannot be partitioned"), "{partition}");
}

#[tokio::test]
async fn refused_rewrites_are_left_out_for_clients_without_disabled_support() {
    // Neovim 0.7 declares no codeAction.disabledSupport: it would list a refused action as
    // choosable. It gets only the actions that can run, each with its command.
    let mut client = Client::initialized(json!({})).await;
    let actions = sequential_max_actions(&mut client).await;
    let actions = actions.as_array().unwrap();
    let titles: Vec<&str> = actions.iter().map(|a| a["title"].as_str().unwrap()).collect();
    assert_eq!(
        titles,
        ["Decouple these rules into a new component `seq_top` (program only: no seq.toml to update)"],
        "{actions:?}"
    );
    assert!(actions.iter().all(|a| a.get("disabled").is_none() && a["command"]["command"] == "compart.applyRewrite"));
    // Why `seq` cannot be partitioned is still in its hover.
    let (line, col) = find(SEQ_TEXT, "seq", 0);
    let hover = client.result("textDocument/hover", at(SEQ_URI, line, col + 1)).await;
    let value = hover["contents"]["value"].as_str().unwrap();
    assert!(value.contains("aggregate `max` over every `seen` fact"), "{value}");
}

mod rewrite_edits {
    //! The WorkspaceEdit a checked rewrite makes (`scaling::rewrite_edit`): the program's changed
    //! regions and the deployment file beside it, in one edit.

    use compart_analysis::rewrite;
    use compart_lsp::documents::{Documents, Snapshot};
    use compart_lsp::handlers::edits::Beside;
    use compart_lsp::handlers::scaling::rewrite_edit;
    use compart_lsp::ls_types::Uri;
    use compart_lsp::session::Config;

    use super::*;

    const PAXOS: &str = "file:///work/examples/paxos.ded";

    fn paxos() -> Snapshot {
        Documents::default().open(PAXOS.parse().unwrap(), 3, &example("paxos.ded"))
    }

    fn beside(text: Option<String>) -> Beside {
        beside_of("paxos", text)
    }

    fn beside_of(name: &str, text: Option<String>) -> Beside {
        let uri: Uri = format!("file:///work/examples/{name}.toml").parse().unwrap();
        Beside { path: format!("/work/examples/{name}.toml").into(), uri, text }
    }

    /// VS Code and Neovim: versioned edits and file creation.
    fn editor() -> Config {
        Config { document_changes: true, create_files: true, ..Config::default() }
    }

    /// The edits of each document, by URI, from either form of WorkspaceEdit.
    fn edits_of(edit: &Value) -> Vec<(String, Value)> {
        if let Some(changes) = edit["changes"].as_object() {
            return changes.iter().map(|(uri, edits)| (uri.clone(), edits.clone())).collect();
        }
        let ops = edit["documentChanges"].as_array().unwrap();
        ops.iter()
            .filter(|op| op.get("kind").is_none())
            .map(|op| (op["textDocument"]["uri"].as_str().unwrap().to_string(), op["edits"].clone()))
            .collect()
    }

    fn decouple_p2a(snapshot: &Snapshot) -> rewrite::RewriteResult {
        let analysis = &snapshot.analysis;
        let rules = rewrite::select_rules(analysis, "proposer", &["p2a"]).unwrap();
        rewrite::decouple(analysis, "proposer", &rules, "proposer_p2a").unwrap()
    }

    #[test]
    fn a_decoupling_edits_what_changed_and_adds_the_component_to_the_deployment() {
        let snapshot = paxos();
        let result = decouple_p2a(&snapshot);
        let (edit, notes) = rewrite_edit(&snapshot, &result, Some(&beside(Some(example("paxos.toml")))), &editor());
        let edit = serde_json::to_value(&edit).unwrap();
        assert_snapshot!("paxos_decouple_edit", pretty(&edit));
        assert_eq!(
            notes,
            ["paxos.toml: [components] proposer_p2a = 2 (one per `proposer` node: each forwards to its own partner)"]
        );
        let edits = edits_of(&edit);
        assert_eq!(edits[0].0, PAXOS);
        assert_eq!(apply_lsp_edits(&example("paxos.ded"), &edits[0].1), result.new_text);
        // Minimal: far less text than the whole program.
        let written: usize = edits[0].1.as_array().unwrap().iter().map(|e| e["newText"].as_str().unwrap().len()).sum();
        assert!(written < result.new_text.len() / 2, "{written} of {}", result.new_text.len());
        let toml = apply_lsp_edits(&example("paxos.toml"), &edits[1].1);
        assert_eq!(toml, format!("{}proposer_p2a = 2\n", example("paxos.toml")));
    }

    #[test]
    fn a_partition_sets_the_components_partitions() {
        const TWO_PC: &str = "file:///work/examples/two_phase_commit.ded";
        let (text, toml) = (example("two_phase_commit.ded"), example("two_phase_commit.toml"));
        let snapshot = Documents::default().open(TWO_PC.parse().unwrap(), 1, &text);
        let result = rewrite::partition(&snapshot.analysis, "participant", None).unwrap();
        let beside = beside_of("two_phase_commit", Some(toml.clone()));
        let (edit, notes) = rewrite_edit(&snapshot, &result, Some(&beside), &editor());
        let edit = serde_json::to_value(&edit).unwrap();
        assert_snapshot!("two_phase_commit_partition_edit", pretty(&edit));
        assert_eq!(notes, ["two_phase_commit.toml: [partitions] participant = 2"]);
        let edits = edits_of(&edit);
        assert_eq!(apply_lsp_edits(&text, &edits[0].1), result.new_text);
        assert_eq!(apply_lsp_edits(&toml, &edits[1].1), format!("{toml}\n[partitions]\nparticipant = 2\n"));
    }

    /// The batching action records its batcher in `[batches]`: the program alone does not say
    /// the batch size, which the cost model needs.
    #[test]
    fn a_batching_records_its_batcher_in_the_deployment() {
        let snapshot = paxos();
        let delivery = rewrite::Delivery::Every;
        let result = rewrite::batch(&snapshot.analysis, "proposer", rewrite::DEFAULT_BATCH_SIZE, delivery).unwrap();
        let (edit, notes) = rewrite_edit(&snapshot, &result, Some(&beside(Some(example("paxos.toml")))), &editor());
        let size = rewrite::DEFAULT_BATCH_SIZE;
        let entry = format!("proposer_batcher = {{ channel = \"request_batch\", size = {size} }}");
        assert!(notes.iter().any(|n| n.contains(&format!("[batches] {entry}"))), "{notes:?}");
        let edit = serde_json::to_value(&edit).unwrap();
        let toml = apply_lsp_edits(&example("paxos.toml"), &edits_of(&edit)[1].1);
        assert!(toml.ends_with(&format!("[batches]\n{entry}\n")), "{toml}");
    }

    #[test]
    fn a_missing_deployment_is_created_only_by_clients_that_can() {
        let snapshot = paxos();
        let result = decouple_p2a(&snapshot);
        // Creates the file, then fills it: every component with one logical node.
        let (edit, notes) = rewrite_edit(&snapshot, &result, Some(&beside(None)), &editor());
        let edit = serde_json::to_value(&edit).unwrap();
        let ops = edit["documentChanges"].as_array().unwrap();
        assert_eq!(ops.len(), 3, "{edit}");
        assert_eq!(ops[0]["textDocument"], json!({ "uri": PAXOS, "version": 3 }));
        assert_eq!(
            ops[1],
            json!({ "kind": "create", "uri": "file:///work/examples/paxos.toml", "options": { "overwrite": false, "ignoreIfExists": true } })
        );
        let created = apply_lsp_edits("", &ops[2]["edits"]);
        assert!(created.contains("[components]\nproposer = 1\nproposer_p2a = 1\nacceptor = 1\n"), "{created}");
        assert_eq!(notes[0], "paxos.toml: a new file: every component with one logical node");
        // A client without resource operations: the program only, and a note saying so.
        let (edit, notes) = rewrite_edit(&snapshot, &result, Some(&beside(None)), &Config::default());
        let edit = serde_json::to_value(&edit).unwrap();
        assert_eq!(edit["changes"].as_object().unwrap().len(), 1, "{edit}");
        assert!(notes[0].contains("cannot create files"), "{notes:?}");
        // With `changes` only (no documentChanges), an existing file is edited in the same map.
        let (edit, _) =
            rewrite_edit(&snapshot, &result, Some(&beside(Some(example("paxos.toml")))), &Config::default());
        let edit = serde_json::to_value(&edit).unwrap();
        assert_eq!(edit["changes"].as_object().unwrap().len(), 2, "{edit}");
    }

    /// Every rewrite action offered on every bundled example: its edits turn the program into
    /// exactly the rewritten text.
    #[test]
    fn every_rewrite_action_edits_to_exactly_the_rewrite() {
        let dir = format!("{}/../examples", env!("CARGO_MANIFEST_DIR"));
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "ded") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let uri: Uri = format!("file://{}", path.display()).parse().unwrap();
            let snapshot = Documents::default().open(uri, 1, &text);
            let deploy = compart_lsp::handlers::scaling::DeploymentTarget::of(None, &Config::default());
            let program = &snapshot.analysis.program;
            for rule in program.rule_ids() {
                let range = program.rule(rule).range;
                for action in compart_lsp::handlers::scaling::code_actions(&snapshot, range, &deploy) {
                    let action = serde_json::to_value(&action).unwrap();
                    if action.get("disabled").is_some() {
                        continue;
                    }
                    let (result, _) =
                        compart_lsp::handlers::scaling::rewrite_for(&snapshot, &action["data"], deploy.delivery)
                            .unwrap();
                    let (edit, _) = rewrite_edit(&snapshot, &result, None, &Config::default());
                    let edit = serde_json::to_value(&edit).unwrap();
                    let edits = &edit["changes"][snapshot.uri.as_str()];
                    assert_eq!(
                        apply_lsp_edits(&text, edits),
                        result.new_text,
                        "{}: {}",
                        path.display(),
                        action["title"]
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 20, "only {checked} actions");
    }
}

/// `name kind [container] line` rows of a workspace/symbol response, with the file's name.
fn symbol_rows(symbols: &Value) -> String {
    symbols
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let file = s["location"]["uri"].as_str().unwrap().rsplit('/').next().unwrap();
            format!(
                "{} kind {} in {} at {file}:{}",
                s["name"].as_str().unwrap(),
                s["kind"],
                s["containerName"].as_str().unwrap_or("-"),
                s["location"]["range"]["start"]["line"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn workspace_symbols_across_open_documents() {
    let (mut client, _) = tally().await;
    client.open(VOTING, &example("voting.ded")).await;
    // A substring in both files, exact and prefix matches first.
    let symbols = client.result("workspace/symbol", json!({ "query": "vote" })).await;
    assert_snapshot!("workspace_symbols_vote", symbol_rows(&symbols));
    // Scattered letters, case ignored: `VLg` finds `vote_log`.
    let symbols = client.result("workspace/symbol", json!({ "query": "VLg" })).await;
    assert_eq!(symbol_rows(&symbols), "vote_log kind 23 in leader at voting.ded:29");
    // Components have no container; invariants keep theirs.
    let symbols = client.result("workspace/symbol", json!({ "query": "tally" })).await;
    assert_eq!(symbol_rows(&symbols), "tally kind 2 in - at tally.ded:1");
    // A closed document is no longer searched.
    client.notify("textDocument/didClose", json!({ "textDocument": doc(VOTING) })).await;
    let symbols = client.result("workspace/symbol", json!({ "query": "leader" })).await;
    assert_eq!(symbols, json!([]));
    // A request without a query is malformed.
    assert_eq!(client.request("workspace/symbol", json!({})).await["error"]["code"], -32602);
}

const HIGHLIGHT_URI: &str = "file:///work/highlight.ded";
const HIGHLIGHT_TEXT: &str = "component c {\n    input req(id: int, n: int) key(id)\n    table seen(id: int, m: int)\n    seen(id, m) :- req(id, n), m = n + 1.\n    out(id) :- seen(id, m), !req(id, m), m > 2.\n    out2(i) :- out(i).\n}\n";

/// `text@line:col kind` rows of a documentHighlight response (1 text, 2 read, 3 write).
async fn highlight_rows(client: &mut Client, needle: &str, n: usize) -> String {
    let (line, col) = find(HIGHLIGHT_TEXT, needle, n);
    let highlights = client.result("textDocument/documentHighlight", at(HIGHLIGHT_URI, line, col)).await;
    let lines: Vec<&str> = HIGHLIGHT_TEXT.lines().collect();
    let rows: Vec<String> = highlights
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let (l, s, e) = (
                h["range"]["start"]["line"].as_u64().unwrap() as usize,
                h["range"]["start"]["character"].as_u64().unwrap() as usize,
                h["range"]["end"]["character"].as_u64().unwrap() as usize,
            );
            let kind = ["", "text", "read", "write"][h["kind"].as_u64().unwrap() as usize];
            format!("{}@{}:{s} {kind}", &lines[l][s..e], l + 1)
        })
        .collect();
    format!("{needle}#{n}:\n{}", rows.join("\n"))
}

#[tokio::test]
async fn highlights_tell_reads_from_writes() {
    let mut client = Client::initialized(json!({})).await;
    client.open(HIGHLIGHT_URI, HIGHLIGHT_TEXT).await;
    let mut out = Vec::new();
    // A relation: declared (text), derived (write), read positively and negated (read).
    out.push(highlight_rows(&mut client, "seen", 1).await);
    // A variable bound by `=` (write), read in the head; another bound by an atom, read in a
    // negated atom and a condition.
    out.push(highlight_rows(&mut client, "m = n", 0).await);
    out.push(highlight_rows(&mut client, "m), !req", 0).await);
    // A column: its declaration, then the arguments in its position in heads and atoms.
    out.push(highlight_rows(&mut client, "m: int", 0).await);
    // Nothing under the cursor: no highlights.
    assert_eq!(client.result("textDocument/documentHighlight", at(HIGHLIGHT_URI, 0, 9)).await, Value::Null);
    assert_eq!(
        client.request("textDocument/documentHighlight", at(HIGHLIGHT_URI, 99, 0)).await["error"]["code"],
        -32602
    );
    assert_snapshot!(out.join("\n\n"));
}

#[tokio::test]
async fn signature_help_inside_atoms() {
    let (mut client, text) = tally().await;
    // In `count_by_item(item, n)`, on `n`: the second column is active.
    let (line, col) = find(&text, "item, n), n > 2", 0);
    let help = client.result("textDocument/signatureHelp", at(URI, line, col + 6)).await;
    assert_snapshot!(pretty(&help));
    // Right after the `(` of `vote(`: the first column.
    let (line, col) = find(&text, "vote(item, who)", 0);
    let help = client.result("textDocument/signatureHelp", at(URI, line, col + 5)).await;
    assert_eq!(help["activeParameter"], 0);
    assert_eq!(help["signatures"][0]["label"], "channel vote(item: int, voter: addr)");
    // A built-in aggregate.
    let (line, col) = find(&text, "count(voter)", 0);
    let help = client.result("textDocument/signatureHelp", at(URI, line, col + 6)).await;
    assert_eq!(help["signatures"][0]["label"], "count(x): int", "{help}");
    // Outside any parentheses: nothing.
    assert_eq!(client.result("textDocument/signatureHelp", at(URI, 1, 0)).await, Value::Null);
}

#[tokio::test]
async fn selection_expands_along_the_tree() {
    let (mut client, text) = tally().await;
    // On `voter` in the body of the first rule, and on the component name `client`.
    let (l1, c1) = find(&text, "voter).\n", 0);
    let (l2, c2) = find(&text, "client {", 0);
    let response = client
        .result(
            "textDocument/selectionRange",
            json!({ "textDocument": doc(URI), "positions": [pos(l1, c1 + 2), pos(l2, c2)] }),
        )
        .await;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for mut step in response.as_array().unwrap().iter() {
        let mut rows = Vec::new();
        loop {
            let (s, e) = (&step["range"]["start"], &step["range"]["end"]);
            let (sl, el) = (s["line"].as_u64().unwrap() as usize, e["line"].as_u64().unwrap() as usize);
            let first: String = lines[sl].chars().skip(s["character"].as_u64().unwrap() as usize).take(40).collect();
            rows.push(format!("{}:{}-{}:{} {first}", sl + 1, s["character"], el + 1, e["character"]));
            match step.get("parent") {
                Some(parent) => step = parent,
                None => break,
            }
        }
        out.push(rows.join("\n"));
    }
    assert_snapshot!(out.join("\n\n"));
    let bad = json!({ "textDocument": doc(URI), "positions": [pos(0, 0), pos(999, 0)] });
    assert_eq!(client.request("textDocument/selectionRange", bad).await["error"]["code"], -32602);
}

#[tokio::test]
async fn range_formatting_touches_only_the_selected_items() {
    let mut client = Client::initialized(json!({})).await;
    let uri = "file:///work/messy_range.ded";
    let text = "component c {\ntable   t(x:int)\n  t(1).\n      u(x):-t(x).\n}\ncomponent d {\n  v(x :- t(x).\n}\n";
    client.open(uri, text).await;
    let options = json!({ "tabSize": 4, "insertSpaces": true });
    // Lines 3-4 of `c`: the fact and the rule, not the declaration; `d`'s error does not matter.
    let params =
        json!({ "textDocument": doc(uri), "range": { "start": pos(2, 3), "end": pos(3, 8) }, "options": options });
    let edits = client.result("textDocument/rangeFormatting", params).await;
    assert_snapshot!(pretty(&edits));
    // A range over the broken rule is refused, like whole-document formatting.
    let params =
        json!({ "textDocument": doc(uri), "range": { "start": pos(6, 2), "end": pos(6, 3) }, "options": options });
    let response = client.request("textDocument/rangeFormatting", params).await;
    assert_eq!(response["error"]["code"], -32803, "{response}");
    assert!(response["error"]["message"].as_str().unwrap().contains("line 7"), "{response}");
    // A range past the end is malformed.
    let params =
        json!({ "textDocument": doc(uri), "range": { "start": pos(0, 0), "end": pos(99, 0) }, "options": options });
    assert_eq!(client.request("textDocument/rangeFormatting", params).await["error"]["code"], -32602);
}

#[tokio::test]
async fn semantic_token_deltas_apply_to_the_previous_result() {
    let (mut client, text) = tally().await;
    let full = client.result("textDocument/semanticTokens/full", json!({ "textDocument": doc(URI) })).await;
    let first_id = full["resultId"].as_str().unwrap().to_string();
    // Type a new rule into the middle of the file.
    let (line, _) = find(&text, "    seen(item)", 0);
    let change = json!({ "textDocument": { "uri": URI, "version": 2 }, "contentChanges": [{ "range": { "start": pos(line, 0), "end": pos(line, 0) }, "text": "    late(item) :- votes(item, _).\n" }] });
    client.notify("textDocument/didChange", change).await;
    client.next("textDocument/publishDiagnostics").await;
    let params = json!({ "textDocument": doc(URI), "previousResultId": first_id });
    let delta = client.result("textDocument/semanticTokens/full/delta", params).await;
    let edits = delta["edits"].as_array().unwrap_or_else(|| panic!("{delta}"));
    assert_eq!(edits.len(), 1, "{delta}");
    let mut data: Vec<Value> = full["data"].as_array().unwrap().clone();
    let (start, count) =
        (edits[0]["start"].as_u64().unwrap() as usize, edits[0]["deleteCount"].as_u64().unwrap() as usize);
    let inserted = edits[0]["data"].as_array().cloned().unwrap_or_default();
    // Only the tokens from the new line to the next one change (the next token's line delta).
    assert!(inserted.len() <= 5 * 6, "{delta}");
    data.splice(start..start + count, inserted);
    let fresh = client.result("textDocument/semanticTokens/full", json!({ "textDocument": doc(URI) })).await;
    assert_eq!(Value::Array(data), fresh["data"]);
    assert_ne!(delta["resultId"], json!(first_id));
    // An id that is not the last one sent gets every token.
    let params = json!({ "textDocument": doc(URI), "previousResultId": first_id });
    let again = client.result("textDocument/semanticTokens/full/delta", params).await;
    assert_eq!(again["data"], fresh["data"], "{again}");
}

#[tokio::test]
async fn hover_on_keywords_operators_and_built_ins() {
    let uri = "file:///work/words.ded";
    let text = "component c partitioned by id {\n    input req(id: int, n: int) key(id)\n    channel ack(id: int)\n    table seen(id: int)\n    seen(id) :- req(id, _).\n    total(id, count(n)) :- req(id, n).\n    ack@a(id) :~ req(id, _), nodes(\"c\", a), a != self.\n    m(id, h) :- seen(id), h = hash(id).\n    delete seen(id) :- ack(id).\n}\n";
    let mut client = Client::initialized(json!({})).await;
    client.open(uri, text).await;
    let mut out = Vec::new();
    for (needle, n, shift) in [
        ("component", 0, 0),
        ("partitioned", 0, 2),
        ("by", 0, 1),
        ("input", 0, 0),
        ("key(", 0, 0),
        ("int", 0, 1),
        (":-", 0, 1),
        (":~", 0, 0),
        ("count", 0, 5), // at the end of the word
        ("nodes", 0, 2),
        ("self", 0, 1),
        ("hash", 0, 0),
        ("delete", 0, 3),
    ] {
        let (line, col) = find(text, needle, n);
        let hover = client.result("textDocument/hover", at(uri, line, col + shift)).await;
        let value = hover["contents"]["value"].as_str().unwrap_or("<none>");
        out.push(format!(
            "{needle} @{}:{}\n{value}",
            hover["range"]["start"]["line"], hover["range"]["start"]["character"]
        ));
    }
    assert_snapshot!(out.join("\n\n"));
    // A program's own names keep their own hover, and punctuation has none.
    let (line, col) = find(text, "seen(id) :-", 0);
    let hover = client.result("textDocument/hover", at(uri, line, col + 1)).await;
    assert!(hover["contents"]["value"].as_str().unwrap().contains("table seen(id: int)"), "{hover}");
    let (line, col) = find(text, "{", 0);
    assert_eq!(client.result("textDocument/hover", at(uri, line, col)).await, Value::Null);
}

#[tokio::test]
async fn completion_after_at_offers_the_bodys_addresses() {
    let (mut client, text) = tally().await;
    let (line, col) = find(&text, "@leader", 0);
    let items = client.result("textDocument/completion", at(URI, line, col + 1)).await;
    let rows: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} [{}] {}",
                i["label"].as_str().unwrap(),
                i["sortText"].as_str().unwrap(),
                i["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(rows, ["leader [0leader] leader: addr", "self [2self] self: addr"]);
}

#[tokio::test]
async fn references_of_a_column_are_its_argument_positions() {
    let (mut client, text) = tally().await;
    // `voter` of `channel vote(item: int, voter: addr)`.
    let (line, col) = find(&text, "voter: addr", 0);
    let mut params = at(URI, line, col + 1);
    params["context"] = json!({ "includeDeclaration": true });
    let refs = client.result("textDocument/references", params.clone()).await;
    let lines: Vec<&str> = text.lines().collect();
    let shown: Vec<String> = refs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let (l, s, e) = (
                r["range"]["start"]["line"].as_u64().unwrap() as usize,
                r["range"]["start"]["character"].as_u64().unwrap() as usize,
                r["range"]["end"]["character"].as_u64().unwrap() as usize,
            );
            let chars: Vec<u16> = lines[l].encode_utf16().collect();
            format!("{}:{s} {}", l + 1, String::from_utf16(&chars[s..e]).unwrap())
        })
        .collect();
    // The declaration, the two body atoms of `vote` and the async head that sends it.
    assert_eq!(shown, ["3:28 voter", "7:37 voter", "10:29 who", "15:19 self"]);
    params["context"] = json!({ "includeDeclaration": false });
    assert_eq!(client.result("textDocument/references", params).await.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn renaming_a_built_in_is_refused_with_the_reason() {
    let (mut client, text) = tally().await;
    for (needle, word) in [("count(voter)", "count"), ("nodes(", "nodes"), ("self)", "self")] {
        let (line, col) = find(&text, needle, 0);
        let prepare = client.request("textDocument/prepareRename", at(URI, line, col + 1)).await;
        assert_eq!(prepare["error"]["code"], -32803, "{prepare}");
        let message = prepare["error"]["message"].as_str().unwrap();
        assert_eq!(message, format!("`{word}` is built into the language and cannot be renamed"));
        let mut params = at(URI, line, col + 1);
        params["newName"] = json!("mine");
        let rename = client.request("textDocument/rename", params).await;
        assert_eq!(rename["error"]["message"], message, "{rename}");
    }
    // Punctuation is not a built-in: nothing to rename, no error.
    let (line, col) = find(&text, " :- ", 0);
    assert_eq!(client.result("textDocument/prepareRename", at(URI, line, col + 1)).await, Value::Null);
}

/// Thrifty broadcast is offered on a rule that broadcasts: on Paxos' p2a it runs (it would be
/// checked when chosen), on voting's ballot it is disabled with the rule and atom that need every
/// vote; on a rule that sends to one node it is not offered at all.
#[tokio::test]
async fn thrifty_broadcast_is_offered_on_broadcasts() {
    let mut client = Client::initialized_with(disabled_support(), json!({})).await;
    let mut rows = Vec::new();
    for (uri, name, at) in [
        ("file:///work/examples/paxos.ded", "paxos.ded", "p2a@a(self"),
        ("file:///work/examples/paxos.ded", "paxos.ded", "p2b@p(self"),
        (VOTING, "voting.ded", "ballot@p(id"),
    ] {
        let text = example(name);
        client.open(uri, &text).await;
        let (line, col) = find(&text, at, 0);
        let params = json!({ "textDocument": doc(uri), "range": { "start": pos(line, col), "end": pos(line, col) }, "context": { "diagnostics": [] } });
        let actions = client.result("textDocument/codeAction", params).await;
        let thrifty: Vec<&Value> = actions
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["title"].as_str().is_some_and(|t| t.starts_with("Send")))
            .collect();
        rows.push(match thrifty.as_slice() {
            [] => format!("{at}: none"),
            [a] => {
                if a.get("command").is_some() {
                    assert_eq!(a["command"]["arguments"][0]["rewrite"], "thrifty");
                }
                format!(
                    "{at}: {} | enabled: {} | {}",
                    a["title"].as_str().unwrap(),
                    a.get("command").is_some(),
                    a["disabled"]["reason"].as_str().unwrap_or("")
                )
            }
            more => panic!("several thrifty actions: {more:?}"),
        });
    }
    assert_snapshot!(rows.join("\n"));
}
