//! Checked values from the command line and from files: durations, rates, and text files read
//! with a size limit. Every option of every command goes through these, so that no value a user
//! types (`inf`, `1e20`, `NaN`, `/dev/zero`) reaches an arithmetic that panics or a read without
//! bound.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Longest duration any option accepts, in seconds (about 11.5 days). Bounded so that sums of
/// two options and `Instant` arithmetic on them cannot overflow.
pub const MAX_SECONDS: f64 = 1_000_000.0;

/// Largest rate, per second, an option accepts.
pub const MAX_RATE: f64 = 1e9;

/// Largest program, deployment or report file read (64 MiB): a device or a runaway file gets a
/// clear error instead of exhausting memory.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// A finite, non-negative number of seconds, at most [`MAX_SECONDS`].
pub fn seconds(value: f64) -> Result<Duration, String> {
    if !value.is_finite() || value < 0.0 {
        return Err("expected a finite, non-negative number of seconds".into());
    }
    if value > MAX_SECONDS {
        return Err(format!("at most {MAX_SECONDS} seconds"));
    }
    Ok(Duration::from_secs_f64(value))
}

/// [`seconds`] from text (clap's `value_parser`).
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("`{text}`: expected a number of seconds"))?;
    seconds(value).map_err(|e| format!("`{text}`: {e}"))
}

/// A finite rate per second, above zero and at most [`MAX_RATE`] (clap's `value_parser`).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("`{text}`: expected a number per second"))?;
    if !value.is_finite() || value <= 0.0 || value > MAX_RATE {
        return Err(format!("`{text}`: expected a finite rate above 0 and at most {MAX_RATE} per second"));
    }
    Ok(value)
}

/// The UTF-8 text of `path`, refused (with the reason) when larger than [`MAX_FILE_BYTES`]. The
/// read stops one byte past the limit, so a device like `/dev/zero` costs no more than that.
pub fn read_text(path: &Path) -> Result<String, String> {
    read_text_limited(path, MAX_FILE_BYTES)
}

fn read_text_limited(path: &Path, limit: u64) -> Result<String, String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(format!("cannot read {}: larger than {} MiB", path.display(), limit >> 20));
    }
    String::from_utf8(bytes)
        .map_err(|e| format!("cannot read {}: not UTF-8 text (byte {})", path.display(), e.utf8_error().valid_up_to()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_finite_non_negative_and_bounded() {
        assert_eq!(seconds(1.5), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        // Each of these made Duration::from_secs_f64 panic.
        for bad in ["inf", "-inf", "NaN", "1e20", "-1", "1e19", "x", ""] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
        assert!(seconds(MAX_SECONDS).is_ok());
    }

    #[test]
    fn rates_are_finite_and_positive() {
        assert_eq!(parse_rate("250"), Ok(250.0));
        for bad in ["0", "-3", "inf", "NaN", "1e300", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_files_are_read_up_to_the_limit() {
        let dir = std::env::temp_dir().join(format!("compart-options-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.ded");
        std::fs::write(&path, "0123456789").unwrap();
        assert_eq!(read_text_limited(&path, 10).as_deref(), Ok("0123456789"));
        let err = read_text_limited(&path, 9).unwrap_err();
        assert!(err.contains("larger than"), "{err}");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(read_text(&path).unwrap_err().contains("not UTF-8"));
        let _ = std::fs::remove_dir_all(&dir);
        if Path::new("/dev/zero").exists() {
            assert!(read_text(Path::new("/dev/zero")).unwrap_err().contains("larger than 64 MiB"));
        }
    }
}
