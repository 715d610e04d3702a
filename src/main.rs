//! The `compart` command-line tool.

mod check;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "compart", version, about = "Automatic compartmentalization of distributed protocols")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable reports with source snippets.
    Human,
    /// One JSON document on stdout, for tools.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and analyse programs; report errors and warnings.
    Check {
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Treat warnings as errors for the exit code.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Rewrite programs in canonical format (comments kept).
    Fmt {
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// Do not write; exit 1 if any file is not formatted.
        #[arg(long)]
        check: bool,
        /// Print the formatted program to stdout instead of writing the file.
        #[arg(long, conflicts_with = "check")]
        stdout: bool,
    },
}

/// Exit codes: 0 clean, 1 the input has errors, 2 usage or I/O problems.
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let code = match cli.command {
        Command::Check { files, format, deny_warnings } => check::check(&files, format, deny_warnings),
        Command::Fmt { files, check, stdout } => check::fmt(&files, check, stdout),
    };
    ExitCode::from(code)
}
