//! `apiscope capture --config apiscope.yaml`: the capture flags kept in a file an operator can
//! keep in Git (the Helm chart renders one into a ConfigMap).
//!
//! The file's keys are the subcommand's own long flag names with `_` for `-` (`otlp_endpoint`
//! for `--otlp-endpoint`), so every flag is a key and no second list can fall behind the flags.
//! Each value is checked at start with the flag's own parser; an unknown key, a value of the
//! wrong kind or one the flag refuses stops the start with the key's name and line. The file's
//! settings become arguments placed before the command line's, so a flag given on the command
//! line overrides the file (and the file overrides the RUST_LOG and NODE_NAME variables, as a
//! flag would).

use std::ffi::OsString;
use std::path::Path;

use clap::{ArgAction, Command};

/// The flag that names the file; not a key of the file itself.
pub const CONFIG_FLAG: &str = "config";

/// Why a config file was refused: the message names the file, the line and the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigFileError(String);

/// Reads `path` and returns the `--flag=value` arguments of `command` (a subcommand, after
/// `Command::build` so that global flags are among its arguments) that the file sets.
pub fn file_arguments(command: &Command, path: &Path) -> Result<Vec<OsString>, ConfigFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigFileError(format!("config file {}: {e}", path.display())))?;
    parse_arguments(command, &text)
        .map_err(|e| ConfigFileError(format!("config file {}: {e}", path.display())))
}

/// The arguments the YAML `text` sets, in the file's order.
pub fn parse_arguments(command: &Command, text: &str) -> Result<Vec<OsString>, String> {
    let document: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    let mapping = match document {
        serde_yaml::Value::Null => return Ok(Vec::new()),
        serde_yaml::Value::Mapping(mapping) => mapping,
        _ => return Err("expected a mapping of flag names to values at the top".into()),
    };
    let mut arguments = Vec::new();
    for (key, value) in mapping {
        let key = match key {
            serde_yaml::Value::String(key) => key,
            other => return Err(format!("key {other:?} is not a string")),
        };
        let at = |message: String| match key_line(text, &key) {
            Some(line) => format!("line {line}: {key}: {message}"),
            None => format!("{key}: {message}"),
        };
        let flag = key.replace('_', "-");
        let arg = command
            .get_arguments()
            // One spelling per key: `_`, as YAML keys usually are.
            .filter(|_| !key.contains('-'))
            .find(|arg| arg.get_long() == Some(flag.as_str()) && flag != CONFIG_FLAG)
            .filter(|arg| !matches!(arg.get_action(), ArgAction::Help | ArgAction::Version));
        let Some(arg) = arg else {
            let hint = if key.contains('-') {
                format!(" (keys use `_`: {})", key.replace('-', "_"))
            } else {
                " (the keys are the flags of `apiscope capture`, `_` for `-`: docs/cli.md)".into()
            };
            return Err(at(format!("unknown key{hint}")));
        };
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, serde_yaml::Value::Bool(true)) => {
                arguments.push(OsString::from(format!("--{flag}")))
            }
            (ArgAction::SetTrue, serde_yaml::Value::Bool(false)) => {}
            (ArgAction::SetTrue, _) => return Err(at("expected true or false".into())),
            (_, value) => {
                let text = scalar_text(&value).ok_or_else(|| {
                    at("expected a single value (a string, number or boolean)".into())
                })?;
                let argument = OsString::from(format!("--{flag}={text}"));
                // The flag's own parser: the same check, and the same message, as on the command
                // line (clap keeps its value parsers' entry points to itself, so parse it alone).
                command
                    .clone()
                    .no_binary_name(true)
                    .try_get_matches_from([&argument])
                    .map_err(|e| at(first_line(&e.to_string())))?;
                arguments.push(argument);
            }
        }
    }
    Ok(arguments)
}

