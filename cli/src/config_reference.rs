//! `cloister config-reference`: the configuration reference of the router,
//! the enclave, the proxy and the dev stack (every option, its environment
//! variable and default), generated from the same definitions that parse
//! them. docs/configuration.md is this output; a test keeps it current.

use std::fmt::Write as _;

use clap::{Arg, Command};

/// The commands whose options are configuration.
const COMMANDS: &[&str] = &["router", "enclave", "proxy", "dev"];

/// The reference as Markdown.
pub(crate) fn render(root: &Command) -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Every option of `cloister router`, `cloister enclave`, `cloister proxy` and\n\
         `cloister dev`, with the environment variable that sets it and its default.\n\
         Generated from the code by `cloister config-reference`; a test fails when\n\
         this file and the code disagree (regenerate: `cloister config-reference >\n\
         docs/configuration.md`). A command-line option wins over its environment\n\
         variable; the router also reads a TOML file (`--config`, below).\n",
    );
    let _ = write!(
        out,
        "\n## The router's configuration file\n\n\
         `cloister router --config FILE` reads TOML with these keys (shown with their\n\
         defaults; the field documentation is in router/src/config.rs). The file is\n\
         read first, then environment variables, then flags, each overriding the one\n\
         before; `--print-config` prints the effective result, secrets redacted.\n\n\
         ```toml\n{}```\n",
        cloister_router::RouterConfig::default().to_redacted_toml()
    );
    for name in COMMANDS {
        let Some(cmd) = root.get_subcommands().find(|c| c.get_name() == *name) else {
            continue;
        };
        let about = cmd
            .get_about()
            .map(|a| one_line(&a.to_string()))
            .unwrap_or_default();
        let _ = write!(
            out,
            "\n## `cloister {name}`\n\n{about}\n\n| option | environment | default | meaning |\n|---|---|---|---|\n"
        );
        for arg in cmd.get_arguments().filter(|a| !is_builtin(a)) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                flag(arg),
                arg.get_env()
                    .map_or("".into(), |e| format!("`{}`", e.to_string_lossy())),
                default(arg),
                cell(&help(arg)),
            );
        }
    }
    out
}

fn is_builtin(arg: &Arg) -> bool {
    matches!(arg.get_id().as_str(), "help" | "version")
}

fn flag(arg: &Arg) -> String {
    let name = match (arg.get_long(), arg.get_short()) {
        (Some(l), _) => format!("--{l}"),
        (None, Some(s)) => format!("-{s}"),
        (None, None) => arg.get_id().to_string(),
    };
    let takes_value = arg.get_action().takes_values();
    match arg.get_value_names() {
        Some(v) if takes_value => format!("`{name} <{}>`", v.join("> <")),
        _ if takes_value => format!("`{name} <{}>`", arg.get_id().as_str().to_uppercase()),
        _ => format!("`{name}`"),
    }
}

fn default(arg: &Arg) -> String {
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if values.is_empty() {
        String::new()
    } else {
        format!("`{}`", values.join(","))
    }
}

fn help(arg: &Arg) -> String {
    let mut text = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| match v.get_help() {
            Some(h) => format!("`{}`: {}", v.get_name(), h),
            None => format!("`{}`", v.get_name()),
        })
        .collect();
    if !values.is_empty() && arg.get_action().takes_values() {
        let _ = write!(text, " Values: {}.", values.join("; "));
    }
    if arg.is_required_set() {
        text.insert_str(0, "Required. ");
    }
    text
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}
