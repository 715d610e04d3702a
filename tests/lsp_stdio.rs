//! The real `compart lsp` binary driven over stdio, framed JSON-RPC as an editor sends it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

struct Server {
    child: Child,
    stdin: ChildStdin,
    from_server: mpsc::Receiver<Value>,
    next_id: i64,
    /// Diagnostics seen while waiting for something else, by URI and version.
    published: std::collections::HashMap<(String, i64), Value>,
}

fn read_message(reader: &mut impl BufRead) -> Option<Value> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(n) = line.strip_prefix("Content-Length: ") {
            length = n.parse().ok();
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

impl Server {
    fn start() -> Server {
        Server::start_in(&std::env::temp_dir())
    }

    /// The server with its temporary files (the lenses' runs) under `tmp`.
    fn start_in(tmp: &std::path::Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_compart"))
            .arg("lsp")
            .env("TMPDIR", tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start compart lsp");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, from_server) = mpsc::channel();
        std::thread::spawn(move || {
            while let Some(message) = read_message(&mut stdout) {
                if tx.send(message).is_err() {
                    break;
                }
            }
        });
        Server { child, stdin, from_server, next_id: 0, published: Default::default() }
    }

    fn send_raw(&mut self, body: &[u8]) {
        write!(self.stdin, "Content-Length: {}\r\n\r\n", body.len()).unwrap();
        self.stdin.write_all(body).unwrap();
        self.stdin.flush().unwrap();
    }

    fn send(&mut self, message: Value) {
        self.send_raw(message.to_string().as_bytes());
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Wait for a message matching `pred`, answering the server's own requests with null.
    fn wait(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
        loop {
            let message = self
                .from_server
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            if message["method"] == "textDocument/publishDiagnostics" {
                let params = &message["params"];
                let key = (params["uri"].as_str().unwrap_or("").to_string(), params["version"].as_i64().unwrap_or(-1));
                self.published.insert(key, params["diagnostics"].clone());
            }
            if pred(&message) {
                return message;
            }
            if message.get("method").is_some() && message.get("id").is_some() {
                let id = message["id"].clone();
                self.send(json!({ "jsonrpc": "2.0", "id": id, "result": null }));
            }
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        self.wait(method, |m| m["id"] == id && m.get("method").is_none())
    }

    fn notification(&mut self, method: &str) -> Value {
        self.wait(method, |m| m["method"] == method)["params"].clone()
    }

    fn initialize(&mut self) {
        self.initialize_with(json!({}));
    }

    fn initialize_with(&mut self, capabilities: Value) {
        let result =
            self.request("initialize", json!({ "processId": null, "rootUri": null, "capabilities": capabilities }));
        assert_eq!(result["result"]["serverInfo"]["name"], "compart", "{result}");
        self.notify("initialized", json!({}));
    }

    /// shutdown + exit: the process ends with status 0.
    fn stop(mut self) {
        let response = self.request("shutdown", Value::Null);
        assert!(response.get("error").is_none(), "{response}");
        self.notify("exit", Value::Null);
        let status = wait_with_timeout(&mut self.child);
        assert!(status.success(), "{status:?}");
    }
}

fn wait_with_timeout(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("compart lsp did not exit");
}

fn example(name: &str) -> (String, String) {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    (format!("file://{path}"), text)
}

#[test]
fn a_session_over_stdio() {
    let mut server = Server::start();
    server.initialize();
    let (uri, text) = example("voting.ded");
    server.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "compart", "version": 1, "text": text } }),
    );
    let diagnostics = server.notification("textDocument/publishDiagnostics");
    assert_eq!(diagnostics["version"], 1);
    assert!(diagnostics["diagnostics"].as_array().unwrap().iter().all(|d| d["severity"] != 1), "{diagnostics}");

    // Hover on `vote_log` in `vote_log(id, voter) :- vote(id, voter).`
    let line = text.lines().position(|l| l.trim_start().starts_with("vote_log(id, voter) :-")).unwrap() as u32;
    let hover = server.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": 6 } }),
    );
    let contents = hover["result"]["contents"]["value"].as_str().unwrap().to_string();
    assert!(contents.contains("table vote_log(id: int, voter: addr)"), "{contents}");

    let hints = server.request(
        "textDocument/inlayHint",
        json!({ "textDocument": { "uri": uri }, "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 999, "character": 0 } } }),
    );
    let labels: Vec<String> =
        hints["result"].as_array().unwrap().iter().map(|h| h["label"].as_str().unwrap_or("").to_string()).collect();
    assert!(labels.iter().any(|l| l == ": int"), "{labels:?}");

    // An incremental edit that breaks a rule: `vote(id, voter)` -> `vote(id, voter, 1)`.
    let col = text.lines().nth(line as usize).unwrap().find("vote(id, voter)").unwrap() as u32 + 14;
    server.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [
            { "range": { "start": { "line": line, "character": col }, "end": { "line": line, "character": col } }, "text": ", 1" }
        ] }),
    );
    let diagnostics = server.notification("textDocument/publishDiagnostics");
    assert_eq!(diagnostics["version"], 2);
    let arity = diagnostics["diagnostics"].as_array().unwrap().iter().find(|d| d["code"] == "E0201").cloned();
    let arity = arity.unwrap_or_else(|| panic!("{diagnostics}"));
    assert_eq!(arity["range"]["start"]["line"], line);
    server.stop();
}

#[test]
fn malformed_messages_get_errors_and_the_server_survives() {
    let mut server = Server::start();
    server.initialize();
    // Not JSON at all.
    server.send_raw(b"{this is not json");
    let parse_error = server.wait("parse error", |m| m.get("error").is_some());
    assert_eq!(parse_error["error"]["code"], -32700, "{parse_error}");
    // JSON, but not JSON-RPC.
    server.send(json!({ "hello": "world" }));
    let invalid = server.wait("invalid request", |m| m.get("error").is_some());
    assert_eq!(invalid["error"]["code"], -32600, "{invalid}");
    // A request with a bad id type, and a frame without Content-Length.
    server.send(json!({ "jsonrpc": "2.0", "id": [1], "method": "shutdown" }));
    assert_eq!(server.wait("bad id", |m| m.get("error").is_some())["error"]["code"], -32600);
    server.stdin.write_all(b"Content-Type: x\r\n\r\n").unwrap();
    assert_eq!(server.wait("bad header", |m| m.get("error").is_some())["error"]["code"], -32700);
    // Unknown method; wrong parameters; a document that is not open.
    assert_eq!(server.request("compart/unknown", json!({}))["error"]["code"], -32601);
    assert_eq!(server.request("textDocument/hover", json!({ "nope": 1 }))["error"]["code"], -32602);
    let response = server.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": "file:///not/open.ded" }, "position": { "line": 0, "character": 0 } }),
    );
    assert_eq!(response["error"]["code"], -32602);
    // Still serving.
    server.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": "file:///x.ded", "languageId": "compart", "version": 1, "text": "component c {" } }),
    );
    let diagnostics = server.notification("textDocument/publishDiagnostics");
    assert!(!diagnostics["diagnostics"].as_array().unwrap().is_empty());
    server.stop();
}

#[test]
fn closing_stdin_ends_the_server() {
    let mut server = Server::start();
    server.initialize();
    drop(server.stdin);
    let status = wait_with_timeout(&mut server.child);
    // Without `exit` first, the specification asks for exit code 1; a clean 0 is also accepted.
    assert!(status.code().is_some(), "{status:?}");
}

#[test]
fn simulate_command_streams_progress_and_reports() {
    let mut server = Server::start();
    let result = server.request(
        "initialize",
        json!({ "processId": null, "rootUri": null, "capabilities": { "window": { "workDoneProgress": true } } }),
    );
    assert!(result.get("result").is_some());
    server.notify("initialized", json!({}));
    let (uri, text) = example("voting.ded");
    server.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "compart", "version": 1, "text": text } }),
    );
    server.notification("textDocument/publishDiagnostics");
    server.next_id += 1;
    let id = server.next_id;
    server.send(json!({ "jsonrpc": "2.0", "id": id, "method": "workspace/executeCommand",
        "params": { "command": "compart.simulate", "arguments": [uri, ["--schedules", "3"]] } }));
    // Everything until the response: the progress token request, $/progress, log and show messages.
    let mut seen = Vec::new();
    let response = server.wait("executeCommand", |m| {
        if let Some(method) = m["method"].as_str() {
            let kind = m["params"]["value"]["kind"].as_str().unwrap_or("");
            seen.push(format!("{method} {kind}").trim().to_string());
        }
        m["id"] == id && m.get("method").is_none()
    });
    let result = &response["result"];
    assert_eq!(result["success"], true, "{response}");
    assert!(result["summary"].as_str().unwrap().contains("no violation"), "{result}");
    for expected in [
        "window/workDoneProgress/create",
        "$/progress begin",
        "$/progress report",
        "$/progress end",
        "window/logMessage",
        "window/showMessage",
    ] {
        assert!(seen.iter().any(|s| s == expected), "missing {expected} in {seen:?}");
    }
    server.stop();
}

