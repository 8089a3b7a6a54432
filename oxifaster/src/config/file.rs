//! Configuration from a TOML file and from `OXIFASTER_` environment
//! variables (feature `serde`), for [`StoreConfig`] and [`LogConfig`].
//!
//! Precedence: what code set < the file < the environment. A file may set
//! any key of the list ([`StoreConfig::default_file`] prints it, with a
//! comment per key); every key has an environment variable, its name in
//! upper case after `OXIFASTER_` (`OXIFASTER_LOG_` for a [`LogConfig`]).
//! Other `OXIFASTER_` variables are ignored. Sizes are bytes or a number
//! with a unit (`B`, `KiB`, `MiB`, `GiB`, `TiB`: `"512MiB"`); durations a
//! number with a unit (`"250ms"`, `"5s"`, `"2m"`, `"1h"`), or `"off"`
//! where a setting can be off.
//!
//! Errors name the file and line (or the variable) and the key, and say
//! what is allowed: [`Error::ConfigFile`](crate::Error::ConfigFile).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::log::LogConfig;
use crate::store::StoreConfig;
use crate::{ConfigError, Error, Result};

/// A value as a file or the environment gives it.
#[derive(Debug, Clone, Copy)]
enum Input<'a> {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'a str),
}

impl Input<'_> {
    fn describe(&self) -> String {
        match self {
            Input::Int(n) => n.to_string(),
            Input::Float(x) => x.to_string(),
            Input::Bool(b) => b.to_string(),
            Input::Str(s) => format!("\"{s}\""),
        }
    }

    fn uint(&self) -> std::result::Result<u64, String> {
        match *self {
            Input::Int(n) if n >= 0 => Ok(n as u64),
            Input::Str(s) => s.trim().parse().map_err(|_| "expected a whole number".into()),
            _ => Err("expected a whole number".into()),
        }
    }

    fn float(&self) -> std::result::Result<f64, String> {
        match *self {
            Input::Float(x) => Ok(x),
            Input::Int(n) => Ok(n as f64),
            Input::Str(s) => s.trim().parse().map_err(|_| "expected a number".into()),
            _ => Err("expected a number".into()),
        }
    }

    fn bool(&self) -> std::result::Result<bool, String> {
        match *self {
            Input::Bool(b) => Ok(b),
            Input::Str(s) => match s.trim() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err("expected true or false".into()),
            },
            _ => Err("expected true or false".into()),
        }
    }

    fn size(&self) -> std::result::Result<u64, String> {
        match *self {
            Input::Int(n) if n >= 0 => Ok(n as u64),
            Input::Str(s) => parse_size(s),
            _ => Err("expected a size such as \"512MiB\" or a number of bytes".into()),
        }
    }

    /// A size, or `None` for `"none"`/`"off"`.
    fn optional_size(&self) -> std::result::Result<Option<u64>, String> {
        match *self {
            Input::Str(s) if matches!(s.trim(), "none" | "off") => Ok(None),
            _ => self.size().map(Some),
        }
    }

    fn duration(&self) -> std::result::Result<Option<Duration>, String> {
        match *self {
            Input::Str(s) if s.trim() == "off" => Ok(None),
            Input::Str(s) => humantime::parse_duration(s.trim()).map(Some).map_err(|e| {
                format!("expected a duration such as \"5s\" or \"250ms\", or \"off\" ({e})")
            }),
            _ => Err("expected a duration such as \"5s\" or \"250ms\", or \"off\"".into()),
        }
    }

    fn text(&self) -> std::result::Result<&str, String> {
        match *self {
            Input::Str(s) => Ok(s),
            _ => Err("expected a string".into()),
        }
    }
}

