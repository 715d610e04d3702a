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
        let mut child = Command::new(env!("CARGO_BIN_EXE_compart"))
            .arg("lsp")
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
        Server { child, stdin, from_server, next_id: 0 }
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
        let result = self.request("initialize", json!({ "processId": null, "rootUri": null, "capabilities": {} }));
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