#[test]
fn pipelined_changes_and_requests_stay_consistent() {
    let mut server = Server::start();
    server.initialize();
    let uri = "file:///pipelined.ded";
    let text = "component c {\n    table t(x: int)\n    t(1).\n}\n";
    server.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "compart", "version": 1, "text": text } }),
    );
    // Each round inserts a comment line at the top and, without waiting, asks where `t` is
    // declared: the answer must already account for every inserted line.
    let mut ids = Vec::new();
    for round in 0..20u32 {
        server.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri, "version": round + 2 }, "contentChanges": [
                { "range": { "start": { "line": 0, "character": 0 }, "end": { "line": 0, "character": 0 } }, "text": "// é𝄞\n" }
            ] }),
        );
        server.next_id += 1;
        let id = server.next_id;
        server.send(json!({ "jsonrpc": "2.0", "id": id, "method": "textDocument/definition",
            "params": { "textDocument": { "uri": uri }, "position": { "line": round + 3, "character": 4 } } }));
        ids.push((id, round));
    }
    for (id, round) in ids {
        let response = server.wait("definition", |m| m["id"] == id && m.get("method").is_none());
        let range = &response["result"]["range"];
        assert_eq!(range["start"], json!({ "line": round + 2, "character": 10 }), "round {round}: {response}");
    }
    server.stop();
}

#[test]
fn simulate_reports_an_invariant_violation() {
    let mut server = Server::start();
    server.initialize();
    // A Paxos whose quorum is one acceptor: agreement breaks under reordering.
    let root = env!("CARGO_MANIFEST_DIR");
    let uri = format!("file://{root}/tests/fixtures/paxos_quorum_of_one.ded");
    let deploy = format!("{root}/examples/paxos.toml");
    let response = server.request(
        "workspace/executeCommand",
        json!({ "command": "compart.simulate", "arguments": [uri, ["--deploy", deploy, "--schedules", "20"]] }),
    );
    let result = &response["result"];
    assert_eq!(result["success"], false, "{response}");
    let summary = result["summary"].as_str().unwrap();
    assert!(summary.contains("agreement") && summary.contains("violat"), "{summary}");
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// The client's side of positions, written independently of the server: LSP lines end at `\n`,
// `\r\n` or `\r` only, columns are UTF-16 code units, a column past a line's end is its end.

/// Byte offsets where lines start.
fn line_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let (mut starts, mut i) = (vec![0], 0);
    while i < bytes.len() {
        i += match (bytes[i], bytes.get(i + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\r' | b'\n', _) => 1,
            _ => {
                i += 1;
                continue;
            }
        };
        starts.push(i);
    }
    starts
}

/// The text of each line, without its line break.
fn client_lines(text: &str) -> Vec<&str> {
    let starts = line_starts(text);
    (0..starts.len())
        .map(|l| {
            let end = match starts.get(l + 1) {
                None => text.len(),
                Some(&next) if text[..next].ends_with("\r\n") => next - 2,
                Some(&next) => next - 1,
            };
            &text[starts[l]..end]
        })
        .collect()
}

fn utf16_len(s: &str) -> u32 {
    s.encode_utf16().count() as u32
}

/// The byte offset of a position of `text` (which must have that line).
fn client_offset(text: &str, line: u32, character: u32) -> usize {
    let start = line_starts(text)[line as usize];
    let content = client_lines(text)[line as usize];
    let mut units = 0;
    for (i, ch) in content.char_indices() {
        if units >= character {
            return start + i;
        }
        units += ch.len_utf16() as u32;
    }
    start + content.len()
}

fn client_end(text: &str) -> Value {
    let lines = client_lines(text);
    json!({ "line": lines.len() - 1, "character": utf16_len(lines[lines.len() - 1]) })
}

/// Apply one LSP change (a range and its new text) as an editor does.
fn client_apply(text: &mut String, range: &Value, new_text: &str) {
    let at =
        |p: &Value| client_offset(text, p["line"].as_u64().unwrap() as u32, p["character"].as_u64().unwrap() as u32);
    let (start, end) = (at(&range["start"]), at(&range["end"]));
    text.replace_range(start..end.max(start), new_text);
}

/// Whether `position` names a place in `text` an editor could put a cursor on: an existing line,
/// a column within it, not inside a surrogate pair.
fn is_position_in(text: &str, position: &Value) -> bool {
    let (Some(line), Some(character)) = (position["line"].as_u64(), position["character"].as_u64()) else {
        return false;
    };
    let lines = client_lines(text);
    let Some(content) = lines.get(line as usize) else { return false };
    let mut units = 0u64;
    for ch in content.chars() {
        if units == character {
            return true;
        }
        units += ch.len_utf16() as u64;
    }
    units == character
}

/// Every position and range in a response must belong to the client's text.
fn check_positions(text: &str, value: &Value, context: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if matches!(key.as_str(), "start" | "end" | "position") && v.get("line").is_some() {
                    assert!(is_position_in(text, v), "{context}: {key} {v} is not in the document:\n{text:?}");
                }
                check_positions(text, v, context);
            }
            if let (Some(start), Some(end)) = (map.get("startLine"), map.get("endLine")) {
                // A folding range.
                let count = client_lines(text).len() as u64;
                assert!(start.as_u64() < Some(count) && end.as_u64() < Some(count), "{context}: {value}");
            }
        }
        Value::Array(items) => items.iter().for_each(|v| check_positions(text, v, context)),
        _ => {}
    }
}

/// Semantic tokens decoded against the client's lines: each on one line, inside it.
fn check_semantic_tokens(text: &str, data: &[Value], context: &str) {
    let (mut line, mut col) = (0u64, 0u64);
    for token in data.chunks(5) {
        let (dl, ds, len) = (token[0].as_u64().unwrap(), token[1].as_u64().unwrap(), token[2].as_u64().unwrap());
        line += dl;
        col = if dl == 0 { col + ds } else { ds };
        let start = json!({ "line": line, "character": col });
        let end = json!({ "line": line, "character": col + len });
        assert!(
            len > 0 && is_position_in(text, &start) && is_position_in(text, &end),
            "{context}: token {start}..{end} is not within its line:\n{text:?}"
        );
    }
}

impl Server {
    fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "compart", "version": 1, "text": text } }),
        );
    }

    fn change(&mut self, uri: &str, version: i32, changes: Value) {
        self.notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": changes }),
        );
    }

    /// The diagnostics published for one version of one document.
    fn diagnostics(&mut self, uri: &str, version: i32) -> Value {
        if let Some(seen) = self.published.get(&(uri.to_string(), version as i64)) {
            return seen.clone();
        }
        let what = format!("diagnostics of {uri} version {version}");
        self.wait(&what, |m| {
            m["method"] == "textDocument/publishDiagnostics"
                && m["params"]["uri"] == uri
                && m["params"]["version"] == version
        })["params"]["diagnostics"]
            .clone()
    }
}

#[test]
fn completion_after_a_non_ascii_letter() {
    let mut server = Server::start();
    server.initialize();
    let uri = "file:///cafe.ded";
    server.open(uri, "component c {\n    table t(x: int)\n}\n// voir café");
    server.diagnostics(uri, 1);
    // `(` is a trigger character: typed right after `é`, even in a comment.
    let paren = json!({ "start": { "line": 3, "character": 12 }, "end": { "line": 3, "character": 12 } });
    server.change(uri, 2, json!([{ "range": paren, "text": "(" }]));
    let context = json!({ "triggerKind": 2, "triggerCharacter": "(" });
    let response = server.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": uri }, "position": { "line": 3, "character": 13 }, "context": context }),
    );
    assert!(response["result"].is_array(), "{response}");
    // After an astral character, `t(` still completes the columns of `t`.
    let end = json!({ "start": { "line": 3, "character": 13 }, "end": { "line": 3, "character": 13 } });
    server.change(uri, 3, json!([{ "range": end, "text": " 𝄞t(" }]));
    let response = server.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": uri }, "position": { "line": 3, "character": 18 }, "context": context }),
    );
    let items = response["result"].as_array().unwrap_or_else(|| panic!("{response}"));
    assert!(items.iter().any(|i| i["label"] == "x" && i["preselect"] == true), "{response}");
    server.stop();
}