/// `args` (the whole command line, program name first) with `file_arguments` inserted right
/// after the subcommand named `subcommand`: later arguments win, so the command line's flags
/// override the file's. `args` unchanged if the subcommand is not there.
pub fn with_file_arguments(
    args: Vec<OsString>,
    subcommand: &str,
    file_arguments: Vec<OsString>,
) -> Vec<OsString> {
    // The subcommand is the first argument equal to its name that is not a global flag's value
    // (`--log capture` would be one).
    let position = args
        .iter()
        .enumerate()
        .skip(1)
        .find(|(index, arg)| *arg == subcommand && args[index - 1] != "--log")
        .map(|(index, _)| index);
    let Some(position) = position else {
        return args;
    };
    let mut out = Vec::with_capacity(args.len() + file_arguments.len());
    out.extend_from_slice(&args[..=position]);
    out.extend(file_arguments);
    out.extend_from_slice(&args[position + 1..]);
    out
}

fn scalar_text(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(text) => Some(text.clone()),
        serde_yaml::Value::Number(number) => Some(number.to_string()),
        serde_yaml::Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// clap's messages start with "error: " and may go on with usage lines.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message);
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// The 1-based line where the top-level `key` is written (keys of a block mapping start a line).
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.trim_start_matches(['"', '\'']);
            line.strip_prefix(key).is_some_and(|rest| {
                let rest = rest.trim_start_matches(['"', '\'']).trim_start();
                rest.starts_with(':')
            })
        })
        .map(|index| index + 1)
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction, Command, value_parser};

    use super::*;

    fn command() -> Command {
        let mut command = Command::new("capture")
            .arg(Arg::new("process-name").long("process-name"))
            .arg(
                Arg::new("queue-capacity")
                    .long("queue-capacity")
                    .value_parser(value_parser!(usize)),
            )
            .arg(
                Arg::new("include-outgoing")
                    .long("include-outgoing")
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("config").long("config"));
        command.build();
        command
    }

    fn strings(arguments: Vec<OsString>) -> Vec<String> {
        arguments
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn keys_become_flags_in_the_file_order() {
        let text = "process_name: my-apiserver\nqueue_capacity: 128\ninclude_outgoing: true\n";
        assert_eq!(
            strings(parse_arguments(&command(), text).unwrap()),
            [
                "--process-name=my-apiserver",
                "--queue-capacity=128",
                "--include-outgoing"
            ]
        );
        assert!(
            parse_arguments(&command(), "include_outgoing: false\n")
                .unwrap()
                .is_empty()
        );
        assert!(
            parse_arguments(&command(), "# nothing\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_their_name_and_line() {
        let error =
            parse_arguments(&command(), "process_name: a\n\nqueue_capacty: 1\n").unwrap_err();
        assert!(
            error.starts_with("line 3: queue_capacty: unknown key"),
            "{error}"
        );
        let error = parse_arguments(&command(), "queue-capacity: 1\n").unwrap_err();
        assert!(error.contains("keys use `_`: queue_capacity"), "{error}");
        let error = parse_arguments(&command(), "queue_capacity: lots\n").unwrap_err();
        assert!(
            error.starts_with("line 1: queue_capacity: invalid value 'lots'"),
            "{error}"
        );
        let error = parse_arguments(&command(), "include_outgoing: yes please\n").unwrap_err();
        assert!(error.contains("expected true or false"), "{error}");
        let error = parse_arguments(&command(), "process_name: [a, b]\n").unwrap_err();
        assert!(error.contains("expected a single value"), "{error}");
        // The file cannot name another file.
        let error = parse_arguments(&command(), "config: other.yaml\n").unwrap_err();
        assert!(error.contains("config: unknown key"), "{error}");
        assert!(parse_arguments(&command(), "- a\n").is_err());
        assert!(
            parse_arguments(&command(), "a: [\n")
                .unwrap_err()
                .starts_with("invalid YAML")
        );
    }

    #[test]
    fn file_arguments_go_right_after_the_subcommand() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let file = args(&["--queue-capacity=1"]);
        assert_eq!(
            with_file_arguments(
                args(&["apiscope", "--log", "capture", "capture", "--pid", "7"]),
                "capture",
                file.clone()
            ),
            args(&[
                "apiscope",
                "--log",
                "capture",
                "capture",
                "--queue-capacity=1",
                "--pid",
                "7"
            ])
        );
        assert_eq!(
            with_file_arguments(args(&["apiscope", "doctor"]), "capture", file),
            args(&["apiscope", "doctor"])
        );
    }
}
