//! `compart deploy k8s`: writes the Kubernetes manifests `compart_runtime::k8s` generates.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use compart_runtime::cluster::{random_secret_hex, secret_from_env, SECRET_ENV, SECRET_FILE_ENV};
use compart_runtime::k8s::{self, K8sOptions};

#[derive(Subcommand)]
pub enum DeployCommand {
    /// Write Kubernetes manifests for `kubectl apply -k DIR`.
    ///
    /// A StatefulSet per component behind a headless Service, a ConfigMap with the program and
    /// the deployment, a Secret with the cluster key, a NetworkPolicy, and a load Job applied
    /// separately (docs/deploying.md).
    K8s(K8sArgs),
}

#[derive(Args)]
pub struct K8sArgs {
    /// The program (.ded).
    pub program: PathBuf,
    /// The deployment file (.toml): instances and partitions per component, [workload].
    #[arg(long)]
    pub deploy: PathBuf,
    /// Directory to write the manifests into (created if missing; files of the same names are
    /// replaced).
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// Prefix of every object's name, and the headless Service's name (default: the program's
    /// file name as a DNS label).
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace of every object.
    #[arg(long, default_value = k8s::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Container image with compart as its entry point (default: compart:<this version>; see the
    /// Containerfile).
    #[arg(long)]
    pub image: Option<String>,
    /// CPU per node, e.g. 500m: the request and the limit (default: a request of 100m, no limit).
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory per node, e.g. 256Mi: the request and the limit (default: a request of 128Mi, no limit).
    #[arg(long)]
    pub memory: Option<String>,
    /// Volume per node of a component with tables (its durability log).
    #[arg(long, default_value = k8s::DEFAULT_STORAGE)]
    pub storage: String,
    /// The cluster's DNS domain.
    #[arg(long, default_value = k8s::DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
    /// Put the key nodes would take from the environment ($COMPART_CLUSTER_SECRET, or the file
    /// $COMPART_CLUSTER_SECRET_FILE names) into the Secret instead of a new random one (to
    /// regenerate the manifests of a running deployment without changing its key).
    #[arg(long)]
    pub secret_from_env: bool,
}

pub fn deploy(command: DeployCommand) -> u8 {
    match command {
        DeployCommand::K8s(args) => k8s_command(args),
    }
}

/// Exit codes: 0 written, 1 the program, the deployment or an option cannot make valid
/// manifests, 2 usage or I/O problems.
fn k8s_command(args: K8sArgs) -> u8 {
    let text = match crate::check::read_source(&args.program) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let analysis = compart_analysis::analyze(&text);
    if analysis.has_errors() {
        eprintln!("error: {} has errors; run `compart check` for details", args.program.display());
        return 1;
    }
    let deployment = match compart_runtime::options::read_text(&args.deploy) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let name = match &args.name {
        Some(n) => n.clone(),
        None => {
            let stem = args.program.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let label = k8s::dns_label(&stem);
            if !label.starts_with(|c: char| c.is_ascii_lowercase()) {
                eprintln!(
                    "error: the program's file name `{stem}` does not make a DNS label starting with a letter (`{label}`): give --name"
                );
                return 2;
            }
            label
        }
    };
    let secret = if args.secret_from_env {
        match secret_from_env().map(|s| s.map(String::from_utf8)) {
            Ok(Some(Ok(s))) => s,
            Ok(Some(Err(_))) => {
                eprintln!("error: --secret-from-env: the secret is not UTF-8 text, which a Kubernetes Secret's stringData must be");
                return 2;
            }
            Ok(None) => {
                eprintln!("error: --secret-from-env: neither ${SECRET_ENV} nor ${SECRET_FILE_ENV} is set");
                return 2;
            }
            Err(e) => {
                eprintln!("error: --secret-from-env: {e}");
                return 2;
            }
        }
    } else {
        match random_secret_hex() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        }
    };
    let mut opts = K8sOptions::new(
        &name,
        &args.image.unwrap_or_else(|| format!("compart:{}", env!("CARGO_PKG_VERSION"))),
        &secret,
    );
    opts.namespace = args.namespace;
    opts.cpu = args.cpu;
    opts.memory = args.memory;
    opts.storage = args.storage;
    opts.cluster_domain = args.cluster_domain;
    let files = match k8s::manifests(&text, &analysis.program, &deployment, &opts) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {}: {e}", args.program.display());
            return 1;
        }
    };
    if let Err(e) = write_files(&args.out, &files) {
        eprintln!("error: {e}");
        return 2;
    }
    for (file, _) in &files {
        println!("wrote {}", args.out.join(file).display());
    }
    let dir = args.out.display();
    println!(
        "apply: kubectl apply -k {dir}\ndrive a workload: kubectl apply -f {dir}/{} (then kubectl logs -f job/{name}-load)\n{dir}/secret.yaml holds the cluster key: do not commit it",
        k8s::LOAD_JOB_FILE
    );
    0
}

fn write_files(dir: &Path, files: &[(String, String)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (file, contents) in files {
        let path = dir.join(file);
        write_file(&path, contents, file == "secret.yaml")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The Secret's file is readable by its owner only.
fn write_file(path: &Path, contents: &str, private: bool) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(if private { 0o600 } else { 0o644 });
    let mut file = options.open(path)?;
    #[cfg(unix)]
    if private {
        // `mode` applies only to a file it creates: an existing one keeps its permissions.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())
}