/// Applies `edits` (the server's text edits) to the client's copy.
fn apply_edits(text: &mut String, edits: &Value) {
    let mut edits = edits.as_array().unwrap().clone();
    // Last first, so that earlier ranges stay valid.
    edits.sort_by_key(|e| (e["range"]["start"]["line"].as_u64(), e["range"]["start"]["character"].as_u64()));
    for e in edits.iter().rev() {
        client_apply(text, &e["range"], e["newText"].as_str().unwrap());
    }
}

#[test]
fn unicode_line_separators_are_not_line_breaks() {
    let mut server = Server::start();
    server.initialize();
    let uri = "file:///separators.ded";
    // Line 1 holds U+2028, U+2029, U+0085, VT and FF: ordinary characters for LSP. Line 2 is not
    // formatted, so that Format Document answers with the text it holds.
    let mut text =
        "component c {\n    // a\u{2028}b\u{2029}c\u{85}d\u{b}e\u{c}f\n    table t(x:int)\n    t(1).\n}\n".to_string();
    server.open(uri, &text);
    server.diagnostics(uri, 1);
    // `t(1).` -> `t(1, 2).`: one column too many.
    let after_one = json!({ "start": { "line": 3, "character": 7 }, "end": { "line": 3, "character": 7 } });
    server.change(uri, 2, json!([{ "range": after_one, "text": ", 2" }]));
    client_apply(&mut text, &after_one, ", 2");
    assert!(text.contains("    t(1, 2).\n"));
    let diagnostics = server.diagnostics(uri, 2);
    let arity = diagnostics.as_array().unwrap().iter().find(|d| d["severity"] == 1);
    assert_eq!(arity.map(|d| d["range"]["start"]["line"].clone()), Some(json!(3)), "{diagnostics}");
    let definition = server.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": uri }, "position": { "line": 3, "character": 4 } }),
    );
    assert_eq!(definition["result"]["range"]["start"], json!({ "line": 2, "character": 10 }), "{definition}");
    // Format Document sends the server's text back: it must be the client's, formatted.
    let formatting = server.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 4, "insertSpaces": true } }),
    );
    let mut formatted = text.clone();
    apply_edits(&mut formatted, &formatting["result"]);
    assert_eq!(formatted, compart_analysis::fmt::format(&text).unwrap(), "{formatting}");
    // And its diagnostics are those of the same text opened afresh.
    server.open("file:///fresh.ded", &text);
    let fresh = server.diagnostics("file:///fresh.ded", 1).to_string();
    assert_eq!(fresh.replace("file:///fresh.ded", uri), diagnostics.to_string());
    server.stop();
}

#[test]
fn lone_carriage_returns_are_line_breaks() {
    let mut server = Server::start();
    server.initialize();
    let uri = "file:///cr.ded";
    let mut text = "component c {\r    // note\r    table t(x: int)\r    t(1).\r}\r".to_string();
    server.open(uri, &text);
    // The comment ends at its CR: the rest parses.
    let diagnostics = server.diagnostics(uri, 1);
    assert!(diagnostics.as_array().unwrap().iter().all(|d| d["severity"] != 1), "{diagnostics}");
    let definition = server.request(
        "textDocument/definition",
        json!({ "textDocument": { "uri": uri }, "position": { "line": 3, "character": 4 } }),
    );
    assert_eq!(definition["result"]["range"]["start"], json!({ "line": 2, "character": 10 }), "{definition}");
    let one = json!({ "start": { "line": 3, "character": 6 }, "end": { "line": 3, "character": 7 } });
    server.change(uri, 2, json!([{ "range": one, "text": "22" }]));
    client_apply(&mut text, &one, "22");
    let hover = server.request(
        "textDocument/hover",
        json!({ "textDocument": { "uri": uri }, "position": { "line": 3, "character": 4 } }),
    );
    assert_eq!(hover["result"]["range"]["end"], json!({ "line": 3, "character": 5 }), "{hover}");
    let folding = server.request("textDocument/foldingRange", json!({ "textDocument": { "uri": uri } }));
    let folds = folding["result"].as_array().unwrap();
    assert!(folds.iter().any(|f| f["startLine"] == 0 && f["endLine"] == 4), "{folding}");
    let symbols = server.request("textDocument/documentSymbol", json!({ "textDocument": { "uri": uri } }));
    assert_eq!(symbols["result"][0]["range"]["end"], json!({ "line": 4, "character": 1 }), "{symbols}");
    let formatting = server.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 4, "insertSpaces": true } }),
    );
    let mut formatted = text.clone();
    apply_edits(&mut formatted, &formatting["result"]);
    assert_eq!(formatted, "component c {\n    // note\n    table t(x: int)\n    t(22).\n}\n", "{formatting}");
    server.stop();
}

