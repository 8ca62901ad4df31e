//! The `--config` file: a TOML table whose keys are the flag names with `_` for `-`. It is
//! not a second definition of the settings: [`Cli::load`] turns each entry into the flag
//! it names (`num_partitions = 4` becomes `--num-partitions=4`), but only for settings that
//! neither a flag nor the environment gave, and parses again, so a file value goes through the
//! same value parser and clap rules as a flag and ranks between the environment and the default.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use super::{Cli, ConfigError};

/// Flags without a config-file key, and why.
pub const FLAG_ONLY: &[(&str, &str)] = &[("config", "it names the file itself")];

/// Every setting of `cmd` (its arguments but `--help` and `--version`).
pub fn settings(cmd: &clap::Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|a| {
        a.get_long().is_some()
            && !matches!(
                a.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    })
}

/// A setting's key in the `--config` file: its flag name with `_` for `-`, or `None` for a
/// flag in [`FLAG_ONLY`].
pub fn file_key(arg: &Arg) -> Option<String> {
    let long = arg.get_long()?;
    let flag_only = FLAG_ONLY.iter().any(|(flag, _)| *flag == long);
    (!flag_only).then(|| long.replace('-', "_"))
}

impl Cli {
    /// Parses `argv` and the `CHRONIK_*` environment, then fills the settings neither gave
    /// from the `--config` file, if there is one.
    pub fn load(argv: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Cli, ConfigError> {
        let mut argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
        let cmd = Cli::command();
        let matches = cmd.clone().try_get_matches_from(&argv)?;
        let given = matches.subcommand_matches("standalone").unwrap_or(&matches);
        let Some(path) = given.get_one::<std::path::PathBuf>("config") else {
            return Ok(Cli::from_arg_matches(&matches)?);
        };
        let from_file = file_args(&cmd, given, path)?;
        if from_file.is_empty() {
            return Ok(Cli::from_arg_matches(&matches)?);
        }
        argv.extend(from_file);
        // What can fail now is a clap rule between a file value and a flag or variable (two
        // settings that conflict), or a file value its parser refuses.
        let matches = cmd
            .try_get_matches_from(&argv)
            .map_err(|e| file_error(path, first_line(&e)))?;
        Ok(Cli::from_arg_matches(&matches)?)
    }
}

fn file_error(path: &Path, reason: String) -> ConfigError {
    ConfigError::File {
        path: path.display().to_string(),
        reason,
    }
}

/// clap's message on one line, without its `error: ` prefix and the usage after it.
fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ").trim_start_matches("error: ").to_string()
}

/// The file's entries as `--flag=value` arguments, for the settings `given` has at their
/// default. A key that names no setting is an error, so a typo never falls back silently.
fn file_args(
    cmd: &clap::Command,
    given: &ArgMatches,
    path: &Path,
) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| file_error(path, e.message().to_string()))?;
    let mut out = Vec::new();
    for (key, value) in &table {
        let Some(arg) = settings(cmd).find(|a| file_key(a).as_deref() == Some(key)) else {
            let reason = match FLAG_ONLY.iter().find(|(f, _)| f.replace('-', "_") == *key) {
                Some((flag, why)) => format!("`{key}` is not a file key: --{flag} {why}"),
                None => format!("unknown key `{key}`"),
            };
            return Err(file_error(path, reason));
        };
        let source = given.value_source(arg.get_id().as_str());
        if source.is_some_and(|s| s != ValueSource::DefaultValue) {
            continue; // a flag or the environment gave it
        }
        let args = as_args(arg, value).map_err(|r| file_error(path, format!("{key}: {r}")))?;
        out.extend(args.into_iter().map(OsString::from));
    }
    Ok(out)
}

/// One file entry as the command-line arguments that say the same.
fn as_args(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    use toml::Value as V;
    let long = arg.get_long().unwrap_or_default();
    if !arg.get_action().takes_values() {
        // A switch such as --rpc-insecure: true gives the flag, false leaves the default.
        return match value {
            V::Boolean(true) => Ok(vec![format!("--{long}")]),
            V::Boolean(false) => Ok(vec![]),
            _ => Err("must be true or false".into()),
        };
    }
    let scalar = |v: &V| match v {
        V::String(s) => Ok(s.clone()),
        V::Integer(i) => Ok(i.to_string()),
        V::Float(f) => Ok(f.to_string()),
        V::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("a {} is not a value here", other.type_str())),
    };
    let values = match value {
        // An empty list is one empty value, as `--flag ''`: set, with no element.
        V::Array(items) if items.is_empty() => vec![String::new()],
        V::Array(items) if matches!(arg.get_action(), ArgAction::Append) => {
            items.iter().map(scalar).collect::<Result<_, _>>()?
        }
        V::Array(_) => return Err("takes one value, not a list".into()),
        v => vec![scalar(v)?],
    };
    // `--flag=value` keeps a value that starts with `-` (retention_ms = -1) a value.
    Ok(values.iter().map(|v| format!("--{long}={v}")).collect())
}