/// Parses a size: bytes, or a number with a unit `B`, `KiB`, `MiB`,
/// `GiB` or `TiB` (also `K`, `M`, `G`, `T`, `KB`, `MB`, `GB`, `TB` as the
/// same powers of two).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let s = text.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as \"512MiB\" or a number of bytes"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KB" | "KiB" => 10,
        "M" | "MB" | "MiB" => 20,
        "G" | "GB" | "GiB" => 30,
        "T" | "TB" | "TiB" => 40,
        other => {
            return Err(format!("unknown unit `{other}` in `{text}`: use B, KiB, MiB, GiB or TiB"));
        }
    };
    number.checked_mul(1 << shift).ok_or_else(|| format!("`{text}` is more than 2^64 bytes"))
}

/// A size as a file shows it: the largest unit that divides it.
fn show_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("\"{}{unit}\"", bytes >> shift);
        }
    }
    bytes.to_string()
}

fn show_duration(d: Option<Duration>) -> String {
    match d {
        None => "\"off\"".into(),
        Some(d) if d.subsec_nanos() == 0 => format!("\"{}s\"", d.as_secs()),
        Some(d) => format!("\"{}ms\"", d.as_millis()),
    }
}

/// log2 of a power-of-two size in `min_bits..=max_bits`.
fn power_of_two(bytes: u64, min_bits: u32, max_bits: u32) -> std::result::Result<u32, String> {
    if !bytes.is_power_of_two() {
        return Err(format!("{bytes} bytes is not a power of two"));
    }
    let bits = bytes.trailing_zeros();
    if !(min_bits..=max_bits).contains(&bits) {
        return Err(format!("{bytes} bytes is outside 2^{min_bits}..=2^{max_bits}"));
    }
    Ok(bits)
}