#[test]
fn bad_headers_are_logged_and_skipped() {
    let mut server = Server::start();
    server.initialize();
    // A header byte that is not UTF-8, before a request: the request is refused by its id.
    let body = json!({ "jsonrpc": "2.0", "id": 77, "method": "shutdown" }).to_string();
    let mut frame = b"X-Junk: caf\xe9\r\n".to_vec();
    frame.extend_from_slice(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    server.stdin.write_all(&frame).unwrap();
    let log = server.wait("log message", |m| m["method"] == "window/logMessage");
    assert!(log["params"]["message"].as_str().unwrap().contains("not UTF-8"), "{log}");
    let error = server.wait("error response", |m| m.get("error").is_some());
    assert_eq!((error["id"].clone(), error["error"]["code"].clone()), (json!(77), json!(-32700)), "{error}");
    // A header that is not UTF-8 and has no length: its body is lost, not the next message.
    server.stdin.write_all(b"Content-L\xffength: 2\r\n\r\n{}").unwrap();
    let error = server.wait("error response", |m| m.get("error").is_some());
    assert_eq!((error["id"].clone(), error["error"]["code"].clone()), (Value::Null, json!(-32700)), "{error}");
    // Still serving, and `shutdown` + `exit` end it with status 0.
    server.open("file:///after.ded", "component c {}");
    assert!(server.diagnostics("file:///after.ded", 1).is_array());
    server.stop();
}

/// splitmix64: a seeded, dependency-free generator, so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Pieces of inserted text: line breaks of every kind, the characters LSP does not count as line
/// breaks, non-ASCII and astral characters, and bits of the language.
const PIECES: &[&str] = &[
    "é",
    "𝄞",
    "😀",
    "\u{2028}",
    "\u{2029}",
    "\u{85}",
    "\u{b}",
    "\u{c}",
    "\r",
    "\n",
    "\r\n",
    "\r\n",
    "(",
    ")",
    ",",
    ".",
    " :- ",
    "t",
    "x",
    "  ",
    "// ",
    "/* ",
    " */",
    "\"",
    "café(",
    "vote(",
    "@",
    "1",
    "}",
    "component d {",
    "table u(a: int)",
    "u(x) :- vote_log(x, _).",
];

/// A valid program with every kind of line break and separator characters in its comments.
fn fuzz_base(rng: &mut Rng) -> String {
    let (_, voting) = example("voting.ded");
    let mut text = String::from("// « é 𝄞 😀 \u{2028} \u{2029} \u{85} \u{b} \u{c} »\n");
    for line in voting.lines() {
        text.push_str(line);
        let eol = *rng.pick(&["\n", "\r\n", "\r"]);
        text.push_str(eol);
    }
    text
}

/// A random position of `text`, on a character boundary (a column past the end now and then).
fn random_position(rng: &mut Rng, text: &str) -> Value {
    let lines = client_lines(text);
    let line = rng.below(lines.len());
    let mut columns = vec![0u32];
    for ch in lines[line].chars() {
        columns.push(columns.last().unwrap() + ch.len_utf16() as u32);
    }
    let character = if rng.chance(5) { columns.last().unwrap() + 3 } else { *rng.pick(&columns) };
    json!({ "line": line, "character": character })
}

/// The position of a byte offset of `text` (not inside a CRLF).
fn client_position(text: &str, offset: usize) -> Value {
    let line = line_starts(text).iter().filter(|&&s| s <= offset).count() - 1;
    json!({ "line": line, "character": utf16_len(&text[line_starts(text)[line]..offset]) })
}

/// A random range: a random start, and an end up to `max_span` bytes after it.
fn random_range(rng: &mut Rng, text: &str, max_span: usize) -> Value {
    let start = random_position(rng, text);
    let from = client_offset(text, start["line"].as_u64().unwrap() as u32, start["character"].as_u64().unwrap() as u32);
    let mut to = (from + rng.below(max_span + 1)).min(text.len());
    while !text.is_char_boundary(to) {
        to += 1;
    }
    // No position names the place between a CR and its LF.
    if to > from && text[..to].ends_with('\r') && text[to..].starts_with('\n') {
        to -= 1;
    }
    json!({ "start": start, "end": client_position(text, to) })
}

/// Every request kind the server answers, at a random place; the response must not be an
/// internal error and must only name places of the client's text.
fn fuzz_request(server: &mut Server, rng: &mut Rng, uri: &str, text: &str) {
    let doc = json!({ "uri": uri });
    let position = random_position(rng, text);
    let range = random_range(rng, text, 200);
    let (method, params) = match rng.below(19) {
        0 | 1 => {
            let trigger = rng
                .pick(&[None, Some("("), Some(","), Some("@")])
                .map(|c| json!({ "triggerKind": 2, "triggerCharacter": c }));
            let context = trigger.unwrap_or(json!({ "triggerKind": 1 }));
            ("textDocument/completion", json!({ "textDocument": doc, "position": position, "context": context }))
        }
        2 => ("textDocument/hover", json!({ "textDocument": doc, "position": position })),
        3 => ("textDocument/definition", json!({ "textDocument": doc, "position": position })),
        4 => (
            "textDocument/references",
            json!({ "textDocument": doc, "position": position, "context": { "includeDeclaration": true } }),
        ),
        5 => ("textDocument/prepareRename", json!({ "textDocument": doc, "position": position })),
        6 => ("textDocument/rename", json!({ "textDocument": doc, "position": position, "newName": "renamed" })),
        7 => (
            "textDocument/formatting",
            json!({ "textDocument": doc, "options": { "tabSize": 4, "insertSpaces": true } }),
        ),
        8 => ("textDocument/semanticTokens/full", json!({ "textDocument": doc })),
        9 => ("textDocument/inlayHint", json!({ "textDocument": doc, "range": range })),
        10 => (
            "textDocument/codeAction",
            json!({ "textDocument": doc, "range": range, "context": { "diagnostics": [] } }),
        ),
        11 => ("textDocument/codeLens", json!({ "textDocument": doc })),
        12 => ("textDocument/foldingRange", json!({ "textDocument": doc })),
        13 => ("textDocument/documentHighlight", json!({ "textDocument": doc, "position": position })),
        14 => ("textDocument/signatureHelp", json!({ "textDocument": doc, "position": position })),
        15 => ("textDocument/selectionRange", json!({ "textDocument": doc, "positions": [position] })),
        16 => (
            "textDocument/rangeFormatting",
            json!({ "textDocument": doc, "range": range, "options": { "tabSize": 4, "insertSpaces": true } }),
        ),
        17 => ("workspace/symbol", json!({ "query": *rng.pick(&["", "vote", "vl", "x"]) })),
        _ => ("textDocument/documentSymbol", json!({ "textDocument": doc })),
    };
    let context = format!("{method} {params}");
    let response = server.request(method, params);
    if let Some(error) = response.get("error") {
        // Refusals (a bad name, a file with syntax errors, nothing to rename) are fine; failing is not.
        let code = error["code"].as_i64().unwrap();
        assert!(code == -32602 || code == -32803, "{context}: {response}");
        return;
    }
    check_positions(text, &response["result"], &context);
    if method == "textDocument/semanticTokens/full" {
        check_semantic_tokens(text, response["result"]["data"].as_array().unwrap(), &context);
    }
}

/// What the server says about a document, with its URI taken out, to compare two documents.
fn observe(server: &mut Server, uri: &str) -> Vec<(&'static str, Value)> {
    let doc = json!({ "textDocument": { "uri": uri } });
    let whole = json!({ "start": { "line": 0, "character": 0 }, "end": { "line": 100000, "character": 0 } });
    let mut out = Vec::new();
    for (method, params) in [
        ("textDocument/semanticTokens/full", doc.clone()),
        ("textDocument/documentSymbol", doc.clone()),
        ("textDocument/foldingRange", doc.clone()),
        ("textDocument/codeLens", doc.clone()),
        ("textDocument/inlayHint", json!({ "textDocument": { "uri": uri }, "range": whole })),
        (
            "textDocument/formatting",
            json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 4, "insertSpaces": true } }),
        ),
    ] {
        let response = server.request(method, params);
        let mut shown = response.get("result").or(response.get("error")).unwrap().clone();
        // Result ids number every response: two documents' tokens never share one.
        shown.as_object_mut().map(|o| o.remove("resultId"));
        out.push((method, serde_json::from_str(&shown.to_string().replace(uri, "URI")).unwrap()));
    }
    out
}

/// Open the client's text as a new document and compare everything the server says about both.
/// While the text has errors, the edited document also shows, for its broken components, the
/// scaling hints and lenses of their last clean version (lsp/src/stale.rs), which a fresh document
/// has no history for: then what the fresh one shows must be among them, and the rest be equal.
fn compare_with_fresh(server: &mut Server, uri: &str, text: &str, round: usize) {
    let fresh = format!("file:///fresh{round}.ded");
    server.open(&fresh, text);
    let has_errors = server.diagnostics(&fresh, 1).as_array().unwrap().iter().any(|d| d["severity"] == 1);
    for ((method, edited), (_, new)) in observe(server, uri).into_iter().zip(observe(server, &fresh)) {
        let kept_through_errors = matches!(method, "textDocument/codeLens" | "textDocument/inlayHint");
        if has_errors && kept_through_errors {
            let edited = edited.as_array().unwrap();
            for item in new.as_array().unwrap() {
                assert!(edited.contains(item), "round {round}, {method}: {item} missing, text {text:?}");
            }
        } else {
            assert_eq!(edited, new, "round {round}, {method}, text {text:?}");
        }
    }
    server.notify("textDocument/didClose", json!({ "textDocument": { "uri": fresh } }));
}

#[test]
fn fuzzed_incremental_edits_keep_the_server_in_step() {
    let steps: usize = std::env::var("LSP_FUZZ_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(2500);
    let seed: u64 = std::env::var("LSP_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_c0de);
    let mut rng = Rng(seed);
    let mut server = Server::start();
    server.initialize();
    let uri = "file:///fuzz.ded";
    let mut text = fuzz_base(&mut rng);
    server.open(uri, &text);
    let mut version = 1;
    for step in 1..=steps {
        version += 1;
        let mut changes = Vec::new();
        if rng.chance(1) {
            // A full replacement now and then.
            text = fuzz_base(&mut rng);
            changes.push(json!({ "text": text }));
        }
        for _ in 0..1 + rng.below(3) {
            // Keep the document small: bigger deletions and no insertions once it grows.
            let big = text.len() > 3000;
            let range = random_range(&mut rng, &text, if big { 400 } else { 12 });
            let new_text: String =
                if big { String::new() } else { (0..rng.below(4)).map(|_| *rng.pick(PIECES)).collect() };
            client_apply(&mut text, &range, &new_text);
            changes.push(json!({ "range": range, "text": new_text }));
        }
        server.change(uri, version, Value::Array(changes));
        fuzz_request(&mut server, &mut rng, uri, &text);
        if step % 500 == 0 {
            compare_with_fresh(&mut server, uri, &text, step);
            // Back to a valid program (one incremental edit over the whole client text), then
            // Format Document applied as an editor applies it: it must format the client's text.
            version += 1;
            let whole = json!({ "start": { "line": 0, "character": 0 }, "end": client_end(&text) });
            let base = fuzz_base(&mut rng);
            client_apply(&mut text, &whole, &base);
            server.change(uri, version, json!([{ "range": whole, "text": base }]));
            let formatting = server.request(
                "textDocument/formatting",
                json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 4, "insertSpaces": true } }),
            );
            let expected = compart_analysis::fmt::format(&text).unwrap();
            let mut edits = formatting["result"].as_array().unwrap_or_else(|| panic!("{formatting}")).clone();
            edits.sort_by_key(|e| (e["range"]["start"]["line"].as_u64(), e["range"]["start"]["character"].as_u64()));
            let mut changes = Vec::new();
            for e in edits.iter().rev() {
                client_apply(&mut text, &e["range"], e["newText"].as_str().unwrap());
                changes.push(json!({ "range": e["range"], "text": e["newText"] }));
            }
            assert_eq!(text, expected, "step {step}: {formatting}");
            version += 1;
            server.change(uri, version, Value::Array(changes));
        }
    }
    // The last version's diagnostics are those of the same text opened afresh.
    let last = server.diagnostics(uri, version);
    let fresh = "file:///fresh_final.ded";
    server.open(fresh, &text);
    let expected = server.diagnostics(fresh, 1);
    assert_eq!(last.to_string(), expected.to_string().replace(fresh, uri), "text {text:?}");
    compare_with_fresh(&mut server, uri, &text, steps + 1);
    server.stop();
}

