//! workspace/executeCommand: "Run local cluster" and "Simulate" spawn `compart run` / `compart sim`
//! on the document's file, stream each output line as `$/progress` and window/logMessage, and
//! report the final figures (throughput, latency) or the invariant violation. "Apply rewrite"
//! (the rewrite code actions) checks the rewritten program against the buffer's with `compart
//! verify` (the bounded refinement check) before applying it, and shows the counterexample when
//! there is one: nothing unproven is applied.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::{ExecuteCommandParams, MessageType, NumberOrString, Uri};

use crate::handlers::edits::Beside;
use crate::session::{invalid_params, request_failed, Session};

pub const RUN: &str = "compart.run";
pub const SIMULATE: &str = "compart.simulate";
pub const APPLY_REWRITE: &str = "compart.applyRewrite";
pub const ALL: &[&str] = &[RUN, SIMULATE, APPLY_REWRITE];

/// A run that does not end by itself is stopped after this long.
const TIMEOUT: Duration = Duration::from_secs(600);

/// The subcommand and arguments for a command, checked before anything is spawned.
pub fn command_line(params: &ExecuteCommandParams) -> Result<(&'static str, PathBuf, Vec<String>)> {
    let sub = match params.command.as_str() {
        RUN => "run",
        SIMULATE => "sim",
        other => return Err(invalid_params(format!("unknown command `{other}`"))),
    };
    let uri = params
        .arguments
        .first()
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_params("expected the document's URI as the first argument"))?;
    let uri: Uri = uri.parse().map_err(|_| invalid_params(format!("`{uri}` is not a URI")))?;
    let path = uri
        .to_file_path()
        .map(|p| p.into_owned())
        .ok_or_else(|| invalid_params(format!("`{}` is not a file", uri.as_str())))?;
    // Optional second argument: extra command-line arguments, e.g. ["--duration", "5s"].
    let extra = match params.arguments.get(1) {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| invalid_params("extra arguments must be strings")))
            .collect::<Result<_>>()?,
        Some(_) => return Err(invalid_params("the second argument must be a list of strings")),
    };
    Ok((sub, path, extra))
}

/// `run|sim PROGRAM --deploy PROGRAM.toml [defaults] [extra]`: the deployment file beside the
/// program unless the extra arguments name one.
pub fn arguments(sub: &str, path: &Path, extra: Vec<String>) -> Result<Vec<String>> {
    let mut args = vec![sub.to_string(), path.display().to_string()];
    if !extra.iter().any(|a| a == "--deploy" || a.starts_with("--deploy=")) {
        let deploy = compart_analysis::deployment::beside(path);
        if !deploy.is_file() {
            return Err(request_failed(format!(
                "no deployment file {} beside the program (or pass [\"--deploy\", PATH] as the second argument)",
                deploy.display()
            )));
        }
        args.extend(["--deploy".to_string(), deploy.display().to_string()]);
    }
    // Quick feedback in the editor: a few seeded schedules, a short run.
    let defaults: &[&str] = if sub == "sim" { &["--schedules", "10"] } else { &["--requests", "2000"] };
    let flag = defaults[0];
    if !extra.iter().any(|a| a == flag) {
        args.extend(defaults.iter().map(|s| s.to_string()));
    }
    args.extend(extra);
    Ok(args)
}

/// The `compart` executable: configured, else this very binary when it is `compart`, else PATH.
fn compart_executable(session: &Session) -> PathBuf {
    if let Some(path) = session.config().compart_path {
        return path;
    }
    match std::env::current_exe() {
        Ok(exe) if exe.file_stem().is_some_and(|s| s == "compart") => exe,
        _ => PathBuf::from("compart"),
    }
}

/// Lines worth repeating at the end: the figures and any violation.
fn is_summary(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    ["throughput", "latency", "violat", "invariant", "p50", "p99", "error", "ops/s", "facts/s"]
        .iter()
        .any(|k| l.contains(k))
}