/// One key of a configuration: its name, what it means (the default
/// file's comment), the value it has in a configuration (as a file writes
/// it), and how a value is applied.
struct Setting<C> {
    key: &'static str,
    doc: &'static str,
    show: fn(&C) -> String,
    apply: fn(&mut C, Input<'_>) -> std::result::Result<(), String>,
}

fn store_settings() -> Vec<Setting<StoreConfig>> {
    use crate::hlog::{MAX_PAGE_BITS, MIN_PAGE_BITS};
    vec![
        Setting {
            key: "dir",
            doc: "The store directory (log segments and checkpoints); unset: a temporary directory removed at close.",
            show: |c| match &c.dir {
                Some(d) => format!("{:?}", d.display().to_string()),
                None => "\"\"".into(),
            },
            apply: |c, v| {
                let dir = v.text()?;
                c.dir = (!dir.is_empty()).then(|| PathBuf::from(dir));
                Ok(())
            },
        },
        Setting {
            key: "table_size",
            doc: "Hash buckets at open (a power of two; 64 bytes each). The index grows past it by itself (auto_grow_index).",
            show: |c| c.table_size.to_string(),
            apply: |c, v| {
                let n = v.uint()?;
                if !n.is_power_of_two() {
                    return Err(format!("{n} is not a power of two"));
                }
                c.table_size = n;
                Ok(())
            },
        },
        Setting {
            key: "auto_grow_index",
            doc: "Whether the hash index doubles by itself when its entries pass four per bucket.",
            show: |c| c.auto_grow_index.to_string(),
            apply: |c, v| {
                c.auto_grow_index = v.bool()?;
                Ok(())
            },
        },
        Setting {
            key: "log_memory_size",
            doc: "Memory for the log's recent records (a power-of-two number of pages).",
            show: |c| show_size(c.log_memory_size_bytes),
            apply: |c, v| {
                c.log_memory_size_bytes = v.size()?;
                Ok(())
            },
        },
        Setting {
            key: "page_size",
            doc: "The log page size (a power of two); a record must fit in a page.",
            show: |c| show_size(1 << c.page_size_bits),
            apply: |c, v| {
                c.page_size_bits = power_of_two(v.size()?, MIN_PAGE_BITS, MAX_PAGE_BITS)?;
                Ok(())
            },
        },
        Setting {
            key: "mutable_fraction",
            doc: "The fraction of the in-memory log updated in place (0 to 1).",
            show: |c| format!("{:?}", c.mutable_fraction),
            apply: |c, v| {
                let x = v.float()?;
                if !(0.0..=1.0).contains(&x) {
                    return Err(format!("{x} is outside 0..=1"));
                }
                c.mutable_fraction = x;
                Ok(())
            },
        },
        Setting {
            key: "read_cache_size",
            doc: "Memory for the read cache of records read back from the device (whole pages, at least two; 0: off).",
            show: |c| show_size(c.read_cache_bytes),
            apply: |c, v| {
                c.read_cache_bytes = v.size()?;
                Ok(())
            },
        },
        Setting {
            key: "segment_size",
            doc: "The size of a log segment file, for a new store (a power of two, at least a page).",
            show: |c| show_size(1 << c.segment_size_bits),
            apply: |c, v| {
                c.segment_size_bits = power_of_two(v.size()?, MIN_PAGE_BITS, 40)?;
                Ok(())
            },
        },
        Setting {
            key: "disk_budget",
            doc: "The most bytes the store directory may take (compaction keeps it under); \"none\": no bound.",
            show: |c| c.disk_budget.map_or_else(|| "\"none\"".into(), show_size),
            apply: |c, v| {
                c.disk_budget = v.optional_size()?;
                Ok(())
            },
        },
        Setting {
            key: "direct_io",
            doc: "Whether log segments are read and written with O_DIRECT (Linux), around the page cache.",
            show: |c| c.direct_io.to_string(),
            apply: |c, v| {
                c.direct_io = v.bool()?;
                Ok(())
            },
        },
        Setting {
            key: "checkpoint_every",
            doc: "The automatic checkpoint interval; \"off\": checkpoints only by hand.",
            show: |c| show_duration(c.checkpoint_every),
            apply: |c, v| {
                let every = v.duration()?;
                if every == Some(Duration::ZERO) {
                    return Err("0 is not an interval: use \"off\"".into());
                }
                c.checkpoint_every = every;
                Ok(())
            },
        },
        Setting {
            key: "checkpoint_on_close",
            doc: "Whether closing the store takes a final checkpoint.",
            show: |c| c.checkpoint_on_close.to_string(),
            apply: |c, v| {
                c.checkpoint_on_close = v.bool()?;
                Ok(())
            },
        },
        Setting {
            key: "keep_checkpoints",
            doc: "Automatic checkpoints kept (older ones are deleted); at least 1.",
            show: |c| c.keep_checkpoints.to_string(),
            apply: |c, v| {
                c.keep_checkpoints = positive(v)?;
                Ok(())
            },
        },
        Setting {
            key: "max_sessions",
            doc: "The most sessions open at once; at least 1.",
            show: |c| c.max_sessions.to_string(),
            apply: |c, v| {
                c.max_sessions = positive(v)?;
                Ok(())
            },
        },
        Setting {
            key: "max_pending",
            doc: "The most operations one session may hold pending at once; at least 1.",
            show: |c| c.max_pending.to_string(),
            apply: |c, v| {
                c.max_pending = positive(v)?;
                Ok(())
            },
        },
    ]
}

fn log_settings() -> Vec<Setting<LogConfig>> {
    use crate::hlog::{MAX_PAGE_BITS, MIN_PAGE_BITS};
    vec![
        Setting {
            key: "dir",
            doc: "The log directory; unset: a temporary directory removed when the log is dropped.",
            show: |c| match &c.dir {
                Some(d) => format!("{:?}", d.display().to_string()),
                None => "\"\"".into(),
            },
            apply: |c, v| {
                let dir = v.text()?;
                c.dir = (!dir.is_empty()).then(|| PathBuf::from(dir));
                Ok(())
            },
        },
        Setting {
            key: "page_size",
            doc: "The page size (a power of two); an entry must fit in a page.",
            show: |c| show_size(1 << c.page_size_bits),
            apply: |c, v| {
                c.page_size_bits = power_of_two(v.size()?, MIN_PAGE_BITS, MAX_PAGE_BITS)?;
                Ok(())
            },
        },
        Setting {
            key: "log_memory_size",
            doc: "Memory for the page ring (a power-of-two multiple of the page size, at least four pages).",
            show: |c| show_size(c.log_memory_size_bytes),
            apply: |c, v| {
                c.log_memory_size_bytes = v.size()?;
                Ok(())
            },
        },
        Setting {
            key: "segment_size",
            doc: "The size of a segment file (a power of two, at least a page).",
            show: |c| show_size(1 << c.segment_size_bits),
            apply: |c, v| {
                c.segment_size_bits = power_of_two(v.size()?, MIN_PAGE_BITS, 40)?;
                Ok(())
            },
        },
        Setting {
            key: "auto_commit_every",
            doc: "Commit in the background at this interval; \"off\": only by hand.",
            show: |c| show_duration(c.auto_commit_interval),
            apply: |c, v| {
                let every = v.duration()?;
                if every == Some(Duration::ZERO) {
                    return Err("0 is not an interval: use \"off\"".into());
                }
                c.auto_commit_interval = every;
                Ok(())
            },
        },
        Setting {
            key: "auto_commit_bytes",
            doc: "Commit in the background once this much was enqueued since the last commit; \"off\": never.",
            show: |c| c.auto_commit_bytes.map_or_else(|| "\"off\"".into(), show_size),
            apply: |c, v| {
                c.auto_commit_bytes = v.optional_size()?.map(|b| b.max(1));
                Ok(())
            },
        },
        Setting {
            key: "max_threads",
            doc: "How many threads may be inside a log call at once; at least 1.",
            show: |c| c.max_threads.to_string(),
            apply: |c, v| {
                c.max_threads = positive(v)?;
                Ok(())
            },
        },
        Setting {
            key: "direct_io",
            doc: "Whether full blocks are written with O_DIRECT (Linux), skipping the page cache.",
            show: |c| c.direct_io.to_string(),
            apply: |c, v| {
                c.direct_io = v.bool()?;
                Ok(())
            },
        },
    ]
}

fn positive(v: Input<'_>) -> std::result::Result<usize, String> {
    let n = v.uint()?;
    if n == 0 {
        return Err("0 is not allowed: at least 1".into());
    }
    usize::try_from(n).map_err(|_| format!("{n} is too large"))
}

/// The line (1-based) of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

fn file_error(file: &Path, line: Option<usize>, key: Option<&str>, message: String) -> Error {
    Error::ConfigFile(Box::new(ConfigError {
        origin: file.display().to_string(),
        line,
        key: key.map(str::to_owned),
        message,
    }))
}

/// Applies the TOML file at `path` to `config`.
fn apply_file<C>(config: &mut C, settings: &[Setting<C>], path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        context: format!("reading the configuration file {}", path.display()),
        source: e,
    })?;
    apply_text(config, settings, &text, path)
}