/// A copy of examples/NAME.ded (and of its deployment file, with `toml`) in a fresh directory,
/// so that edits can be applied to disk as an editor would: (directory, program path, URI, text).
fn example_copy(name: &str, toml: bool) -> (std::path::PathBuf, std::path::PathBuf, String, String) {
    // Tests run in parallel, several on the same example.
    static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("compart-lsp-stdio-{name}-{toml}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let ded = dir.join(format!("{name}.ded"));
    std::fs::copy(format!("{root}/examples/{name}.ded"), &ded).unwrap();
    if toml {
        std::fs::copy(format!("{root}/examples/{name}.toml"), dir.join(format!("{name}.toml"))).unwrap();
    }
    let text = std::fs::read_to_string(&ded).unwrap();
    (dir, ded.clone(), format!("file://{}", ded.display()), text)
}

/// Runs the code action whose title starts with `title` at the line of `at`: the server checks
/// the rewrite with `compart verify`, then sends workspace/applyEdit (answered `applied`), then
/// answers the command. Returns (the edit, the command's result).
fn run_rewrite_action(server: &mut Server, uri: &str, text: &str, at: &str, title: &str) -> (Value, Value) {
    let line = text[..text.find(at).unwrap()].matches('\n').count();
    let actions = server.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": uri }, "range": { "start": { "line": line, "character": 6 }, "end": { "line": line, "character": 6 } }, "context": { "diagnostics": [] } }),
    );
    let action = actions["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["title"].as_str().unwrap().starts_with(title))
        .cloned()
        .unwrap_or_else(|| panic!("{actions}"));
    assert!(action.get("edit").is_none(), "the edit only comes after the check: {action}");
    let command = &action["command"];
    server.next_id += 1;
    let id = server.next_id;
    server.send(json!({ "jsonrpc": "2.0", "id": id, "method": "workspace/executeCommand", "params": { "command": command["command"], "arguments": command["arguments"] } }));
    // The check runs first; the edit request comes after it, then the command's answer.
    let mut edit = None;
    let response = loop {
        let message = server.from_server.recv_timeout(Duration::from_secs(300)).expect("the check finishes");
        if message["method"] == "workspace/applyEdit" {
            edit = Some(message["params"]["edit"].clone());
            server.send(json!({ "jsonrpc": "2.0", "id": message["id"], "result": { "applied": true } }));
        } else if message["id"] == id && message.get("method").is_none() {
            break message;
        } else if message.get("method").is_some() && message.get("id").is_some() {
            server.send(json!({ "jsonrpc": "2.0", "id": message["id"], "result": null }));
        }
    };
    assert!(response.get("error").is_none(), "{response}");
    assert_eq!(response["result"]["applied"], true, "{response}");
    (edit.expect("the server asked the client to apply the rewrite"), response["result"].clone())
}

/// What the Run lens checks before it starts a cluster: the deployment file beside the program
/// parses, for that program, with the runtime's own parser.
fn run_lens_check(ded: &std::path::Path) -> compart_runtime::Deployment {
    let text = std::fs::read_to_string(ded).unwrap();
    let analysis = compart_analysis::analyze(&text);
    assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
    let toml = std::fs::read_to_string(compart_analysis::deployment::beside(ded)).unwrap();
    compart_runtime::Deployment::from_toml(&toml, &analysis.program).unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

/// Choosing a rewrite action runs `compart.applyRewrite`: the server checks the rewritten program
/// against the buffer's with `compart verify` (the bounded refinement check, with the deployment
/// file beside the program) and only then asks the client to apply the edit: the program's changed
/// regions and, in the same edit, the deployment file with the new component. A client without
/// `documentChanges` gets both in `changes`.
#[test]
fn rewrite_actions_are_checked_then_edit_the_program_and_its_deployment() {
    let (dir, ded, uri, text) = example_copy("voting", true);
    let toml_path = dir.join("voting.toml");
    let toml_uri = format!("file://{}", toml_path.display());
    let mut server = Server::start();
    server.initialize();
    server.open(&uri, &text);
    let (edit, result) = run_rewrite_action(&mut server, &uri, &text, "ballot@p(id", "Decouple");
    let check = result["check"].as_str().unwrap();
    assert!(check.contains("no difference"), "{check}");
    let program_edits = &edit["changes"][&uri];
    let whole = program_edits.as_array().unwrap().iter().map(|e| e["newText"].as_str().unwrap().len()).sum::<usize>();
    assert!(whole < text.len() / 2, "the edits cover only what changed: {edit}");
    let mut new_text = text.clone();
    apply_edits(&mut new_text, program_edits);
    assert!(new_text.contains("component leader_ballot"), "{new_text}");
    let mut toml = std::fs::read_to_string(&toml_path).unwrap();
    apply_edits(&mut toml, &edit["changes"][&toml_uri]);
    assert!(toml.ends_with("leader_ballot = 1\n"), "{toml}");
    assert_eq!(
        result["deployment"][0],
        "voting.toml: [components] leader_ballot = 1 (one per `leader` node: each forwards to its own partner)"
    );
    std::fs::write(&ded, &new_text).unwrap();
    std::fs::write(&toml_path, &toml).unwrap();
    let deployment = run_lens_check(&ded);
    assert_eq!(deployment.logical_nodes().count(), 5);
    server.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The issue's case: Decouple on Paxos, then Run. Without a deployment file beside the program, a
/// client that can create files (VS Code, Neovim) gets it created in the same edit, after the
/// versioned edit of the program.
#[test]
fn decoupling_without_a_deployment_file_creates_one_the_run_lens_accepts() {
    let (dir, ded, uri, text) = example_copy("paxos", false);
    let toml_uri = format!("file://{}", dir.join("paxos.toml").display());
    let mut server = Server::start();
    server.initialize_with(json!({ "workspace": { "workspaceEdit": { "documentChanges": true, "resourceOperations": ["create", "rename", "delete"] } } }));
    server.open(&uri, &text);
    let at = "p2a@a(self, b, s, id, payload)";
    assert!(text.contains(at), "the rule to decouple");
    let (edit, result) =
        run_rewrite_action(&mut server, &uri, &text, at, "Decouple this rule into a new component `proposer_p2a`");
    let ops = edit["documentChanges"].as_array().unwrap_or_else(|| panic!("{edit}"));
    assert_eq!(ops.len(), 3, "{edit}");
    assert_eq!(ops[0]["textDocument"], json!({ "uri": uri, "version": 1 }));
    assert_eq!(ops[1]["kind"], "create");
    assert_eq!(ops[1]["uri"], toml_uri);
    assert_eq!(ops[2]["textDocument"]["uri"], toml_uri);
    let mut new_text = text.clone();
    apply_edits(&mut new_text, &ops[0]["edits"]);
    let mut toml = String::new();
    apply_edits(&mut toml, &ops[2]["edits"]);
    std::fs::write(&ded, &new_text).unwrap();
    std::fs::write(dir.join("paxos.toml"), &toml).unwrap();
    let deployment = run_lens_check(&ded);
    let names: Vec<&str> = deployment.logical_nodes().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["proposer/0", "proposer_p2a/0", "acceptor/0"], "{toml}");
    assert!(result["deployment"][0].as_str().unwrap().contains("a new file"), "{result}");

    // The name is chosen afterwards by renaming: the deployment file follows, in the same edit.
    server.change(
        &uri,
        2,
        json!([{ "range": { "start": { "line": 0, "character": 0 }, "end": client_end(&text) }, "text": new_text }]),
    );
    server.diagnostics(&uri, 2);
    let line = new_text[..new_text.find("component proposer_p2a").unwrap()].matches('\n').count();
    let response = server.request(
        "textDocument/rename",
        json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": 12 }, "newName": "p2a_sender" }),
    );
    let ops = response["result"]["documentChanges"].as_array().unwrap_or_else(|| panic!("{response}"));
    assert_eq!(ops.len(), 2, "{response}");
    assert_eq!(ops[0]["textDocument"], json!({ "uri": uri, "version": 2 }));
    apply_edits(&mut new_text, &ops[0]["edits"]);
    assert_eq!(ops[1]["textDocument"]["uri"], toml_uri);
    apply_edits(&mut toml, &ops[1]["edits"]);
    assert!(toml.contains("\np2a_sender = 1\n") && !toml.contains("proposer_p2a"), "{toml}");
    std::fs::write(&ded, &new_text).unwrap();
    std::fs::write(dir.join("paxos.toml"), &toml).unwrap();
    let names: Vec<String> = run_lens_check(&ded).logical_nodes().map(|n| n.name.clone()).collect();
    assert_eq!(names, ["proposer/0", "p2a_sender/0", "acceptor/0"]);
    server.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Renaming a component renames it in the deployment file too (`[components]`, `[workload]
/// entry`), in the same edit; built-in names are refused both ways, with a reason.
#[test]
fn renames_reach_the_deployment_and_refuse_built_ins() {
    let (dir, ded, uri, text) = example_copy("voting", true);
    let toml_path = dir.join("voting.toml");
    let toml_uri = format!("file://{}", toml_path.display());
    let original_toml = format!(
        "{}\n[workload]\nentry = \"leader\" # where requests go\n",
        std::fs::read_to_string(&toml_path).unwrap()
    );
    std::fs::write(&toml_path, &original_toml).unwrap();
    let mut server = Server::start();
    server.initialize();
    server.open(&uri, &text);
    let line = text[..text.find("component leader").unwrap()].matches('\n').count();
    let position = json!({ "line": line, "character": 12 });
    let response = server.request(
        "textDocument/rename",
        json!({ "textDocument": { "uri": uri }, "position": position, "newName": "coordinator" }),
    );
    let edit = &response["result"];
    let mut new_text = text.clone();
    apply_edits(&mut new_text, &edit["changes"][&uri]);
    assert!(new_text.contains("component coordinator") && !new_text.contains("\"leader\""), "{new_text}");
    let mut toml = original_toml.clone();
    apply_edits(&mut toml, &edit["changes"][&toml_uri]);
    assert_eq!(toml, original_toml.replace("leader = 1", "coordinator = 1").replace("\"leader\"", "\"coordinator\""));
    std::fs::write(&ded, &new_text).unwrap();
    std::fs::write(&toml_path, &toml).unwrap();
    run_lens_check(&ded);

    // `count` in `count(voter)` is built in: not renamable, and no name may become `count` or `nodes`.
    let (cl, cc) = {
        let offset = text.find("count(voter)").unwrap();
        (text[..offset].matches('\n').count(), offset - text[..offset].rfind('\n').unwrap() - 1)
    };
    for (method, extra) in
        [("textDocument/prepareRename", json!({})), ("textDocument/rename", json!({ "newName": "tally" }))]
    {
        let mut params = json!({ "textDocument": { "uri": uri }, "position": { "line": cl, "character": cc + 1 } });
        params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let response = server.request(method, params);
        let message = response["error"]["message"].as_str().unwrap_or_else(|| panic!("{response}"));
        assert!(message.contains("`count` is built into the language"), "{message}");
    }
    for name in ["count", "max", "nodes", "self", "hash"] {
        let response = server.request(
            "textDocument/rename",
            json!({ "textDocument": { "uri": uri }, "position": position, "newName": name }),
        );
        let message = response["error"]["message"].as_str().unwrap_or_else(|| panic!("{name}: {response}"));
        assert!(message.contains(&format!("`{name}` is built into the language")), "{message}");
    }
    server.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Code actions on a component that cannot be partitioned, from a client that declares these
/// capabilities: (title, disabled reason, command) of each.
fn actions_on_a_sequential_component(capabilities: Value) -> Vec<(String, Option<String>, Option<String>)> {
    let mut server = Server::start();
    server.initialize_with(capabilities);
    let uri = "file:///work/seq.ded";
    let text = "component seq {\n    input req(id: int)\n    output highest(n: int)\n    table seen(id: int)\n    seen(id) :- req(id).\n    top(max(id)) :- seen(id).\n    highest(n) :- top(n).\n}\n";
    server.open(uri, text);
    server.diagnostics(uri, 1);
    let actions = server.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": uri }, "range": { "start": { "line": 5, "character": 4 }, "end": { "line": 6, "character": 5 } }, "context": { "diagnostics": [] } }),
    );
    let rows = actions["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{actions}"))
        .iter()
        .map(|a| {
            let text = |v: &Value| v.as_str().map(str::to_string);
            (a["title"].as_str().unwrap().to_string(), text(&a["disabled"]["reason"]), text(&a["command"]["command"]))
        })
        .collect();
    server.stop();
    rows
}

#[test]
fn refused_actions_only_go_to_clients_that_show_them_disabled() {
    // Neovim 0.7 declares no codeAction.disabledSupport and would offer a refused action as
    // choosable (then fail): it gets only the actions that run.
    let plain = actions_on_a_sequential_component(json!({}));
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert!(plain[0].0.starts_with("Decouple these rules"), "{plain:?}");
    assert_eq!((plain[0].1.as_deref(), plain[0].2.as_deref()), (None, Some("compart.applyRewrite")));

    // VS Code declares it: the refused partitions come too, disabled with their reason.
    let vscode =
        actions_on_a_sequential_component(json!({ "textDocument": { "codeAction": { "disabledSupport": true } } }));
    assert_eq!(vscode.len(), 4, "{vscode:?}");
    assert_eq!(vscode[0], plain[0]);
    for (title, reason, command) in &vscode[1..3] {
        assert!(title.starts_with("Partition `seq`"), "{vscode:?}");
        assert!(reason.as_deref().is_some_and(|r| r.contains("cannot be partitioned")), "{vscode:?}");
        assert!(command.is_none(), "{vscode:?}");
    }
    // Its input has no key: batching is refused with that reason.
    let (title, reason, command) = &vscode[3];
    assert!(title.starts_with("Batch `seq`"), "{vscode:?}");
    assert!(reason.as_deref().is_some_and(|r| r.contains("no input with a one-column int key")), "{vscode:?}");
    assert!(command.is_none(), "{vscode:?}");
}

/// The scaling hints (`⟨class⟩`) of a whole document, as (line, character, label).
fn scaling_hints(server: &mut Server, uri: &str) -> Vec<(u64, u64, String)> {
    let whole = json!({ "start": { "line": 0, "character": 0 }, "end": { "line": 100000, "character": 0 } });
    let hints = server.request("textDocument/inlayHint", json!({ "textDocument": { "uri": uri }, "range": whole }));
    let hints = hints["result"].as_array().unwrap_or_else(|| panic!("{hints}"));
    hints
        .iter()
        .filter_map(|h| {
            let label = h["label"].as_str()?;
            let p = &h["position"];
            label
                .starts_with('⟨')
                .then(|| (p["line"].as_u64().unwrap(), p["character"].as_u64().unwrap(), label.into()))
        })
        .collect()
}

/// Typing a rule into one component, one character at a time: until its final `.` the component
/// has a syntax error, and every other component keeps its classes, the typed one its last clean
/// classes, the file its lenses, and no warning appears about rules the error could not touch.
#[test]
fn typing_a_rule_keeps_the_last_good_analysis() {
    let mut server = Server::start();
    server.initialize_with(json!({ "textDocument": { "codeAction": { "disabledSupport": true } } }));
    let (uri, text) = example("two_phase_commit.ded");
    server.open(&uri, &text);
    assert!(server.diagnostics(&uri, 1).as_array().unwrap().is_empty());
    let lines: Vec<&str> = text.lines().collect();
    let participant = lines.iter().position(|l| l.starts_with("component participant")).unwrap() as u64;
    let anchor = "    n_participants(count(p)) :- nodes(\"participant\", p).";
    let line = lines.iter().position(|l| *l == anchor).unwrap() as u32;
    let clean = scaling_hints(&mut server, &uri);
    let in_coordinator =
        |hints: &[(u64, u64, String)], shift: u64| hints.iter().filter(|h| h.0 < participant + shift).count();
    let clean_coordinator = in_coordinator(&clean, 0);
    assert!(clean.len() >= 20 && clean_coordinator >= 10, "{clean:?}");
    let lenses = |server: &mut Server| {
        let lenses = server.request("textDocument/codeLens", json!({ "textDocument": { "uri": uri } }));
        lenses["result"].as_array().unwrap().len()
    };
    assert_eq!(lenses(&mut server), 2);

    let typed = "\n    late(txn, op) :- begin(txn, op), !decision(txn, _).";
    let mut version = 1;
    let mut position = (line, anchor.len() as u32);
    for (i, ch) in typed.char_indices() {
        let so_far = &typed[..i + ch.len_utf8()];
        version += 1;
        let at = json!({ "line": position.0, "character": position.1 });
        server.change(&uri, version, json!([{ "range": { "start": at, "end": at }, "text": ch.to_string() }]));
        position = if ch == '\n' { (position.0 + 1, 0) } else { (position.0, position.1 + 1) };
        let done = so_far.len() == typed.len();
        let context = format!("after typing {so_far:?}");

        let diagnostics = server.diagnostics(&uri, version);
        for d in diagnostics.as_array().unwrap() {
            let at = d["range"]["start"]["line"].as_u64().unwrap();
            // The typed rule's errors, on its line or, where the parser took the next rule (two
            // lines below) for the rest of the half-typed one, there (grammar/README.md).
            let local = (u64::from(position.0)..=u64::from(position.0) + 2).contains(&at);
            let lint = ["W0001", "W0002", "W0003", "W0006"].iter().any(|c| d["code"] == *c);
            assert!(local && (!lint || done), "{context}: {d}");
        }
        let half_typed = !done && !so_far.trim().is_empty();
        assert_eq!(diagnostics.as_array().unwrap().iter().any(|d| d["severity"] == 1), half_typed, "{context}");

        // Below the typed line, everything moved down by one line.
        let hints = scaling_hints(&mut server, &uri);
        let participant_hints: Vec<_> =
            hints.iter().filter(|h| h.0 > participant).map(|h| (h.0 - 1, h.1, h.2.clone())).collect();
        let clean_participant: Vec<_> = clean.iter().filter(|h| h.0 >= participant).cloned().collect();
        assert_eq!(participant_hints, clean_participant, "{context}");
        let expected = if done { clean_coordinator + 1 } else { clean_coordinator };
        assert_eq!(in_coordinator(&hints, 1), expected, "{context}: {hints:?}");
        assert_eq!(lenses(&mut server), 2, "{context}");
    }

    // Halfway through another rule, the coordinator's rewrites are refused with the reason.
    version += 1;
    let at = json!({ "line": position.0, "character": position.1 });
    server.change(&uri, version, json!([{ "range": { "start": at, "end": at }, "text": "\n    bar(" }]));
    let error_line = position.0 + 2;
    server.diagnostics(&uri, version);
    let cursor = json!({ "line": line, "character": 6 });
    let actions = server.request(
        "textDocument/codeAction",
        json!({ "textDocument": { "uri": uri }, "range": { "start": cursor, "end": cursor }, "context": { "diagnostics": [] } }),
    );
    let actions = actions["result"].as_array().unwrap_or_else(|| panic!("{actions}"));
    assert!(!actions.is_empty());
    for action in actions {
        let reason = action["disabled"]["reason"].as_str().unwrap_or_else(|| panic!("{action}"));
        assert_eq!(reason, format!("fix the syntax error at {error_line}:5 first"), "{action}");
    }
    server.stop();
}

/// The (line, UTF-16 column) of the n-th occurrence of `needle`, as an LSP position.
fn position_of(text: &str, needle: &str, n: usize, shift: u32) -> Value {
    let offset = text.match_indices(needle).nth(n).unwrap_or_else(|| panic!("no {needle} #{n}")).0;
    let line = text[..offset].matches('\n').count();
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    json!({ "line": line, "character": utf16_len(&text[start..offset]) + shift })
}

#[test]
fn navigation_and_editing_requests_over_stdio() {
    let mut server = Server::start();
    server.initialize();
    let (uri, text) = example("voting.ded");
    server.open(&uri, &text);
    server.diagnostics(&uri, 1);
    let doc = json!({ "uri": uri });
    let at = |needle: &str, n: usize, shift: u32| json!({ "textDocument": doc, "position": position_of(&text, needle, n, shift) });

    // workspace/symbol: the open document's relations, with their component.
    let symbols = server.request("workspace/symbol", json!({ "query": "votelog" }))["result"].clone();
    assert_eq!(symbols[0]["name"], "vote_log", "{symbols}");
    assert_eq!(symbols[0]["containerName"], "leader");

    // documentHighlight on `vote_log`: the declaration, heads (write) and bodies (read).
    let highlights = server.request("textDocument/documentHighlight", at("vote_log(id, voter) :-", 0, 2));
    let kinds: Vec<u64> =
        highlights["result"].as_array().unwrap().iter().map(|h| h["kind"].as_u64().unwrap()).collect();
    assert_eq!(kinds, [1, 3, 2, 3, 2], "{highlights}");

    // signatureHelp in `vote(id, voter)`, on the second argument.
    let help = server.request("textDocument/signatureHelp", at("vote(id, voter)", 0, 9))["result"].clone();
    assert_eq!(help["signatures"][0]["label"], "channel vote(id: int, voter: addr)");
    assert_eq!(help["activeParameter"], 1);

    // selectionRange: each step contains the previous one.
    let params = json!({ "textDocument": doc, "positions": [position_of(&text, "vote(id, voter)", 0, 1)] });
    let mut step = server.request("textDocument/selectionRange", params)["result"][0].clone();
    let mut steps = 0;
    while let Some(parent) = step.get("parent").cloned() {
        let (inner, outer) = (&step["range"], &parent["range"]);
        let le = |a: &Value, b: &Value| {
            (a["line"].as_u64(), a["character"].as_u64()) <= (b["line"].as_u64(), b["character"].as_u64())
        };
        assert!(le(&outer["start"], &inner["start"]) && le(&inner["end"], &outer["end"]), "{step}");
        (step, steps) = (parent, steps + 1);
    }
    assert!(steps >= 4, "{steps}");

    // rangeFormatting: the example is formatted already.
    let range = json!({ "start": position_of(&text, "pending(id, payload) :-", 0, 0), "end": position_of(&text, "vote_log(id, voter) :-", 0, 0) });
    let options = json!({ "tabSize": 4, "insertSpaces": true });
    let edits = server
        .request("textDocument/rangeFormatting", json!({ "textDocument": doc, "range": range, "options": options }));
    assert_eq!(edits["result"], json!([]), "{edits}");

    // hover on the aggregate `count`.
    let hover = server.request("textDocument/hover", at("count(p)", 0, 1));
    assert!(hover["result"]["contents"]["value"]
        .as_str()
        .unwrap()
        .contains("aggregate: The number of distinct values"));

    // completion after `@`: the body's address first.
    let items = server.request("textDocument/completion", at("@p(id", 0, 1))["result"].clone();
    let first = items.as_array().unwrap().iter().min_by_key(|i| i["sortText"].as_str().unwrap().to_string()).unwrap();
    assert_eq!(first["label"], "p", "{items}");

    // references of the column `voter` of `vote_log`, without its declaration.
    let mut params = at("voter: addr)  //", 0, 1);
    params["context"] = json!({ "includeDeclaration": false });
    let refs = server.request("textDocument/references", params)["result"].clone();
    assert_eq!(refs.as_array().unwrap().len(), 4, "{refs}");

    // Renaming `count` is refused with the reason.
    let refused = server.request("textDocument/prepareRename", at("count(voter)", 0, 2));
    assert!(refused["error"]["message"].as_str().unwrap().contains("built into the language"), "{refused}");

    // Semantic tokens: a full result with an id, then the delta after an edit.
    let full = server.request("textDocument/semanticTokens/full", json!({ "textDocument": doc }))["result"].clone();
    let end_of_rule = position_of(&text, "vote_log(id, voter) :- vote(id, voter).", 0, 40);
    server.change(
        &uri,
        2,
        json!([{ "range": { "start": end_of_rule, "end": end_of_rule }, "text": " seen(id) :- vote(id, _)." }]),
    );
    server.diagnostics(&uri, 2);
    let params = json!({ "textDocument": doc, "previousResultId": full["resultId"] });
    let delta = server.request("textDocument/semanticTokens/full/delta", params)["result"].clone();
    let edit = &delta["edits"][0];
    let mut data = full["data"].as_array().unwrap().clone();
    let start = edit["start"].as_u64().unwrap() as usize;
    data.splice(
        start..start + edit["deleteCount"].as_u64().unwrap() as usize,
        edit["data"].as_array().cloned().unwrap_or_default(),
    );
    let fresh = server.request("textDocument/semanticTokens/full", json!({ "textDocument": doc }))["result"].clone();
    assert_eq!(Value::Array(data), fresh["data"]);

    // Malformed parameters are errors, not crashes.
    let bad = server.request(
        "textDocument/selectionRange",
        json!({ "textDocument": doc, "positions": [{ "line": 999, "character": 0 }] }),
    );
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let bad = server.request("textDocument/semanticTokens/full/delta", json!({ "textDocument": doc }));
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// The Run lens: the buffer's text, progress as it happens, cancellation, nothing left behind.

/// A fresh directory for one server's temporary files: its runs' processes name it in their
/// command lines, which is how these tests find them.
fn private_tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("compart-lsp-tmp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Processes whose command line mentions `path` (`compart run` and its `compart node`s).
fn processes_naming(path: &std::path::Path) -> Vec<String> {
    let needle = path.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(cmdline);
        }
    }
    found
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn nodes_of(tmp: &std::path::Path) -> usize {
    processes_naming(tmp).iter().filter(|c| c.contains(" node ")).count()
}

/// A long run of the voting example (a copy, so that its deployment can be opened): paced so
/// that it lasts minutes unless stopped.
fn start_long_run(server: &mut Server, uri: &str) -> i64 {
    server.next_id += 1;
    let id = server.next_id;
    server.send(json!({ "jsonrpc": "2.0", "id": id, "method": "workspace/executeCommand", "params": {
        "command": "compart.run",
        "arguments": [uri, ["--auto-ports", "--rate", "20", "--requests", "100000"]] } }));
    id
}

/// A copy of voting open in a server started with its own TMPDIR (under `tag`), with `caps` as
/// the client's capabilities, and a long run of it started from the Run command.
struct LongRun {
    tmp: std::path::PathBuf,
    dir: std::path::PathBuf,
    server: Server,
    id: i64,
}

fn start_long_voting_run(tag: &str, caps: Value) -> LongRun {
    let tmp = private_tmp(tag);
    let (dir, _ded, uri, text) = example_copy("voting", true);
    let mut server = Server::start_in(&tmp);
    server.initialize_with(caps);
    server.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "compart", "version": 1, "text": text } }),
    );
    let id = start_long_run(&mut server, &uri);
    LongRun { tmp, dir, server, id }
}