pub async fn execute(session: &Session, params: ExecuteCommandParams) -> Result<Option<Value>> {
    if params.command == APPLY_REWRITE {
        return apply_rewrite(session, params).await;
    }
    let (sub, path, extra) = command_line(&params)?;
    let exe = compart_executable(session);
    let title = if sub == "run" { "compart: running local cluster" } else { "compart: simulating" };
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let args = arguments(sub, &path, extra)?;
    let mut child = Command::new(&exe)
        .args(&args)
        .current_dir(path.parent().unwrap_or(Path::new(".")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| request_failed(format!("cannot start `{} {sub}`: {e}", exe.display())))?;

    // Use the client's token when it sent one; otherwise create one if the client can show progress.
    let token = match params.work_done_progress_params.work_done_token.clone() {
        Some(token) => Some(token),
        None if session.config().work_done_progress => {
            let token = NumberOrString::String(format!("compart/{sub}/{}", std::process::id()));
            session.client.create_work_done_progress(token.clone()).await.ok().map(|_| token)
        }
        None => None,
    };
    let progress = match token {
        Some(token) => Some(session.client.progress(token, title).with_message(file.clone()).begin().await),
        None => None,
    };

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().map(|s| BufReader::new(s).lines());
    let stderr = child.stderr.take().map(|s| BufReader::new(s).lines());
    for mut lines in [stdout.map(Lines::Out), stderr.map(Lines::Err)].into_iter().flatten() {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut output = Vec::new();
    let collect = async {
        while let Some(line) = rx.recv().await {
            session.client.log_message(MessageType::INFO, format!("[{sub}] {line}")).await;
            if let Some(p) = &progress {
                p.report(line.clone()).await;
            }
            output.push(line);
        }
        child.wait().await
    };
    let status = match tokio::time::timeout(TIMEOUT, collect).await {
        Ok(status) => status.map_err(|e| request_failed(format!("waiting for `compart {sub}`: {e}")))?,
        Err(_) => {
            if let Some(p) = progress {
                p.finish_with_message("timed out").await;
            }
            return Err(request_failed(format!("`compart {sub}` did not finish within {} s", TIMEOUT.as_secs())));
        }
    };
    let mut summary: Vec<&str> = output.iter().map(String::as_str).filter(|l| is_summary(l)).collect();
    if summary.is_empty() {
        summary.extend(output.last().map(String::as_str));
    }
    let summary = summary.join("\n");
    let ok = status.success();
    let message = format!(
        "compart {sub} {file}: {}{}",
        if ok { "done" } else { "failed" },
        if summary.is_empty() { String::new() } else { format!("\n{summary}") }
    );
    if let Some(p) = progress {
        p.finish_with_message(if ok { "done" } else { "failed" }).await;
    }
    session.client.show_message(if ok { MessageType::INFO } else { MessageType::ERROR }, &message).await;
    Ok(Some(
        json!({ "command": params.command, "exitCode": status.code(), "success": ok, "summary": summary, "output": output }),
    ))
}

/// `compart.applyRewrite [data]`: the rewrite a code action offered (see
/// `scaling::rewrite_for`), checked with `compart verify ORIGINAL REWRITTEN` on the buffer's text
/// (with the deployment file beside the program, when there is one), then applied with
/// workspace/applyEdit, the deployment file updated in the same edit; a counterexample is shown
/// instead, and nothing is applied.
async fn apply_rewrite(session: &Session, params: ExecuteCommandParams) -> Result<Option<Value>> {
    let data = params.arguments.first().cloned().ok_or_else(|| invalid_params("expected the rewrite's data"))?;
    let uri: Uri = data["uri"]
        .as_str()
        .and_then(|u| u.parse().ok())
        .ok_or_else(|| invalid_params("the rewrite's data names no document"))?;
    let snapshot = session.snapshot(&uri)?;
    let (result, invariants_only) =
        crate::handlers::scaling::rewrite_for(&snapshot, &data).map_err(|e| request_failed(format!("refused: {e}")))?;
    let dir = std::env::temp_dir().join(format!("compart-lsp-check-{}-{}", std::process::id(), snapshot.version));
    let original = dir.join("original.ded");
    let rewritten = dir.join("rewritten.ded");
    let beside = Beside::read(&uri);
    let written = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&original, snapshot.analysis.text()))
        .and_then(|_| std::fs::write(&rewritten, &result.new_text))
        .and_then(|_| match beside.as_ref().and_then(|b| b.text.as_ref()) {
            Some(toml) => std::fs::write(compart_analysis::deployment::beside(&original), toml),
            None => Ok(()),
        });
    if let Err(e) = written {
        return Err(request_failed(format!("cannot write the programs to check to {}: {e}", dir.display())));
    }
    let exe = compart_executable(session);
    let mut args = vec!["verify".to_string(), original.display().to_string(), rewritten.display().to_string()];
    if invariants_only {
        args.push("--invariants-only".into());
    }
    session.client.log_message(MessageType::INFO, format!("checking the rewrite: compart {}", args.join(" "))).await;
    let run = Command::new(&exe).args(&args).stdin(Stdio::null()).kill_on_drop(true).output();
    let output = tokio::time::timeout(TIMEOUT, run).await;
    let _ = std::fs::remove_dir_all(&dir);
    let output = match output {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(request_failed(format!("cannot start `{} verify`: {e}", exe.display()))),
        Err(_) => return Err(request_failed("the bounded check did not finish in time; the rewrite is not applied")),
    };
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let errors = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        let why = if output.status.code() == Some(1) { report.trim() } else { errors.trim() };
        let message = format!("compart: the rewrite is not applied: the bounded check found a difference\n{why}");
        session.client.show_message(MessageType::ERROR, &message).await;
        return Err(request_failed(message));
    }
    let (edit, deployment) =
        crate::handlers::scaling::rewrite_edit(&snapshot, &result, beside.as_ref(), &session.config());
    let applied = session
        .client
        .apply_edit(edit)
        .await
        .map_err(|e| request_failed(format!("the client did not apply the edit: {e}")))?;
    let summary = report.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().to_string();
    let mut message = format!("compart: rewrite checked and applied ({summary})");
    for line in &deployment {
        message.push_str(&format!("\n{line}"));
    }
    // No client asks for free text from a code action: the name is chosen by renaming afterwards.
    if let Some(name) = data["name"].as_str().filter(|n| !n.is_empty()) {
        message.push_str(&format!("\nTo choose another name for `{name}`, rename it (the deployment file follows)."));
    }
    session.client.show_message(MessageType::INFO, message).await;
    Ok(Some(json!({
        "command": params.command,
        "applied": applied.applied,
        "check": report,
        "explanation": result.explanation,
        "deployment": deployment,
    })))
}

enum Lines {
    Out(tokio::io::Lines<BufReader<tokio::process::ChildStdout>>),
    Err(tokio::io::Lines<BufReader<tokio::process::ChildStderr>>),
}

impl Lines {
    async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        match self {
            Lines::Out(l) => l.next_line().await,
            Lines::Err(l) => l.next_line().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_find_the_deployment() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let voting = examples.join("voting.ded");
        let args = arguments("sim", &voting, vec![]).unwrap();
        assert_eq!(args[0], "sim");
        assert!(args.iter().any(|a| a.ends_with("voting.toml")), "{args:?}");
        assert!(args.ends_with(&["--schedules".to_string(), "10".to_string()]));
        let args = arguments("run", &voting, vec!["--requests".into(), "5".into()]).unwrap();
        assert_eq!(args.iter().filter(|a| *a == "--requests").count(), 1);
        assert!(arguments("run", &examples.join("nothing.ded"), vec![]).is_err());
        let args = arguments("run", &examples.join("nothing.ded"), vec!["--deploy".into(), "x.toml".into()]).unwrap();
        assert_eq!(
            args,
            ["run", &examples.join("nothing.ded").display().to_string(), "--requests", "2000", "--deploy", "x.toml"]
        );
    }
}
