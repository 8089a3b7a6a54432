//! Configuration files and the environment (feature `serde`): the default
//! file round-trips; every key of the documented list can be set by a file
//! and by its `OXIFASTER_` variable (the environment wins over the file,
//! the file over code); bad files and variables are `Error::ConfigFile`
//! naming the file, line and key.

use std::path::Path;

use oxifaster::log::LogConfig;
use oxifaster::{Error, Store, StoreConfig};

/// Every store key with a value other than its default, as a file writes
/// it and as its variable gives it.
const STORE_KEYS: &[(&str, &str, &str)] = &[
    ("dir", "\"/tmp/oxifaster-config-test\"", "/tmp/oxifaster-config-test"),
    ("table_size", "4096", "4096"),
    ("auto_grow_index", "false", "false"),
    ("log_memory_size", "\"64MiB\"", "64MiB"),
    ("page_size", "\"64KiB\"", "64KiB"),
    ("mutable_fraction", "0.5", "0.5"),
    ("read_cache_size", "\"32MiB\"", "32MiB"),
    ("segment_size", "\"256MiB\"", "256MiB"),
    ("disk_budget", "\"10GiB\"", "10GiB"),
    ("direct_io", "true", "true"),
    ("checkpoint_every", "\"250ms\"", "250ms"),
    ("checkpoint_on_close", "false", "false"),
    ("keep_checkpoints", "5", "5"),
    ("max_sessions", "16", "16"),
    ("max_pending", "1024", "1024"),
];

const LOG_KEYS: &[(&str, &str, &str)] = &[
    ("dir", "\"/tmp/oxifaster-log-config-test\"", "/tmp/oxifaster-log-config-test"),
    ("page_size", "\"1MiB\"", "1MiB"),
    ("log_memory_size", "\"16MiB\"", "16MiB"),
    ("segment_size", "\"64MiB\"", "64MiB"),
    ("auto_commit_every", "\"2s\"", "2s"),
    ("auto_commit_bytes", "\"1MiB\"", "1MiB"),
    ("max_threads", "8", "8"),
    ("direct_io", "false", "false"),
];

fn file_of(keys: &[(&str, &str, &str)]) -> String {
    keys.iter().map(|(key, value, _)| format!("{key} = {value}\n")).collect()
}

/// The `key = value` lines of a rendered configuration.
fn lines(text: &str) -> Vec<String> {
    text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(str::to_owned).collect()
}

#[test]
fn the_default_file_round_trips() {
    let mut config = StoreConfig::default();
    config.apply_toml(&file_of(STORE_KEYS), "changed.toml").expect("changed");
    assert_ne!(config.to_file(), StoreConfig::default_file());
    config.apply_toml(&StoreConfig::default_file(), "default.toml").expect("default file");
    assert_eq!(config.to_file(), StoreConfig::default_file());

    let mut log = LogConfig::default();
    log.apply_toml(&file_of(LOG_KEYS), "changed.toml").expect("changed");
    assert_ne!(log.to_file(), LogConfig::default().to_file());
    log.apply_toml(&LogConfig::default().to_file(), "default.toml").expect("default file");
    assert_eq!(log.to_file(), LogConfig::default().to_file());
}

#[test]
fn every_key_is_set_by_a_file() {
    let listed: Vec<&str> = StoreConfig::keys().iter().map(|(k, _)| *k).collect();
    assert_eq!(listed, STORE_KEYS.iter().map(|(k, _, _)| *k).collect::<Vec<_>>());
    let mut config = StoreConfig::default();
    config.apply_toml(&file_of(STORE_KEYS), "all.toml").expect("all keys");
    assert_eq!(lines(&config.to_file()), lines(&file_of(STORE_KEYS)));
    assert_eq!(config.table_size, 4096);
    assert_eq!(config.page_size_bits, 16);
    assert_eq!(config.read_cache_bytes, 32 << 20);
    assert_eq!(config.disk_budget, Some(10 << 30));
    assert_eq!(config.checkpoint_every, Some(std::time::Duration::from_millis(250)));

    let listed: Vec<&str> = LogConfig::keys().iter().map(|(k, _)| *k).collect();
    assert_eq!(listed, LOG_KEYS.iter().map(|(k, _, _)| *k).collect::<Vec<_>>());
    let mut log = LogConfig::default();
    log.apply_toml(&file_of(LOG_KEYS), "all.toml").expect("all keys");
    assert_eq!(lines(&log.to_file()), lines(&file_of(LOG_KEYS)));
}