#[test]
fn the_run_lens_runs_the_buffer_not_the_file() {
    let (dir, _ded, uri, text) = example_copy("voting", true);
    let mut server = Server::start();
    server.initialize();
    server.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "compart", "version": 1, "text": text } }),
    );
    // An unsaved edit that makes the leader never answer: no vote count is above the participants'.
    let never = text.replace("vote_count(id, n), n_participants(n)", "vote_count(id, n), n_participants(m), n > m");
    assert_ne!(never, text);
    server.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "text": never }] }),
    );
    let args = json!([uri, ["--auto-ports", "--requests", "20", "--reply-timeout", "1"]]);
    let response = server.request("workspace/executeCommand", json!({ "command": "compart.run", "arguments": args }));
    let result = &response["result"];
    assert_eq!((result["success"].clone(), result["version"].clone()), (json!(false), json!(2)), "{response}");
    assert_eq!(result["deployment"], "disk", "{response}");
    // The deployment's buffer, unsaved, with one participant fewer; and the program as it was.
    let toml_uri = uri.replace(".ded", ".toml");
    let toml = std::fs::read_to_string(dir.join("voting.toml")).unwrap().replace("participant = 3", "participant = 2");
    server.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": toml_uri, "languageId": "toml", "version": 7, "text": toml } }),
    );
    // A buffer with a syntax error is not run: the answer says where the error is.
    server.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 3 }, "contentChanges": [{ "text": format!("{text}\nbroken(") }] }),
    );
    let response = server.request("workspace/executeCommand", json!({ "command": "compart.run", "arguments": args }));
    let error = response["error"]["message"].as_str().unwrap_or_default();
    assert!(error.starts_with("version 3 of the buffer has errors: fix the error at"), "{response}");
    server.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": uri, "version": 4 }, "contentChanges": [{ "text": text }] }),
    );
    let response = server.request("workspace/executeCommand", json!({ "command": "compart.run", "arguments": args }));
    let result = &response["result"];
    assert_eq!((result["success"].clone(), result["version"].clone()), (json!(true), json!(4)), "{response}");
    assert_eq!(result["deployment"], "buffer (version 7)", "{response}");
    let output = result["output"].to_string();
    assert!(output.contains("participant/1") && !output.contains("participant/2"), "{output}");
    server.stop();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_run_streams_progress_and_is_cancelled_from_the_progress_ui() {
    let LongRun { tmp, dir, mut server, id } =
        start_long_voting_run("cancel", json!({ "window": { "workDoneProgress": true } }));
    let create = server.wait("the progress token", |m| m["method"] == "window/workDoneProgress/create");
    let token = create["params"]["token"].clone();
    server.send(json!({ "jsonrpc": "2.0", "id": create["id"], "result": null }));
    let begin = server.wait("begin", |m| m["method"] == "$/progress" && m["params"]["token"] == token);
    assert_eq!(begin["params"]["value"]["cancellable"], true, "{begin}");
    // Replies counted while the cluster runs, as they come: twice, the second one further on.
    let replies = |m: &Value| {
        let message = m["params"]["value"]["message"].as_str().unwrap_or("");
        let n = message.strip_prefix("progress: ").and_then(|r| r.split('/').next()?.parse::<u64>().ok());
        (m["method"] == "$/progress").then_some(n).flatten()
    };
    let first = replies(&server.wait("a progress line", |m| replies(m).is_some())).unwrap();
    let second = replies(&server.wait("another", |m| replies(m).is_some_and(|n| n > first))).unwrap();
    assert!(second > first);
    assert!(nodes_of(&tmp) > 0, "the cluster runs: {:?}", processes_naming(&tmp));
    server.notify("window/workDoneProgress/cancel", json!({ "token": token }));
    let end = server.wait("the end", |m| m["params"]["value"]["kind"] == "end");
    assert_eq!(end["params"]["value"]["message"], "cancelled", "{end}");
    let response = server.wait("the answer", |m| m["id"] == id && m.get("method").is_none());
    assert_eq!(response["result"]["cancelled"], true, "{response}");
    wait_until("no node is left", Duration::from_secs(10), || processes_naming(&tmp).is_empty());
    server.stop();
    std::fs::remove_dir_all(dir).unwrap();
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn cancelling_the_request_stops_the_cluster() {
    let LongRun { tmp, dir, mut server, id } = start_long_voting_run("cancel-request", json!({}));
    wait_until("the nodes run", Duration::from_secs(60), || nodes_of(&tmp) == 4);
    server.notify("$/cancelRequest", json!({ "id": id }));
    let response = server.wait("the answer", |m| m["id"] == id && m.get("method").is_none());
    assert_eq!(response["error"]["code"], -32800, "{response}");
    wait_until("no node is left", Duration::from_secs(10), || processes_naming(&tmp).is_empty());
    server.stop();
    std::fs::remove_dir_all(dir).unwrap();
    let _ = std::fs::remove_dir_all(tmp);
}

/// The client dies without `shutdown` or `exit`: its end of the server's stdin closes. Every
/// process of the run it started stops, and the server ends.
#[test]
fn a_client_that_dies_leaves_no_cluster_behind() {
    let LongRun { tmp, dir, mut server, .. } = start_long_voting_run("client-dies", json!({}));
    wait_until("the nodes run", Duration::from_secs(60), || nodes_of(&tmp) == 4);
    drop(server.stdin);
    wait_until("no node is left", Duration::from_secs(10), || processes_naming(&tmp).is_empty());
    wait_with_timeout(&mut server.child);
    std::fs::remove_dir_all(dir).unwrap();
    let _ = std::fs::remove_dir_all(tmp);
}

/// `shutdown` stops a run too (a client that exits cleanly while a cluster runs).
#[test]
fn shutdown_stops_the_cluster() {
    let LongRun { tmp, dir, server, .. } = start_long_voting_run("shutdown", json!({}));
    wait_until("the nodes run", Duration::from_secs(60), || nodes_of(&tmp) == 4);
    server.stop();
    wait_until("no node is left", Duration::from_secs(5), || processes_naming(&tmp).is_empty());
    std::fs::remove_dir_all(dir).unwrap();
    let _ = std::fs::remove_dir_all(tmp);
}

/// `compart/graph`: the component graph the VS Code webview draws, the same as `compart graph`'s.
#[test]
fn the_graph_request_over_stdio() {
    let mut server = Server::start();
    server.initialize();
    let (uri, text) = example("paxos.ded");
    server.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "compart", "version": 3, "text": text } }),
    );
    let response = server.request("compart/graph", json!({ "textDocument": { "uri": uri } }));
    let mut result = response["result"].clone();
    assert_eq!(result["uri"], uri.as_str());
    result["uri"] = json!("file:///…/examples/paxos.ded");
    insta::assert_snapshot!(serde_json::to_string_pretty(&result).unwrap());
    // Edges as the CLI has them.
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .args(["graph", "--format", "json", &format!("{}/examples/paxos.ded", env!("CARGO_MANIFEST_DIR"))])
        .output()
        .unwrap();
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["edges"], result["edges"]);
    // A document that is not open, and parameters that are not a document.
    let response = server.request("compart/graph", json!({ "textDocument": { "uri": "file:///nowhere.ded" } }));
    assert_eq!(response["error"]["code"], -32602, "{response}");
    let response = server.request("compart/graph", json!({ "uri": 5 }));
    assert_eq!(response["error"]["code"], -32602, "{response}");
    server.stop();
}
