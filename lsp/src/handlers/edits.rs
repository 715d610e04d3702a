//! Workspace edits of a program and of the deployment file beside it. Rewrites and renames
//! change the program by the minimal edits between its text and the new one (never a replacement
//! of the whole document), and change the deployment file with
//! `compart_analysis::deployment::update`, so that the Run lens still finds every component
//! afterwards. The file is read here, at the server's edge; what to change in it is decided in
//! the analysis, which the CLI's `compart rewrite` shares.

use std::collections::HashMap;
use std::path::PathBuf;

use compart_analysis::deployment::{self, Change};
use compart_analysis::{LineIndex, Program};
use tower_lsp_server::ls_types::{
    CreateFile, CreateFileOptions, DocumentChangeOperation, DocumentChanges, OneOf,
    OptionalVersionedTextDocumentIdentifier, Position, Range, ResourceOp, TextDocumentEdit, TextEdit, Uri,
    WorkspaceEdit,
};

use crate::converters::Converter;
use crate::documents::Snapshot;
use crate::session::Config;

/// The deployment file beside a program (`deployment::beside`) and its text on disk.
#[derive(Clone, Debug)]
pub struct Beside {
    pub path: PathBuf,
    pub uri: Uri,
    /// `None` when there is no such file (or it cannot be read).
    pub text: Option<String>,
}

impl Beside {
    /// The file beside the program `uri`, read now; `None` for a program that is not a file.
    pub fn read(uri: &Uri) -> Option<Beside> {
        let path = deployment::beside(&uri.to_file_path()?);
        let uri = Uri::from_file_path(&path)?;
        let text = std::fs::read_to_string(&path).ok();
        Some(Beside { path, uri, text })
    }

    pub fn file_name(&self) -> String {
        self.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// What a rewrite does to the deployment file beside the program (an action's data says which).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeploymentEdit {
    /// The file exists and is edited.
    Update,
    /// There is none: the edit creates it (the client can create files).
    Create,
    /// There is none and the client cannot create one, or the program is not a file: the edit
    /// changes the program only.
    None,
}

impl DeploymentEdit {
    pub fn of(beside: Option<&Beside>, config: &Config) -> DeploymentEdit {
        match beside {
            Some(Beside { text: Some(_), .. }) => DeploymentEdit::Update,
            Some(_) if config.create_files => DeploymentEdit::Create,
            _ => DeploymentEdit::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentEdit::Update => "update",
            DeploymentEdit::Create => "create",
            DeploymentEdit::None => "none",
        }
    }
}

/// The edits that turn the snapshot's text into `new_text` (only the regions that differ).
pub fn program_edits(snapshot: &Snapshot, new_text: &str) -> Vec<TextEdit> {
    lsp_edits(snapshot.analysis.text(), new_text)
}

/// `text`'s edits to become `new_text`, as LSP edits.
fn lsp_edits(text: &str, new_text: &str) -> Vec<TextEdit> {
    let index = LineIndex::new(text);
    let conv = Converter::for_text(text, &index);
    compart_analysis::text::edits_between(text, new_text)
        .into_iter()
        .map(|e| TextEdit { range: conv.range(e.range), new_text: e.new_text })
        .collect()
}

/// The edit of a program by `program_edits` with `changes` made in the deployment file beside it:
/// `program` is the program the changes are about (the rewritten one; for a rename, the
/// current one). Creates the file when it is missing, `create` is set and the client can;
/// returns the edit and one line per deployment change (or why the file is left alone).
pub fn workspace_edit(
    snapshot: &Snapshot,
    program_edits: Vec<TextEdit>,
    beside: Option<&Beside>,
    (program, changes): (&Program, &[Change]),
    create: bool,
    config: &Config,
) -> (WorkspaceEdit, Vec<String>) {
    let mut notes = Vec::new();
    // (the deployment's edits, whether the file must be created first)
    let mut deploy: Option<(Vec<TextEdit>, bool)> = None;
    match beside {
        _ if changes.is_empty() => {}
        None => notes.push("the program is not a file: no deployment file to update".into()),
        Some(b) => match (&b.text, DeploymentEdit::of(Some(b), config)) {
            (Some(text), _) => match deployment::update(Some(text), program, changes) {
                Ok(updated) => {
                    notes.extend(updated.notes.iter().map(|n| format!("{}: {n}", b.file_name())));
                    deploy = Some((lsp_edits(text, &updated.text), false));
                }
                Err(e) => notes.push(format!("{} is left as it is: {e}", b.file_name())),
            },
            (None, DeploymentEdit::Create) if create => match deployment::update(None, program, changes) {
                Ok(updated) => {
                    notes.extend(updated.notes.iter().map(|n| format!("{}: {n}", b.file_name())));
                    let all = TextEdit {
                        range: Range::new(Position::new(0, 0), Position::new(0, 0)),
                        new_text: updated.text,
                    };
                    deploy = Some((vec![all], true));
                }
                Err(e) => notes.push(format!("{} is not created: {e}", b.file_name())),
            },
            (None, _) if create => notes.push(format!(
                "no {} beside the program, and this editor cannot create files: create it to run the program",
                b.file_name()
            )),
            (None, _) => {}
        },
    }
    let deploy = deploy.filter(|(edits, _)| !edits.is_empty());
    let edit = match (deploy, beside) {
        (Some((edits, created)), Some(b)) if config.document_changes => {
            let mut ops = vec![text_document_edit(snapshot.uri.clone(), Some(snapshot.version), program_edits)];
            if created {
                let options = CreateFileOptions { overwrite: Some(false), ignore_if_exists: Some(true) };
                let create = CreateFile { uri: b.uri.clone(), options: Some(options), annotation_id: None };
                ops.push(DocumentChangeOperation::Op(ResourceOp::Create(create)));
            }
            ops.push(text_document_edit(b.uri.clone(), None, edits));
            WorkspaceEdit { document_changes: Some(DocumentChanges::Operations(ops)), ..Default::default() }
        }
        (Some((edits, _)), Some(b)) => WorkspaceEdit {
            changes: Some(HashMap::from([(snapshot.uri.clone(), program_edits), (b.uri.clone(), edits)])),
            ..Default::default()
        },
        _ if config.document_changes => WorkspaceEdit {
            document_changes: Some(DocumentChanges::Operations(vec![text_document_edit(
                snapshot.uri.clone(),
                Some(snapshot.version),
                program_edits,
            )])),
            ..Default::default()
        },
        _ => WorkspaceEdit {
            changes: Some(HashMap::from([(snapshot.uri.clone(), program_edits)])),
            ..Default::default()
        },
    };
    (edit, notes)
}

/// Versioned for the open program (the client refuses it if the buffer changed meanwhile).
fn text_document_edit(uri: Uri, version: Option<i32>, edits: Vec<TextEdit>) -> DocumentChangeOperation {
    DocumentChangeOperation::Edit(TextDocumentEdit {
        text_document: OptionalVersionedTextDocumentIdentifier { uri, version },
        edits: edits.into_iter().map(OneOf::Left).collect(),
    })
}
