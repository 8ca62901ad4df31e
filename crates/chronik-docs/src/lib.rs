//! The generated parts of docs/operations.md. Each is rendered from the definitions the
//! binaries parse (clap commands, the `--config` file's keys), so the guide cannot drift from
//! them: `make docs` rewrites the sections, and a test fails when the committed copy differs.
//!
//! A generated section sits between two marker lines, everything else is hand-written:
//!
//! ```text
//! <!-- BEGIN GENERATED: server-settings -->
//! ...
//! <!-- END GENERATED: server-settings -->
//! ```

use clap::{Arg, ArgAction, Command, CommandFactory};
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum DocError {
    #[error("docs/operations.md has no `{0}` marker line for section `{1}`")]
    MissingMarker(&'static str, &'static str),
}

/// Renders one generated section's body.
type Renderer = fn() -> String;

/// Name and renderer of each generated section, in the order they appear.
pub const SECTIONS: &[(&str, Renderer)] = &[
    ("server-settings", server_settings),
    ("admin-commands", admin_commands),
    ("topic-configs", topic_configs),
];

/// `doc` with every generated section replaced by a fresh rendering.
pub fn render(doc: &str) -> Result<String, DocError> {
    let mut out = doc.to_string();
    for (name, body) in SECTIONS {
        out = splice(&out, name, &body())?;
    }
    Ok(out)
}

/// Replaces the lines between section `name`'s markers with `body`.
pub fn splice(doc: &str, name: &'static str, body: &str) -> Result<String, DocError> {
    let begin = format!("<!-- BEGIN GENERATED: {name} -->");
    let end = format!("<!-- END GENERATED: {name} -->");
    let b = doc
        .find(&begin)
        .ok_or(DocError::MissingMarker("BEGIN", name))?;
    let after_begin = b + begin.len();
    let e = doc[after_begin..]
        .find(&end)
        .map(|i| after_begin + i)
        .ok_or(DocError::MissingMarker("END", name))?;
    Ok(format!("{}\n{}{}", &doc[..after_begin], body, &doc[e..]))
}

/// Help text on one line.
fn help_line(arg: &Arg) -> String {
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    help.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The default in the argument's definition (`default_value`), never from its help text.
fn default_of(arg: &Arg) -> Option<String> {
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// A value in backticks; a default described in words ("the bound Kafka address") stays prose.
fn code(s: &str) -> String {
    if s.contains(' ') {
        s.to_string()
    } else {
        format!("`{s}`")
    }
}

/// Values an argument accepts, when clap knows them (enums, booleans).
fn possible_values(arg: &Arg) -> Option<String> {
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return None;
    }
    let v: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|p| !p.is_hide_set())
        .map(|p| p.get_name().to_string())
        .collect();
    (!v.is_empty()).then(|| v.join(" | "))
}

/// The default and meaning cells of a flag's table row (meaning with the accepted values).
/// A setting without a default is `unset`; its help says what that means.
fn flag_cells(arg: &Arg) -> (String, String) {
    let mut meaning = help_line(arg);
    if let Some(v) = possible_values(arg) {
        meaning.push_str(&format!(" (one of: {v})"));
    }
    let default = default_of(arg).map_or_else(|| "unset".into(), |d| cell(&code(&d)));
    (default, cell(&meaning))
}

fn visible_args(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
}

/// Every `chronik-server` setting: flag, environment variable, `--config` file key, default.
pub fn server_settings() -> String {
    use chronik_server::config::{
        file_key, settings, Cli, DEFAULT_LOG_FILTER, FLAG_ONLY, LOG_FILTER_ENV,
    };
    // Built, so that switches show their implicit default (`false`).
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = String::from(
        "| Flag | Environment | Config file key | Default | Meaning |\n|---|---|---|---|---|\n",
    );
    for arg in settings(&cmd).filter(|a| !a.is_hide_set()) {
        let Some(long) = arg.get_long() else { continue };
        let env = arg
            .get_env()
            .map(|e| code(&e.to_string_lossy()))
            .unwrap_or_else(|| "—".into());
        let key = match file_key(arg) {
            Some(key) => code(&key),
            None => FLAG_ONLY
                .iter()
                .find(|(flag, _)| *flag == long)
                .map_or_else(|| "—".into(), |(_, why)| format!("— ({why})")),
        };
        let (default, meaning) = flag_cells(arg);
        out.push_str(&format!(
            "| `--{long}` | {env} | {key} | {default} | {meaning} |\n"
        ));
    }
    out.push_str(&format!(
        "| — | `{LOG_FILTER_ENV}` | — | `{DEFAULT_LOG_FILTER}` | Log filter, in tracing's EnvFilter syntax (e.g. `info,chronik_replication=debug`) |\n"
    ));
    out
}

