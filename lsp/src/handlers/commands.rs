//! workspace/executeCommand: "Run local cluster" and "Simulate" spawn `compart run` / `compart sim`
//! on the buffer's text (written with the deployment file to a private temporary directory),
//! stream each output line as it comes as `$/progress` and window/logMessage, stop when cancelled
//! (runs.rs), and report the final figures (throughput, latency) or the invariant violation. "Apply rewrite"
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
use tower_lsp_server::ls_types::notification::Progress;
use tower_lsp_server::ls_types::{
    ExecuteCommandParams, MessageType, NumberOrString, ProgressParams, ProgressParamsValue, Uri, WorkDoneProgress,
    WorkDoneProgressBegin, WorkDoneProgressEnd, WorkDoneProgressReport,
};
use tower_lsp_server::Client;

use compart_analysis::diagnostics::Severity;

use crate::handlers::edits::Beside;
use crate::runs::Registration;
use crate::session::{invalid_params, request_failed, Session};

pub const RUN: &str = "compart.run";
pub const SIMULATE: &str = "compart.simulate";
pub const APPLY_REWRITE: &str = "compart.applyRewrite";
pub const ALL: &[&str] = &[RUN, SIMULATE, APPLY_REWRITE];

/// A run that does not end by itself is stopped after this long.
const TIMEOUT: Duration = Duration::from_secs(600);
/// How long a stopped run may take to stop its nodes before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The subcommand and arguments for a command, checked before anything is spawned.
pub fn command_line(params: &ExecuteCommandParams) -> Result<(&'static str, Uri, PathBuf, Vec<String>)> {
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
    Ok((sub, uri, path, extra))
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

/// A lens command ready to start: the buffer's program (and deployment file) written to a private
/// temporary directory, removed when the job is dropped.
struct Job {
    sub: &'static str,
    command: String,
    args: Vec<String>,
    /// The program's own directory, so that relative paths in the extra arguments still work.
    cwd: PathBuf,
    file: String,
    /// The document version that ran; `None` when the program is not open (its file ran).
    version: Option<i32>,
    /// Where the deployment came from: "buffer" (with its version), "disk" or "argument".
    deployment: String,
    _dir: tempfile::TempDir,
}

/// Write what the client sees to a temporary directory: the program's buffer (else its file) and
/// the deployment file beside it, from the client's buffer when it syncs it, else from disk.
fn prepare(session: &Session, params: &ExecuteCommandParams) -> Result<Job> {
    let (sub, uri, path, extra) = command_line(params)?;
    let (text, version) = match session.documents.snapshot(&uri) {
        Some(snapshot) => {
            let analysis = &snapshot.analysis;
            // The lenses stay through errors (stale.rs), but what runs is the buffer as it is.
            if let Some(error) = analysis.diagnostics.iter().find(|d| d.severity == Severity::Error) {
                let at = crate::converters::Converter::new(analysis).position(error.range.start as usize);
                return Err(request_failed(format!(
                    "version {} of the buffer has errors: fix the error at {}:{} first ({})",
                    snapshot.version,
                    at.line + 1,
                    at.character + 1,
                    error.message
                )));
            }
            (analysis.text().to_string(), Some(snapshot.version))
        }
        None => (
            std::fs::read_to_string(&path)
                .map_err(|e| request_failed(format!("cannot read {}: {e}", path.display())))?,
            None,
        ),
    };
    let dir = tempfile::Builder::new()
        .prefix("compart-lsp-run-")
        .tempdir()
        .map_err(|e| request_failed(format!("cannot make a temporary directory: {e}")))?;
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "program.ded".into());
    let program = dir.path().join(&file);
    let write = |to: &Path, text: &str| {
        std::fs::write(to, text).map_err(|e| request_failed(format!("cannot write {}: {e}", to.display())))
    };
    write(&program, &text)?;
    let named = extra.iter().any(|a| a == "--deploy" || a.starts_with("--deploy="));
    let deployment = if named {
        "argument".to_string()
    } else {
        let real = compart_analysis::deployment::beside(&path);
        let buffer = Uri::from_file_path(&real).and_then(|u| session.documents.deployment(&u));
        let (toml, source) = match buffer {
            Some((v, toml)) => (toml, format!("buffer (version {v})")),
            None => match std::fs::read_to_string(&real) {
                Ok(toml) => (toml, "disk".to_string()),
                Err(_) => {
                    return Err(request_failed(format!(
                    "no deployment file {} beside the program (or pass [\"--deploy\", PATH] as the second argument)",
                    real.display()
                )))
                }
            },
        };
        write(&compart_analysis::deployment::beside(&program), &toml)?;
        source
    };
    let mut args = arguments(sub, &program, extra)?;
    if sub == "run" && !args.iter().any(|a| a == "--quiet" || a == "--progress-lines") {
        // A line per second that this server turns into $/progress reports as the run goes.
        args.push("--progress-lines".into());
    }
    Ok(Job {
        sub,
        command: params.command.clone(),
        args,
        cwd: path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")),
        file,
        version,
        deployment,
        _dir: dir,
    })
}

