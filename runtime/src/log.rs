//! Log lines of node processes on stderr: today's text, or with `compart node --log-format json`
//! one JSON object per line, `{"ts": RFC 3339, "level": "info|warn|error", "node": NAME, "msg":
//! ...}`, for a supervisor's log collector. Set once per process ([`init`]); until then, text.

use std::sync::RwLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("`{s}`: expected `text` or `json`")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

static CONFIG: RwLock<Option<(LogFormat, String)>> = RwLock::new(None);

/// Chooses the format and names the node in every JSON line (again once the name is known: a
/// node started by ordinal learns it from the deployment).
pub fn init(format: LogFormat, node: &str) {
    *CONFIG.write().unwrap_or_else(|e| e.into_inner()) = Some((format, node.to_string()));
}

/// Logs `msg`: as `text_prefix` + `msg` in text, as a JSON object otherwise.
pub fn line(level: Level, text_prefix: &str, msg: &str) {
    let config = CONFIG.read().unwrap_or_else(|e| e.into_inner());
    let mut text = render(config.as_ref(), level, text_prefix, msg, std::time::SystemTime::now());
    text.push('\n');
    // One write per line: stderr is unbuffered, so `eprintln!` writes the line and its newline
    // separately, and the nodes of a local cluster, sharing the launcher's stderr, interleave.
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
}

fn render(
    config: Option<&(LogFormat, String)>,
    level: Level,
    text_prefix: &str,
    msg: &str,
    now: std::time::SystemTime,
) -> String {
    match config {
        // Written by hand to keep the documented key order (serde_json's maps sort keys).
        Some((LogFormat::Json, node)) => {
            let s = |v: &str| serde_json::Value::from(v).to_string();
            format!(
                "{{\"ts\":{},\"level\":{},\"node\":{},\"msg\":{}}}",
                s(&rfc3339(now)),
                s(level.name()),
                s(node),
                s(msg)
            )
        }
        _ => format!("{text_prefix}{msg}"),
    }
}

/// UTC, to the millisecond: `2026-11-30T21:15:03.042Z`.
fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_042)), "2000-02-29T00:00:00.042Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_079_303)), "2026-11-30T22:55:03.000Z");
    }

    #[test]
    fn json_lines_carry_level_node_and_message() {
        let config = (LogFormat::Json, "acceptor/1".to_string());
        let line = render(Some(&config), Level::Warn, "ignored: ", "a \"quoted\" word", UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["node"], "acceptor/1");
        assert_eq!(v["msg"], "a \"quoted\" word");
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
        assert!(line.starts_with("{\"ts\":"), "{line}");
        assert_eq!(render(None, Level::Info, "compart node a/0: ", "up", UNIX_EPOCH), "compart node a/0: up");
    }
}
