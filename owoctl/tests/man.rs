//! The man pages in `man/`: each formats without a single groff warning, `owoctl.8` has an
//! entry for every subcommand `owoctl --help` lists, and `owo.yaml.5` one for every key of the
//! shipped `config.yaml`.
//!
//! The entries are marked the same way in both pages: a `.TP` whose tag line (the next line)
//! starts with the name in bold, `\fBname\fR`, e.g. `\fBtree\fR [\fB\-\-pid\fR \fIPID\fR]` or
//! `\fBoutput.file.path\fR (string, default ...)`. The sections of `config.yaml` are `.SS`
//! headings of `owo.yaml.5`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("owoctl lives in the workspace")
        .to_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read `{}`: {e}", path.display()))
}

fn page(name: &str) -> String {
    read(&workspace().join("man").join(name))
}

/// The tag line of every `.TP` entry (`.TP` or `.TP <indent>`, then the tag on the next line).
fn tag_lines(page: &str) -> Vec<&str> {
    let lines: Vec<&str> = page.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == ".TP" || w[0].starts_with(".TP "))
        .map(|w| w[1])
        .collect()
}

/// The name a tag line is for, if it starts with it in bold: `\fBname\fR`.
fn tagged_name(tag: &str) -> Option<&str> {
    let (name, _) = tag.strip_prefix(r"\fB")?.split_once(r"\fR")?;
    Some(name)
}

/// The names of the `.TP` entries between the `.SH` heading `section` and the next one.
fn entries(page: &str, section: &str) -> BTreeSet<String> {
    let heading = format!(".SH {section}\n");
    let start = page
        .find(&heading)
        .unwrap_or_else(|| panic!("the page has no `{}` section", heading.trim_end()));
    let rest = &page[start + heading.len()..];
    let text = &rest[..rest.find("\n.SH ").map_or(rest.len(), |i| i + 1)];
    tag_lines(text)
        .into_iter()
        .filter_map(tagged_name)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_page_formats_without_a_warning() {
    let mut failures = Vec::new();
    let pages: Vec<PathBuf> = std::fs::read_dir(workspace().join("man"))
        .expect("man/")
        .map(|entry| entry.expect("an entry of man/").path())
        .collect();
    assert!(pages.len() >= 5, "{pages:?}");
    for path in pages {
        let out = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(&path)
            .env("LC_ALL", "C")
            .output()
            .unwrap_or_else(|e| panic!("cannot run groff (package groff-base): {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || !stderr.trim().is_empty() {
            failures.push(format!(
                "`groff -man -ww -z {}` exited with {}:\n{}",
                path.display(),
                out.status,
                stderr.trim_end()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "man pages with groff warnings or errors:\n{}",
        failures.join("\n")
    );
}

/// The subcommands `owoctl --help` lists under `Commands:`, without `help`.
fn owoctl_subcommands() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_owoctl"))
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .expect("run owoctl --help");
    assert!(out.status.success(), "owoctl --help failed: {out:?}");
    let help = String::from_utf8(out.stdout).expect("owoctl --help is UTF-8");
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // `  name  about`; a wrapped about would be indented further.
        .filter(|l| l.starts_with("  ") && !l[2..].starts_with(char::is_whitespace))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(
        commands.iter().any(|c| c == "status"),
        "found no subcommands (not even `status`) in owoctl --help:\n{help}"
    );
    commands
}

#[test]
fn owoctl_page_has_an_entry_for_every_subcommand() {
    let commands = owoctl_subcommands();
    let documented = entries(&page("owoctl.8"), "COMMANDS");
    let missing: Vec<&String> = commands
        .iter()
        .filter(|c| !documented.contains(*c))
        .collect();
    assert!(
        missing.is_empty(),
        "man/owoctl.8 has no COMMANDS entry (`.TP`, then a line starting with `\\fB<name>\\fR`) \
         for these subcommands of `owoctl --help`: {missing:?}"
    );
    let stale: Vec<&String> = documented
        .iter()
        .filter(|d| !commands.contains(*d))
        .collect();
    assert!(
        stale.is_empty(),
        "man/owoctl.8 documents subcommands that `owoctl --help` does not list: {stale:?}"
    );
}

/// Every key of a YAML mapping as a dotted path, in the file's order, with whether its value
/// is itself a mapping. Lists are values: their items are not keys.
fn dotted_keys(value: &Value, prefix: &str, out: &mut Vec<(String, bool)>) {
    let Value::Object(map) = value else { return };
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        out.push((path.clone(), value.is_object()));
        dotted_keys(value, &path, out);
    }
}

#[test]
fn config_page_has_an_entry_for_every_key_of_config_yaml() {
    let path = workspace().join("config.yaml");
    let config: Value = serde_norway::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("`{}` is not valid YAML: {e}", path.display()));
    let mut keys = Vec::new();
    dotted_keys(&config, "", &mut keys);
    assert!(
        keys.iter().any(|(k, _)| k == "output.file.path"),
        "found no keys in `{}`: {keys:?}",
        path.display()
    );

    let man = page("owo.yaml.5");
    let documented = entries(&man, "KEYS");
    let headings: BTreeSet<&str> = man.lines().filter_map(|l| l.strip_prefix(".SS ")).collect();
    // A section (a top-level mapping) is a `.SS` heading; every other key a `.TP` entry.
    let missing: Vec<String> = keys
        .iter()
        .filter(|(key, mapping)| {
            if *mapping && !key.contains('.') {
                !headings.contains(key.as_str())
            } else {
                !documented.contains(key)
            }
        })
        .map(|(key, _)| key.clone())
        .collect();
    assert!(
        missing.is_empty(),
        "man/owo.yaml.5 does not document these keys of config.yaml (a section needs a `.SS <name>` \
         heading, a key a `.TP` entry whose next line starts with `\\fB<dotted.key>\\fR`):\n  {}",
        missing.join("\n  ")
    );
    let known: BTreeSet<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let stale: Vec<&String> = documented
        .iter()
        .filter(|d| !known.contains(d.as_str()))
        .collect();
    assert!(
        stale.is_empty(),
        "man/owo.yaml.5 documents keys that config.yaml does not have: {stale:?}"
    );
}