fn apply_text<C>(config: &mut C, settings: &[Setting<C>], text: &str, path: &Path) -> Result<()> {
    let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> =
        toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            file_error(path, line, None, format!("not valid TOML: {}", e.message()))
        })?;
    for (key, value) in &table {
        let line = Some(line_of(text, key.span().start));
        let Some(setting) = settings.iter().find(|s| s.key == key.get_ref()) else {
            let allowed: Vec<_> = settings.iter().map(|s| s.key).collect();
            return Err(file_error(
                path,
                line,
                Some(key.get_ref()),
                format!("unknown key; the keys are {}", allowed.join(", ")),
            ));
        };
        let input = match value.get_ref() {
            toml::Value::Integer(n) => Input::Int(*n),
            toml::Value::Float(x) => Input::Float(*x),
            toml::Value::Boolean(b) => Input::Bool(*b),
            toml::Value::String(s) => Input::Str(s),
            other => {
                return Err(file_error(
                    path,
                    line,
                    Some(setting.key),
                    format!("a {} is not allowed here", other.type_str()),
                ));
            }
        };
        (setting.apply)(config, input).map_err(|why| {
            file_error(path, line, Some(setting.key), format!("{}: {why}", input.describe()))
        })?;
    }
    Ok(())
}

/// Applies the `prefix`ed environment variables of `settings` to `config`.
fn apply_env<C>(config: &mut C, settings: &[Setting<C>], prefix: &str) -> Result<()> {
    for setting in settings {
        let variable = format!("{prefix}{}", setting.key.to_ascii_uppercase());
        let Some(value) = std::env::var_os(&variable) else { continue };
        let env_error = |message: String| {
            Error::ConfigFile(Box::new(ConfigError {
                origin: "the environment".into(),
                line: None,
                key: Some(variable.clone()),
                message,
            }))
        };
        let value = value.to_str().ok_or_else(|| env_error("not valid UTF-8".into()))?;
        (setting.apply)(config, Input::Str(value))
            .map_err(|why| env_error(format!("\"{value}\": {why}")))?;
    }
    Ok(())
}

