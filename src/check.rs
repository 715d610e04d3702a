//! `compart check` and `compart fmt`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{
    self,
    termcolor::{ColorChoice, StandardStream},
};
use compart_analysis::{analyze, Analysis, Diagnostic, Severity};
use serde::Serialize;

use crate::Format;

/// A program's text, read with the size limit of every input file (`options::read_text`).
pub fn read_source(path: &Path) -> Result<String, u8> {
    compart_runtime::options::read_text(path).map_err(|e| {
        eprintln!("error: {e}");
        2
    })
}

pub fn check(files: &[PathBuf], format: Format, deny_warnings: bool) -> u8 {
    let mut worst = 0;
    let mut json_files = Vec::new();
    let mut reports = SimpleFiles::new();
    let color = if std::io::stderr().is_terminal() { ColorChoice::Auto } else { ColorChoice::Never };
    let writer = StandardStream::stderr(color);
    let config = term::Config::default();
    let (mut errors, mut warnings) = (0, 0);
    for path in files {
        let text = match read_source(path) {
            Ok(t) => t,
            Err(code) => return code,
        };
        let analysis = analyze(&text);
        errors += analysis.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        warnings += analysis.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count();
        match format {
            Format::Human => {
                let file = reports.add(path.display().to_string(), text.clone());
                for diagnostic in &analysis.diagnostics {
                    let report = to_report(file, diagnostic);
                    let _ = term::emit(&mut writer.lock(), &config, &reports, &report);
                }
            }
            Format::Json => json_files.push(JsonFile::new(path, &analysis)),
        }
    }
    if errors > 0 || (deny_warnings && warnings > 0) {
        worst = 1;
    }
    match format {
        Format::Human => {
            let summary = match (errors, warnings) {
                (0, 0) => format!("{} file{} checked: no problems", files.len(), plural(files.len())),
                (e, w) => format!("{e} error{}, {w} warning{}", plural(e), plural(w)),
            };
            eprintln!("{summary}");
        }
        Format::Json => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&json_files).expect("serializable"));
        }
    }
    worst
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn to_report(file: usize, d: &Diagnostic) -> Report<usize> {
    let report = match d.severity {
        Severity::Error => Report::error(),
        Severity::Warning => Report::warning(),
    };
    let mut labels = vec![Label::primary(file, d.range.as_range())];
    labels.extend(d.related.iter().map(|r| Label::secondary(file, r.range.as_range()).with_message(&r.message)));
    let mut notes = Vec::new();
    if let Some(fix) = &d.fix {
        notes.push(format!("help: {}", fix.title));
    }
    report.with_code(d.code.as_str()).with_message(&d.message).with_labels(labels).with_notes(notes)
}

#[derive(Serialize)]
struct JsonFile {
    path: String,
    diagnostics: Vec<JsonDiagnostic>,
}

#[derive(Serialize)]
struct JsonDiagnostic {
    code: &'static str,
    severity: Severity,
    message: String,
    range: JsonRange,
    related: Vec<JsonRelated>,
    fix: Option<compart_analysis::diagnostics::Fix>,
}

#[derive(Serialize)]
struct JsonRange {
    start: usize,
    end: usize,
    /// One-based, as editors and rustc print them.
    line: u32,
    column: u32,
    end_line: u32,
    end_column: u32,
}

#[derive(Serialize)]
struct JsonRelated {
    message: String,
    range: JsonRange,
}

impl JsonRange {
    fn new(analysis: &Analysis, range: compart_analysis::TextRange) -> Self {
        let start = analysis.line_index.line_col(range.start as usize);
        let end = analysis.line_index.line_col(range.end as usize);
        JsonRange {
            start: range.start as usize,
            end: range.end as usize,
            line: start.line + 1,
            column: start.col + 1,
            end_line: end.line + 1,
            end_column: end.col + 1,
        }
    }
}

impl JsonFile {
    fn new(path: &Path, analysis: &Analysis) -> Self {
        JsonFile {
            path: path.display().to_string(),
            diagnostics: analysis
                .diagnostics
                .iter()
                .map(|d| JsonDiagnostic {
                    code: d.code.as_str(),
                    severity: d.severity,
                    message: d.message.clone(),
                    range: JsonRange::new(analysis, d.range),
                    related: d
                        .related
                        .iter()
                        .map(|r| JsonRelated { message: r.message.clone(), range: JsonRange::new(analysis, r.range) })
                        .collect(),
                    fix: d.fix.clone(),
                })
                .collect(),
        }
    }
}

pub fn fmt(files: &[PathBuf], check_only: bool, stdout: bool) -> u8 {
    let mut status = 0;
    for path in files {
        let text = match read_source(path) {
            Ok(t) => t,
            Err(code) => return code,
        };
        match compart_analysis::fmt::format(&text) {
            Err(e) => {
                let at = compart_analysis::LineIndex::new(&text).line_col(e.range.start as usize);
                eprintln!("error: {}:{}:{}: {}", path.display(), at.line + 1, at.col + 1, e.message);
                status = 1;
            }
            Ok(formatted) if stdout => {
                let _ = write!(std::io::stdout(), "{formatted}");
            }
            Ok(formatted) if formatted == text => {}
            Ok(_) if check_only => {
                eprintln!("{} is not formatted", path.display());
                status = 1;
            }
            Ok(formatted) => {
                if let Err(e) = std::fs::write(path, formatted) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return 2;
                }
            }
        }
    }
    status
}