pub async fn execute(session: &Session, params: ExecuteCommandParams) -> Result<Option<Value>> {
    if params.command == APPLY_REWRITE {
        return apply_rewrite(session, params).await;
    }
    let job = prepare(session, &params)?;
    // Use the client's token when it sent one; otherwise create one if the client can show progress.
    let token = match params.work_done_progress_params.work_done_token.clone() {
        Some(token) => Some(token),
        None if session.config().work_done_progress => {
            let n = NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let token = NumberOrString::String(format!("compart/{}/{}/{n}", job.sub, std::process::id()));
            session.client.create_work_done_progress(token.clone()).await.ok().map(|_| token)
        }
        None => None,
    };
    let registration = session.runs.register(token.clone());
    // Dropped when the client cancels this request ($/cancelRequest): the run then stops too.
    let _stop = registration.stop_on_drop();
    let task = tokio::spawn(run_job(session.client.clone(), compart_executable(session), job, token, registration));
    task.await.map_err(|e| request_failed(format!("the run failed: {e}")))?
}

static NEXT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A `$/progress` notification (percentage when known); every one says the run can be cancelled.
async fn progress(client: &Client, token: &NumberOrString, value: WorkDoneProgress) {
    let params = ProgressParams { token: token.clone(), value: ProgressParamsValue::WorkDone(value) };
    client.send_notification::<Progress>(params).await;
}

/// `progress: N/M replies` (compart run --progress-lines) as a percentage.
fn percentage(line: &str) -> Option<u32> {
    let (done, total) = line.strip_prefix("progress: ")?.split_whitespace().next()?.split_once('/')?;
    let (done, total): (u64, u64) = (done.parse().ok()?, total.parse().ok()?);
    (total > 0).then(|| (u128::from(done.min(total)) * 100 / u128::from(total)) as u32)
}

enum End {
    Exited(std::process::ExitStatus),
    Cancelled,
    TimedOut,
}