/// A commented TOML file of `config`'s values.
fn render<C>(config: &C, settings: &[Setting<C>], title: &str, prefix: &str) -> String {
    let mut out = format!(
        "# {title}\n#\n# Every key may also be set by the environment variable\n# {prefix}<KEY IN UPPER CASE>, which wins over this file.\n"
    );
    for s in settings {
        let _ = write!(out, "\n# {}\n{} = {}\n", s.doc, s.key, (s.show)(config));
    }
    out
}

impl StoreConfig {
    /// Applies the TOML file at `path` over this configuration (its keys
    /// replace what code set). See [the key list](Self::default_file).
    pub fn apply_file(&mut self, path: impl AsRef<Path>) -> Result<()> {
        apply_file(self, &store_settings(), path.as_ref())
    }

    /// Applies a TOML text (as if read from a file named `name`).
    pub fn apply_toml(&mut self, text: &str, name: impl AsRef<Path>) -> Result<()> {
        apply_text(self, &store_settings(), text, name.as_ref())
    }

    /// Applies the `OXIFASTER_<KEY>` environment variables over this
    /// configuration (they win over code and files).
    pub fn apply_env(&mut self) -> Result<()> {
        apply_env(self, &store_settings(), "OXIFASTER_")
    }

    /// The configuration's keys and the environment variables that set
    /// them, in file order.
    pub fn keys() -> Vec<(&'static str, String)> {
        store_settings()
            .iter()
            .map(|s| (s.key, format!("OXIFASTER_{}", s.key.to_ascii_uppercase())))
            .collect()
    }

    /// This configuration as a commented TOML file (for the defaults:
    /// `StoreConfig::default().to_file()`, what `oxifaster config
    /// --print-default` prints).
    pub fn to_file(&self) -> String {
        render(self, &store_settings(), "oxifaster store configuration", "OXIFASTER_")
    }

    /// The default configuration as a commented TOML file.
    pub fn default_file() -> String {
        Self::default().to_file()
    }
}

impl LogConfig {
    /// Applies the TOML file at `path` over this configuration.
    pub fn apply_file(&mut self, path: impl AsRef<Path>) -> Result<()> {
        apply_file(self, &log_settings(), path.as_ref())
    }

    /// Applies a TOML text (as if read from a file named `name`).
    pub fn apply_toml(&mut self, text: &str, name: impl AsRef<Path>) -> Result<()> {
        apply_text(self, &log_settings(), text, name.as_ref())
    }

    /// Applies the `OXIFASTER_LOG_<KEY>` environment variables.
    pub fn apply_env(&mut self) -> Result<()> {
        apply_env(self, &log_settings(), "OXIFASTER_LOG_")
    }

    /// The configuration's keys and their environment variables.
    pub fn keys() -> Vec<(&'static str, String)> {
        log_settings()
            .iter()
            .map(|s| (s.key, format!("OXIFASTER_LOG_{}", s.key.to_ascii_uppercase())))
            .collect()
    }

    /// This configuration as a commented TOML file.
    pub fn to_file(&self) -> String {
        render(self, &log_settings(), "oxifaster FasterLog configuration", "OXIFASTER_LOG_")
    }
}
