//! What every group of settings shares (the broker's in `config`, the listeners', the
//! connection limits'): the error a bad value gets, and the defaults read from a group's clap
//! definition. A leaf, so those groups and `config` do not import one another in a circle.

use clap::{Args, FromArgMatches};
use thiserror::Error;

/// A setting that is present but wrong. Printed as one line; the process exits with 2.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("invalid value for {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    /// A flag or environment variable clap refused (or `--help`); `clap::Error::exit` prints
    /// it with the usage.
    #[error("{0}")]
    Usage(#[from] clap::Error),
}

/// A group of settings at their defaults: `T`'s clap definition parsed with no arguments and
/// the environment ignored. The defaults are only written in the definitions.
pub(crate) fn defaults<T: Args + FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("defaults")).mut_args(|a| a.env(None));
    let parsed = cmd
        .try_get_matches_from(["defaults"])
        .and_then(|m| T::from_arg_matches(&m));
    // Only a bad default in the definition itself can fail: a bug every test would hit.
    parsed.unwrap_or_else(|e| panic!("a default in the settings' definition does not parse: {e}"))
}
