//! The rule engine: [`rules`] parsed from YAML (the built-in ones and `behavior.rules_files`),
//! and the [`engine`] that follows each rule's chains through the records it is shown. The
//! pipeline's sequencer (in the exporter hub) shows it every record, in order.

pub mod engine;
pub mod rules;

use std::time::Duration;

use crate::config::{BehaviorConfig, Config};
use rules::{Rule, RuleError};

/// The rules a config asks for (`None` when the engine is off), loaded and checked even then;
/// a problem comes with the config key it is about.
pub fn rules_for(config: &Config) -> Result<Option<Vec<Rule>>, Vec<(String, String)>> {
    let rules = load_rules(&config.behavior).map_err(|(file, err)| {
        let key = file.map_or("behavior".to_owned(), |i| {
            format!("behavior.rules_files.{i}")
        });
        vec![(key, err.to_string())]
    })?;
    Ok(config.behavior.enabled.then_some(rules))
}

/// The built-in rules, then those of `behavior.rules_files`; the first problem refuses them all.
fn load_rules(config: &BehaviorConfig) -> Result<Vec<Rule>, (Option<usize>, RuleError)> {
    let window = Duration::from_secs(config.window_seconds);
    let mut all = rules::parse(rules::BUILTIN, window).map_err(|e| (None, e))?;
    for (i, path) in config.rules_files.iter().enumerate() {
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                Some(i),
                RuleError::Syntax(format!("cannot read `{path}`: {e}")),
            )
        })?;
        let rules = rules::parse(&text, window).map_err(|e| (Some(i), e))?;
        for rule in rules {
            if all.iter().any(|r| r.name == rule.name) {
                return Err((
                    Some(i),
                    RuleError::Rule {
                        rule: rule.name,
                        reason: "a rule of that name is already loaded".into(),
                    },
                ));
            }
            all.push(rule);
        }
    }
    Ok(all)
}