/// `oxifaster config --check` in a child process (the environment is the
/// child's): every variable wins over the file's value.
fn check_with_env(file: &Path, log: bool, env: &[(String, String)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_oxifaster"));
    command.args(["config", "--check"]).arg(file);
    if log {
        command.arg("--log");
    }
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("OXIFASTER_")) {
        command.env_remove(name);
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command.output().expect("oxifaster config")
}

#[test]
fn every_key_is_set_by_its_environment_variable_over_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (log, keys, listed) in
        [(false, STORE_KEYS, StoreConfig::keys()), (true, LOG_KEYS, LogConfig::keys())]
    {
        // The file sets every key to its default; the environment changes
        // them all.
        let file = dir.path().join("defaults.toml");
        let default =
            if log { LogConfig::default().to_file() } else { StoreConfig::default_file() };
        std::fs::write(&file, &default).expect("write");
        let env: Vec<(String, String)> = listed
            .iter()
            .zip(keys)
            .map(|((_, variable), (_, _, value))| (variable.clone(), (*value).to_owned()))
            .collect();
        let prefix = if log { "OXIFASTER_LOG_" } else { "OXIFASTER_" };
        assert!(env.iter().all(|(v, _)| v.starts_with(prefix)), "{env:?}");
        let out = check_with_env(&file, log, &env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(lines(&String::from_utf8_lossy(&out.stdout)), lines(&file_of(keys)));
        // Without the environment, the file's values.
        let out = check_with_env(&file, log, &[]);
        assert_eq!(lines(&String::from_utf8_lossy(&out.stdout)), lines(&default));
    }
    // A bad variable is named.
    let file = dir.path().join("empty.toml");
    std::fs::write(&file, "").expect("write");
    let out = check_with_env(&file, false, &[("OXIFASTER_TABLE_SIZE".into(), "lots".into())]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the environment") && stderr.contains("OXIFASTER_TABLE_SIZE"),
        "{stderr}"
    );
}

#[test]
fn a_file_wins_over_code_and_later_setters_win_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("store.toml");
    std::fs::write(&file, "table_size = 2048\nlog_memory_size = \"1MiB\"\npage_size = \"64KiB\"\n")
        .expect("write");
    let builder = Store::<u64, u64>::builder()
        .table_size(64)
        .config_file(&file)
        .expect("config file")
        .log_memory_size_bytes(2 << 20);
    assert_eq!(builder.config().table_size, 2048);
    assert_eq!(builder.config().log_memory_size_bytes, 2 << 20);
    let store = builder.open().expect("open");
    assert_eq!(store.stats().index.buckets, 2048);
}

#[test]
fn bad_files_are_named_errors() {
    let cases: &[(&str, usize, Option<&str>, &str)] = &[
        (
            "table_size = 4096\ntabel_size = 4\n",
            2,
            Some("tabel_size"),
            "unknown key; the keys are dir, table_size",
        ),
        ("log_memory_size = \"12XB\"\n", 1, Some("log_memory_size"), "unknown unit `XB`"),
        (
            "\n\ncheckpoint_every = \"5 parsecs\"\n",
            3,
            Some("checkpoint_every"),
            "expected a duration",
        ),
        ("mutable_fraction = 1.5\n", 1, Some("mutable_fraction"), "outside 0..=1"),
        ("table_size = 1000\n", 1, Some("table_size"), "not a power of two"),
        ("page_size = \"3KiB\"\n", 1, Some("page_size"), "not a power of two"),
        ("max_sessions = 0\n", 1, Some("max_sessions"), "at least 1"),
        ("direct_io = \"maybe\"\n", 1, Some("direct_io"), "expected true or false"),
        ("table_size = [1, 2]\n", 1, Some("table_size"), "array is not allowed"),
        ("table_size = 4096\nx = [\n", 2, None, "not valid TOML"),
    ];
    for (text, line, key, says) in cases {
        let mut config = StoreConfig::default();
        let err = config.apply_toml(text, "bad.toml").expect_err(text);
        match &err {
            Error::ConfigFile(e) => {
                assert_eq!(e.origin, "bad.toml", "{text}");
                assert_eq!(e.line, Some(*line), "{text}: {err}");
                assert_eq!(e.key.as_deref(), *key, "{text}: {err}");
                assert!(e.message.contains(says), "{text}: {err}");
            }
            other => panic!("{text}: {other:?}"),
        }
        assert!(err.to_string().starts_with(&format!("configuration bad.toml:{line}")), "{err}");
    }
    let err = StoreConfig::default().apply_file("/no/such/oxifaster.toml").expect_err("missing");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}
