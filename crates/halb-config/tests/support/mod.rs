//! Helpers shared by the integration tests. Each test file uses a subset.
#![allow(dead_code)]

use halb_config::{parse, ConfigError};

/// A valid config with nothing optional: one listener, one pool, one backend.
pub const MINIMAL: &str = r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"

[[pool]]
name = "app"

[[pool.backend]]
address = "127.0.0.1:9001"
"#;

/// All errors for `text`, which must be rejected.
pub fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(config) => panic!("accepted a bad config: {config:#?}"),
        Err(errors) => errors.0,
    }
}

/// The single error for `text`.
pub fn only_error(text: &str) -> ConfigError {
    let mut errors = errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    errors.remove(0)
}

#[track_caller]
pub fn assert_error(error: &ConfigError, path: &str, line: Option<usize>, message: &str) {
    assert_eq!(error.path, path, "{error}");
    assert_eq!(error.line, line, "{error}");
    assert!(
        error.message.contains(message),
        "message {:?} lacks {message:?}",
        error.message
    );
}