/// Start the job's process, stream its output as it comes, and stop it when asked.
async fn run_job(
    client: Client,
    exe: PathBuf,
    job: Job,
    token: Option<NumberOrString>,
    mut registration: Registration,
) -> Result<Option<Value>> {
    let sub = job.sub;
    let mut command = Command::new(&exe);
    command
        .args(&job.args)
        .current_dir(&job.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // If this server dies without stopping it (SIGKILL), the kernel stops the launcher, and the
    // launcher's nodes die with it (runtime/src/cluster/process.rs).
    // SAFETY: the closure only calls prctl, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child =
        command.spawn().map_err(|e| request_failed(format!("cannot start `{} {sub}`: {e}", exe.display())))?;
    let title = if sub == "run" { "compart: running local cluster" } else { "compart: simulating" };
    let what = match job.version {
        Some(v) => format!("{} (buffer version {v})", job.file),
        None => job.file.clone(),
    };
    if let Some(token) = &token {
        let begin = WorkDoneProgressBegin {
            title: title.into(),
            cancellable: Some(true),
            message: Some(what.clone()),
            percentage: (sub == "run").then_some(0),
        };
        progress(&client, token, WorkDoneProgress::Begin(begin)).await;
    }
    client
        .log_message(
            MessageType::INFO,
            format!("[{sub}] compart {} (deployment from {})", job.args.join(" "), job.deployment),
        )
        .await;

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
    let deadline = tokio::time::sleep(TIMEOUT);
    tokio::pin!(deadline);
    let end = loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    client.log_message(MessageType::INFO, format!("[{sub}] {line}")).await;
                    if let Some(token) = &token {
                        let report = WorkDoneProgressReport {
                            cancellable: Some(true),
                            message: Some(line.clone()),
                            percentage: percentage(&line),
                        };
                        progress(&client, token, WorkDoneProgress::Report(report)).await;
                    }
                    output.push(line);
                }
                None => match child.wait().await {
                    Ok(status) => break End::Exited(status),
                    Err(e) => return Err(request_failed(format!("waiting for `compart {sub}`: {e}"))),
                },
            },
            changed = registration.stop.changed() => {
                if changed.is_ok() && *registration.stop.borrow() {
                    break End::Cancelled;
                }
            }
            _ = &mut deadline => break End::TimedOut,
        }
    };
    if !matches!(end, End::Exited(_)) {
        stop(&mut child).await;
    }
    // The registry lets `stop_all` return once the processes are gone.
    drop(registration);
    let (ok, status, word) = match &end {
        End::Exited(status) => (status.success(), status.code(), if status.success() { "done" } else { "failed" }),
        End::Cancelled => (false, None, "cancelled"),
        End::TimedOut => (false, None, "timed out"),
    };
    if let Some(token) = &token {
        progress(&client, token, WorkDoneProgress::End(WorkDoneProgressEnd { message: Some(word.into()) })).await;
    }
    if let End::TimedOut = end {
        return Err(request_failed(format!("`compart {sub}` did not finish within {} s", TIMEOUT.as_secs())));
    }
    let mut summary: Vec<&str> = output.iter().map(String::as_str).filter(|l| is_summary(l)).collect();
    if summary.is_empty() {
        summary.extend(output.iter().rev().find(|l| !l.starts_with("progress: ")).map(String::as_str));
    }
    let summary = summary.join("\n");
    let message = format!(
        "compart {sub} {what}: {word}{}",
        if summary.is_empty() { String::new() } else { format!("\n{summary}") }
    );
    client.show_message(if ok || word == "cancelled" { MessageType::INFO } else { MessageType::ERROR }, &message).await;
    Ok(Some(json!({
        "command": job.command,
        "exitCode": status,
        "success": ok,
        "cancelled": matches!(end, End::Cancelled),
        "version": job.version,
        "deployment": job.deployment,
        "summary": summary,
        "output": output,
    })))
}

/// Stop a lens's process: SIGTERM first (`compart run` then stops its nodes in order), SIGKILL
/// after a grace period (its nodes then die with it: PR_SET_PDEATHSIG).
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
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
    let beside = Beside::read(&uri);
    let delivery = crate::handlers::scaling::request_delivery(beside.as_ref());
    let (result, invariants_only) = crate::handlers::scaling::rewrite_for(&snapshot, &data, delivery)
        .map_err(|e| request_failed(format!("refused: {e}")))?;
    let dir = std::env::temp_dir().join(format!("compart-lsp-check-{}-{}", std::process::id(), snapshot.version));
    let original = dir.join("original.ded");
    let rewritten = dir.join("rewritten.ded");
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
    fn progress_lines_become_percentages() {
        assert_eq!(percentage("progress: 500/2000 replies"), Some(25));
        assert_eq!(percentage("progress: 0/2000 replies"), Some(0));
        assert_eq!(percentage("progress: 3000/2000 replies"), Some(100));
        for other in ["progress: 1/0 replies", "progress: x/2", "throughput 5/s", "progress: 18446744073709551615/1"] {
            assert!(percentage(other).is_none_or(|p| p <= 100), "{other}");
        }
        assert_eq!(percentage("progress: 18446744073709551615/18446744073709551615 replies"), Some(100));
        assert_eq!(percentage("seed 3: no violation"), None);
    }

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