/// Every `chronik-admin` command with its arguments, and the global flags.
pub fn admin_commands() -> String {
    let cmd = chronik_admin::cli::Cli::command();
    let mut out = String::from(
        "Global flags (before the command):\n\n| Flag | Default | Meaning |\n|---|---|---|\n",
    );
    for arg in visible_args(&cmd) {
        let Some(long) = arg.get_long() else { continue };
        let (default, meaning) = flag_cells(arg);
        out.push_str(&format!("| `--{long}` | {default} | {meaning} |\n"));
    }
    out.push_str("\n| Command | Arguments | What it does |\n|---|---|---|\n");
    let mut leaves = Vec::new();
    collect_leaves(&cmd, String::from("chronik-admin"), &mut leaves);
    for (path, leaf) in leaves {
        let args: Vec<String> = visible_args(leaf)
            .map(|a| {
                let (help, default) = (help_line(a), default_of(a));
                let name = match a.get_long() {
                    Some(l) => format!("`--{l}`"),
                    None => format!("`{}`", a.get_id().as_str().to_uppercase()),
                };
                let mut s = name;
                if !help.is_empty() {
                    s.push_str(&format!(": {help}"));
                }
                if let Some(d) = default {
                    s.push_str(&format!(" (default {d})"));
                }
                s
            })
            .collect();
        let about = leaf
            .get_long_about()
            .or(leaf.get_about())
            .map(|a| {
                a.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{path}` | {} | {} |\n",
            if args.is_empty() {
                "—".to_string()
            } else {
                cell(&args.join("; "))
            },
            cell(&about)
        ));
    }
    out
}

/// The table of every topic config Kafka defines, with Chronik's rule for it
/// (chronik-server's `topic_config::SPECS`).
pub fn topic_configs() -> String {
    use chronik_server::topic_config::SPECS;
    let mut out = String::from("| Topic config | Default | Chronik | Note |\n|---|---|---|---|\n");
    for s in SPECS {
        let default = if s.default.is_empty() {
            "(empty)".to_string()
        } else {
            code(s.default)
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            s.name,
            cell(&default),
            s.rule.label(),
            cell(s.note)
        ));
    }
    out
}

fn collect_leaves<'a>(cmd: &'a Command, path: String, out: &mut Vec<(String, &'a Command)>) {
    let subs: Vec<&Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    if subs.is_empty() {
        out.push((path, cmd));
        return;
    }
    for s in subs {
        collect_leaves(s, format!("{path} {}", s.get_name()), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_between_markers() {
        let doc = "a\n<!-- BEGIN GENERATED: server-settings -->\nold\n<!-- END GENERATED: server-settings -->\nb\n";
        let got = splice(doc, "server-settings", "new\n").unwrap();
        assert_eq!(
            got,
            "a\n<!-- BEGIN GENERATED: server-settings -->\nnew\n<!-- END GENERATED: server-settings -->\nb\n"
        );
        assert_eq!(
            splice("x", "admin-commands", ""),
            Err(DocError::MissingMarker("BEGIN", "admin-commands"))
        );
    }

    #[test]
    fn server_settings_name_every_flag_with_env_key_and_default() {
        let t = server_settings();
        assert!(
            t.contains("| `--data-dir` | `CHRONIK_DATA_DIR` | `data_dir` | `./data` |"),
            "{t}"
        );
        assert!(
            t.contains("| `--replica-lag-time-max-ms` | `CHRONIK_REPLICA_LAG_TIME_MAX_MS` | `replica_lag_time_max_ms` | `10000` |"),
            "{t}"
        );
        assert!(
            t.contains("| `--join` | `CHRONIK_JOIN` | `join` | unset |"),
            "{t}"
        );
        assert!(
            t.contains("| `--config` | `CHRONIK_CONFIG` | — (it names the file itself) | unset |"),
            "{t}"
        );
        assert!(t.contains("`CHRONIK_LOG`"));
    }

    /// Each row has a config-file key or the reason it has none, and no default is taken from
    /// help text: a default is in the definition (`default_value`) or there is none.
    #[test]
    fn every_server_flag_has_a_key_or_a_reason_and_defaults_come_from_the_definition() {
        let t = server_settings();
        let rows: Vec<&str> = t.lines().filter(|l| l.starts_with("| `--")).collect();
        assert!(rows.len() > 40, "{t}");
        for row in rows {
            let cells: Vec<&str> = row.split(" | ").collect();
            let key = cells[2];
            assert!(
                key.starts_with('`') || (key.starts_with("— (") && key.len() > 5),
                "{row}"
            );
            assert!(!row.contains("[default:"), "{row}");
        }
        let cmd = chronik_server::config::Cli::command();
        for arg in chronik_server::config::settings(&cmd) {
            assert!(
                !help_line(arg).contains("[default:"),
                "{:?}",
                arg.get_long()
            );
        }
    }

    #[test]
    fn admin_commands_list_leaf_commands() {
        let t = admin_commands();
        assert!(
            t.contains("| `chronik-admin cluster rolling-restart-check` |"),
            "{t}"
        );
        assert!(t.contains("| `--server` | `127.0.0.1:9093` |"), "{t}");
    }
}
