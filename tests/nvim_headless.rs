//! Headless Neovim (0.7+, Debian's package) as a real LSP client of `compart lsp`, through the
//! editors/nvim plugin: see tests/lsp/nvim_client.lua for the steps it checks.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn neovim_uses_the_server() {
    let root = env!("CARGO_MANIFEST_DIR");
    let version = Command::new("nvim").arg("--version").output();
    let Ok(version) = version else {
        panic!("nvim is not installed: `apt-get install neovim` (.ci/install does it)");
    };
    eprintln!("{}", String::from_utf8_lossy(&version.stdout).lines().next().unwrap_or(""));

    let dir = std::env::temp_dir().join(format!("compart-nvim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tally.ded");
    std::fs::copy(format!("{root}/tests/lsp/tally.ded"), &file).unwrap();
    let log = dir.join("nvim.log");

    // The README's setup starts `compart` from PATH: the binary under test comes first.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_compart")).parent().unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let mut child = Command::new("nvim")
        .args(["--headless", "-u", "NONE", "-i", "NONE", "-n", "-c"])
        .arg(format!("luafile {root}/tests/lsp/nvim_client.lua"))
        .env("COMPART_BIN", env!("CARGO_BIN_EXE_compart"))
        .env("PATH", path)
        .env("COMPART_FILE", &file)
        .env("COMPART_PLUGIN", format!("{root}/editors/nvim"))
        .env("COMPART_LOG", &log)
        .env("XDG_STATE_HOME", &dir)
        .env("XDG_DATA_HOME", &dir)
        .env("XDG_CACHE_HOME", &dir)
        .spawn()
        .expect("start nvim");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("nvim did not finish; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let transcript = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("{transcript}");
    assert!(status.success(), "nvim exited with {status:?}:\n{transcript}");
    for step in [
        "ok: `component` highlighted by syntax",
        "ok: diagnostics updated",
        "ok: a scaling class as virtual text at the end of a rule",
        "ok: K shows the hover",
        "ok: the last clean class stays as virtual text through a syntax error",
    ] {
        assert!(transcript.contains(step), "{step}:\n{transcript}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
