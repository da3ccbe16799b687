//! The config file (owo.yaml(5)): typed, with defaults for every key, and validated so that every
//! problem in a file is reported at once with its key and line. Nothing here touches the kernel.

mod compat;
mod lines;
#[cfg(test)]
pub(crate) use lines::tests::{alias_bomb, any_yaml_value};

use std::{collections::BTreeMap, fmt, path::Path, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

pub use lines::check_expansion;
use lines::KeyLines;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub agent: AgentConfig,
    pub monitor: MonitorConfig,
    pub enrich: EnrichConfig,
    pub behavior: BehaviorConfig,
    pub output: OutputConfig,
    pub logging: LoggingConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Shown as `agent_name`; "" = `hostname`.
    pub name: String,
    /// Shown as `agent_hostname`; "" = the machine's hostname.
    pub hostname: String,
    /// Shown as `agent_group`, free text for the SIEM to group by.
    pub group: String,
    /// A `heartbeat` record this often; 0 = none.
    pub heartbeat_seconds: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            name: String::new(),
            hostname: String::new(),
            group: String::new(),
            heartbeat_seconds: 60,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Process executions.
    pub execve: bool,
    /// Another eBPF object to load instead of the built-in one ("" = built in).
    pub ebpf_path: String,
    /// open/create/unlink/rename and library loads.
    pub file_events: bool,
    /// Report file events everywhere, not only under `file_watch_paths`.
    pub file_watch_all_paths: bool,
    /// Path prefixes whose file events are reported.
    pub file_watch_paths: Vec<String>,
    /// connect/accept/sendto, with DNS names.
    pub network_events: bool,
    /// set*id calls.
    pub privilege_events: bool,
    /// Process exits, with exit code and signal.
    pub exit_events: bool,
    /// write(2) calls: noisy, off by default.
    pub write_events: bool,
    /// Kernel module loads.
    pub module_events: bool,
    /// The activity monitors also see 32-bit compat syscalls (x86: `int 0x80`, ia32
    /// programs), at some cost to every syscall.
    pub compat_syscalls: bool,
}

impl MonitorConfig {
    /// Is this monitor switched on? (Forks are internal: the process table always needs them.)
    pub fn wants(&self, monitor: owo_common::abi::Monitor) -> bool {
        use owo_common::abi::Monitor;
        match monitor {
            Monitor::Execve => self.execve,
            Monitor::Exit => self.exit_events,
            Monitor::File => self.file_events,
            Monitor::Network => self.network_events,
            Monitor::Privilege => self.privilege_events,
            Monitor::Write => self.write_events,
            Monitor::Module => self.module_events,
            Monitor::Fork | Monitor::Tamper => true,
        }
    }
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            execve: true,
            ebpf_path: String::new(),
            file_events: true,
            file_watch_all_paths: false,
            file_watch_paths: [
                "/etc",
                "/usr/bin",
                "/usr/sbin",
                "/bin",
                "/sbin",
                "/tmp",
                "/dev/shm",
                "/var/tmp",
            ]
            .map(String::from)
            .to_vec(),
            network_events: true,
            privilege_events: true,
            exit_events: true,
            write_events: false,
            module_events: true,
            compat_syscalls: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichConfig {
    /// SHA-256 of executed binaries.
    pub sha256: bool,
    /// Larger binaries are not hashed.
    pub sha256_max_file_mb: u64,
    /// Processes the process table holds at most; past it the exited, then the newest, go.
    pub process_table_max: u64,
    /// And the mebibytes their names and argv take at most, the same way.
    pub process_table_max_mb: u64,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            sha256: true,
            sha256_max_file_mb: 100,
            process_table_max: 65_536,
            process_table_max_mb: 32,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BehaviorConfig {
    /// Correlate events into alerts.
    pub enabled: bool,
    /// How long a sequence may take, for rules that do not say (`within`).
    pub window_seconds: u64,
    /// Rules files loaded after the built-in rules.
    pub rules_files: Vec<String>,
}

impl Default for BehaviorConfig {
    fn default() -> Self {
        BehaviorConfig {
            enabled: true,
            window_seconds: 15,
            rules_files: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    pub file: FileOutputConfig,
    /// Also write every record to stderr.
    pub stderr: bool,
    /// The schema of the records written to stderr.
    pub stderr_format: Format,
    pub remote: RemoteConfig,
    /// More collectors, each like `remote`.
    pub remotes: Vec<RemoteConfig>,
}

/// The schema a sink's records are written in: owod's own (owo-records(7)), Elastic Common
/// Schema 8 or OCSF 1.7 (owo.yaml(5) has the mapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Owo,
    Ecs,
    Ocsf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileOutputConfig {
    pub enabled: bool,
    /// JSON lines, one record each; the directory is created, the file is mode 0640.
    pub path: PathBuf,
    pub format: Format,
}

/// Every `format` of a sink that is not a format's name, each a problem at its line (serde
/// would refuse the first one with no key).
fn check_formats(user: &serde_norway::Value, lines: &KeyLines, problems: &mut Vec<Problem>) {
    let output = &user["output"];
    let mut keys = vec![
        ("output.file.format".to_owned(), &output["file"]["format"]),
        ("output.stderr_format".to_owned(), &output["stderr_format"]),
        (
            "output.remote.format".to_owned(),
            &output["remote"]["format"],
        ),
    ];
    if let Some(remotes) = output["remotes"].as_sequence() {
        for (i, remote) in remotes.iter().enumerate() {
            keys.push((format!("output.remotes.{i}.format"), &remote["format"]));
        }
    }
    let names = Format::ALL.map(Format::name);
    for (key, value) in keys {
        // Not a string at all: check_shape has said so.
        match value.as_str() {
            None => {}
            Some(name) if names.contains(&name) => {}
            Some(_) => problems.push(Problem::at(
                lines,
                &key,
                format!("is not one of {}", names.join(", ")),
            )),
        }
    }
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Owo, Format::Ecs, Format::Ocsf];

    pub fn name(self) -> &'static str {
        match self {
            Format::Owo => "owo",
            Format::Ecs => "ecs",
            Format::Ocsf => "ocsf",
        }
    }
}

impl Default for FileOutputConfig {
    fn default() -> Self {
        FileOutputConfig {
            enabled: true,
            path: PathBuf::from("/var/log/edr/alerts.jsonl"),
            format: Format::Owo,
        }
    }
}

/// One remote collector (`output.remote`, or an entry of `output.remotes`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteConfig {
    pub enabled: bool,
    /// host:port of the collector; a remote without one is off.
    pub address: String,
    /// tcp, tls, http, https or syslog (RFC 5424, octet-counted; over TLS when `tls` is set).
    pub protocol: String,
    /// The path records are POSTed to (http, https).
    pub http_endpoint: String,
    /// The first wait after a failure; it doubles (with jitter) up to a minute.
    pub retry_interval_seconds: u64,
    /// How long connecting, or sending one batch and hearing its answer, may take before the
    /// connection is given up and the batch tried again.
    pub timeout_seconds: u64,
    pub tls: TlsConfig,
    /// Extra HTTP headers (a Splunk HEC token, an Elastic API key).
    pub headers: BTreeMap<String, String>,
    /// The schema of the records (each line, or each item of an HTTP body).
    pub format: Format,
    /// ndjson, elasticsearch_bulk or splunk_hec.
    pub http_format: String,
    /// none, or alert: each record wrapped as the Go agent sent it (tcp, tls, http, https).
    pub envelope: String,
    pub batch_max_events: u64,
    pub batch_max_bytes: u64,
    pub flush_interval_ms: u64,
    pub spool: SpoolConfig,
    /// nats: the subject records are published to.
    pub nats_subject: String,
    /// nats: a JetStream stream (on `nats_subject`) to create if missing; "" = provisioned elsewhere.
    pub nats_stream: String,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            enabled: false,
            address: String::new(),
            protocol: "tcp".to_owned(),
            http_endpoint: "/events".to_owned(),
            retry_interval_seconds: 5,
            timeout_seconds: 30,
            tls: TlsConfig::default(),
            headers: BTreeMap::new(),
            format: Format::Owo,
            http_format: "ndjson".to_owned(),
            envelope: "none".to_owned(),
            batch_max_events: 500,
            batch_max_bytes: 1 << 20,
            flush_interval_ms: 200,
            spool: SpoolConfig::default(),
            nats_subject: "owo.events".to_owned(),
            nats_stream: String::new(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA(s) to trust; "" = the system's roots.
    pub ca_file: String,
    /// PEM client certificate and key, for mutual TLS.
    pub cert_file: String,
    pub key_file: String,
    /// The name to check in the server's certificate; "" = the host of `address`.
    pub server_name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// "" = /var/lib/owo/spool/<remote>.
    pub dir: String,
    /// Past this, the oldest spooled records go (counted and reported).
    pub max_mb: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: String::new(),
            max_mb: 256,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// trace, debug, info, warn or error.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".to_owned(),
        }
    }
}

/// One thing wrong with a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    fn at(lines: &KeyLines, key: &str, message: String) -> Problem {
        Problem {
            key: key.to_owned(),
            line: lines.line(key),
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.key, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} in `{}`:\n  {}", plural(.problems.len()), .path.display(), .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 problem".to_owned()
    } else {
        format!("{n} problems")
    }
}

pub const REMOTE_PROTOCOLS: [&str; 7] = ["tcp", "tls", "http", "https", "syslog", "relp", "nats"];
pub const HTTP_FORMATS: [&str; 3] = ["ndjson", "elasticsearch_bulk", "splunk_hec"];
pub const ENVELOPES: [&str; 2] = ["none", "alert"];

impl RemoteConfig {
    /// What is wrong with an enabled remote.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.protocol.as_str() {
            p if REMOTE_PROTOCOLS.contains(&p) => {}
            p => out.push(format!(
                "protocol `{p}` is not one of {}",
                REMOTE_PROTOCOLS.join(", ")
            )),
        }
        if self
            .address
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .is_none()
        {
            out.push(format!("address `{}` is not host:port", self.address));
        }
        // The request line of a POST to anything else cannot be written.
        if matches!(self.protocol.as_str(), "http" | "https")
            && !self.http_endpoint.starts_with('/')
        {
            out.push(format!(
                "http_endpoint `{}` is not a path starting with /",
                self.http_endpoint.escape_debug()
            ));
        }
        match self.envelope.as_str() {
            "none" => {}
            "alert" if self.format != Format::Owo => out.push(format!(
                "envelope `alert` wraps owo records, not format `{}`",
                self.format.name()
            )),
            "alert"
                if matches!(self.protocol.as_str(), "http" | "https")
                    && self.http_format != "ndjson" =>
            {
                out.push(format!(
                    "envelope `alert` is the Go agent's JSON body, not http_format `{}`",
                    self.http_format
                ))
            }
            "alert" if matches!(self.protocol.as_str(), "tcp" | "tls" | "http" | "https") => {}
            "alert" => out.push(format!(
                "envelope `alert` is the Go agent's, for tcp, tls, http and https, not `{}`",
                self.protocol
            )),
            other => out.push(format!(
                "envelope `{}` is not one of {}",
                other.escape_debug(),
                ENVELOPES.join(", ")
            )),
        }
        if !HTTP_FORMATS.contains(&self.http_format.as_str()) {
            out.push(format!(
                "http_format `{}` is not one of {}",
                self.http_format,
                HTTP_FORMATS.join(", ")
            ));
        }
        for (name, file) in [
            ("ca_file", &self.tls.ca_file),
            ("cert_file", &self.tls.cert_file),
            ("key_file", &self.tls.key_file),
        ] {
            if !file.is_empty() && !Path::new(file).is_file() {
                out.push(format!("tls.{name} `{file}` is not a file"));
            }
        }
        if self.tls.cert_file.is_empty() != self.tls.key_file.is_empty() {
            out.push("tls.cert_file and tls.key_file go together".to_owned());
        }
        if self.batch_max_events == 0 || self.batch_max_bytes == 0 || self.flush_interval_ms == 0 {
            out.push(
                "batch_max_events, batch_max_bytes and flush_interval_ms must be at least 1"
                    .to_owned(),
            );
        }
        // A wait past an hour is a mistake, and past u64 seconds a panic in the sender.
        if self.retry_interval_seconds > 3600 {
            out.push("retry_interval_seconds is at most 3600".to_owned());
        }
        if !(1..=3600).contains(&self.timeout_seconds) {
            out.push("timeout_seconds is from 1 to 3600".to_owned());
        }
        // Checked as the HTTP client checks them: one it refuses would fail every send.
        for (name, value) in &self.headers {
            if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                out.push(format!(
                    "headers: `{}` is not an HTTP header name",
                    name.escape_debug()
                ));
            }
            if hyper::header::HeaderValue::from_str(value).is_err() {
                out.push(format!(
                    "headers: the value of `{}` is not an HTTP header value",
                    name.escape_debug()
                ));
            }
        }
        if self.spool.max_mb == 0 {
            out.push("spool.max_mb must be at least 1".to_owned());
        }
        out
    }

    /// Each record a request of its own: the Go agent's envelope over HTTP.
    pub fn posts_each_record(&self) -> bool {
        self.envelope == "alert" && matches!(self.protocol.as_str(), "http" | "https")
    }

    /// How long sending a batch of `records` may take: `timeout_seconds`, for each request.
    pub fn send_timeout(&self, records: usize) -> Duration {
        let requests = if self.posts_each_record() { records } else { 1 };
        Duration::from_secs(self.timeout_seconds).saturating_mul(requests.max(1) as u32)
    }

    /// Over TLS?
    pub fn uses_tls(&self) -> bool {
        matches!(self.protocol.as_str(), "tls" | "https")
            || (matches!(self.protocol.as_str(), "syslog" | "relp" | "nats")
                && self.tls != TlsConfig::default())
    }
}

pub const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// The config file owod reads. One named on the command line must be there. The default one
/// (`/etc/owo/config.yaml`) may be missing: then owod runs on the built-in defaults, as the Go
/// agent did without `-config`.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// Named on the command line.
    pub named: bool,
}

/// A config owod can run with, and a warning for each key in it read only for the Go agent's
/// configs.
#[derive(Debug, PartialEq)]
pub struct Parsed {
    pub config: Config,
    pub warnings: Vec<Problem>,
}

/// A config file loaded, with what was built from it.
#[derive(Debug)]
pub struct Loaded<T> {
    pub config: Config,
    pub built: T,
    pub warnings: Vec<Problem>,
    /// There was no file: this is the built-in default config.
    pub defaults: bool,
}

impl ConfigFile {
    /// Read, parse and validate the file (or take the defaults, where it may be missing and is),
    /// then build from it what more there is to check (the behavior rules, from the files it
    /// names): `build` returns that, or its problems, each with the key it is about.
    pub fn load<T>(
        &self,
        build: impl FnOnce(&Config) -> Result<T, Vec<(String, String)>>,
    ) -> Result<Loaded<T>, ConfigError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.named => None,
            Err(source) => {
                return Err(ConfigError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let invalid = |problems| ConfigError::Invalid {
            path: self.path.clone(),
            problems,
        };
        let Parsed { config, warnings } = match &text {
            Some(text) => Config::parse(text).map_err(invalid)?,
            None => Parsed {
                config: Config::default(),
                warnings: Vec::new(),
            },
        };
        let built = build(&config).map_err(|problems| {
            let lines = text.as_deref().map(KeyLines::parse).unwrap_or_default();
            invalid(
                problems
                    .into_iter()
                    .map(|(key, message)| Problem::at(&lines, &key, message))
                    .collect(),
            )
        })?;
        Ok(Loaded {
            config,
            built,
            warnings,
            defaults: text.is_none(),
        })
    }

    /// One line in the log for each key read only for the Go agent's configs.
    pub fn log_warnings(&self, warnings: &[Problem]) {
        for warning in warnings {
            tracing::warn!("{}: {warning}", self.path.display());
        }
    }
}

impl Config {
    /// Parse and validate; on failure, every problem found.
    pub fn parse(text: &str) -> Result<Parsed, Vec<Problem>> {
        if let Err(why) = lines::check_expansion(text) {
            return Err(vec![Problem {
                key: String::new(),
                line: None,
                message: format!("not accepted: {why}"),
            }]);
        }
        let mut user: serde_norway::Value = match serde_norway::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let line = e.location().map(|l| l.line());
                return Err(vec![Problem {
                    key: String::new(),
                    line,
                    message: format!("not valid YAML: {e}"),
                }]);
            }
        };
        let lines = KeyLines::parse(text);
        let default =
            serde_json::to_value(Config::default()).expect("the default config serializes");
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        match user {
            // An empty file is the default config.
            serde_norway::Value::Null => {
                return Ok(Parsed {
                    config: Config::default(),
                    warnings,
                })
            }
            ref mut user => {
                compat::apply(user, &lines, &mut warnings, &mut problems);
                lines::check_shape(user, &default, "", &lines, &mut problems);
                check_formats(user, &lines, &mut problems);
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let config: Config = serde_norway::from_value(user).map_err(|e| {
            vec![Problem {
                key: String::new(),
                line: None,
                message: format!("cannot be read: {e}"),
            }]
        })?;
        config.validate(&lines)?;
        Ok(Parsed { config, warnings })
    }

    /// The checks that the types cannot express.
    fn validate(&self, lines: &KeyLines) -> Result<(), Vec<Problem>> {
        let mut out = Vec::new();
        let mut problem = |key: &str, message: String| out.push(Problem::at(lines, key, message));
        for (key, value) in [
            ("agent.name", &self.agent.name),
            ("agent.hostname", &self.agent.hostname),
            ("agent.group", &self.agent.group),
        ] {
            if value.len() > 255 || value.chars().any(char::is_control) {
                problem(
                    key,
                    "must be at most 255 bytes with no control characters".to_owned(),
                );
            }
        }
        if self.agent.heartbeat_seconds > 86_400 {
            problem(
                "agent.heartbeat_seconds",
                "is at most 86400 (a day); 0 means no heartbeat".to_owned(),
            );
        }
        for (i, p) in self.monitor.file_watch_paths.iter().enumerate() {
            let key = format!("monitor.file_watch_paths.{i}");
            if !p.starts_with('/') {
                problem(&key, format!("`{p}` is not an absolute path"));
            } else if p.trim_end_matches('/').len() >= owo_common::abi::WATCH_MAX {
                problem(
                    &key,
                    format!("longer than {} bytes", owo_common::abi::WATCH_MAX - 1),
                );
            }
        }
        if self.monitor.file_watch_paths.len() > owo_common::abi::WATCH_PATHS as usize {
            problem(
                "monitor.file_watch_paths",
                format!(
                    "at most {} paths can be watched",
                    owo_common::abi::WATCH_PATHS
                ),
            );
        }
        if !self.monitor.ebpf_path.is_empty() && !Path::new(&self.monitor.ebpf_path).is_file() {
            problem(
                "monitor.ebpf_path",
                format!("`{}` is not a file", self.monitor.ebpf_path),
            );
        }
        if self.enrich.sha256_max_file_mb == 0 {
            problem("enrich.sha256_max_file_mb", "must be at least 1".to_owned());
        }
        if self.enrich.process_table_max < 64 {
            problem("enrich.process_table_max", "must be at least 64".to_owned());
        }
        if !(1..=4096).contains(&self.enrich.process_table_max_mb) {
            problem(
                "enrich.process_table_max_mb",
                "must be from 1 to 4096".to_owned(),
            );
        }
        // A chain waits at most a day: past it, a window is a mistake (and its memory is held).
        if !(1..=86_400).contains(&self.behavior.window_seconds) {
            problem(
                "behavior.window_seconds",
                "must be from 1 to 86400".to_owned(),
            );
        }
        let file = &self.output.file;
        if file.enabled && (!file.path.is_absolute() || file.path.file_name().is_none()) {
            problem(
                "output.file.path",
                format!("`{}` is not an absolute file path", file.path.display()),
            );
        }
        let remotes: Vec<(String, &RemoteConfig)> =
            std::iter::once(("output.remote".to_owned(), &self.output.remote))
                .chain(
                    self.output
                        .remotes
                        .iter()
                        .enumerate()
                        .map(|(i, r)| (format!("output.remotes.{i}"), r)),
                )
                .collect();
        for (key, remote) in &remotes {
            if !remote.enabled {
                continue;
            }
            for message in remote.problems() {
                problem(key, message);
            }
        }
        if !file.enabled && !self.output.stderr && !remotes.iter().any(|(_, r)| r.enabled) {
            problem(
                "output",
                "no output is enabled: every record would be lost".to_owned(),
            );
        }
        if !LOG_LEVELS.contains(&self.logging.level.as_str()) {
            problem(
                "logging.level",
                format!(
                    "`{}` is not one of {}",
                    self.logging.level,
                    LOG_LEVELS.join(", ")
                ),
            );
        }
        if out.is_empty() {
            Ok(())
        } else {
            Err(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What each problem or warning is about, and where.
    fn keys_and_lines(notes: &[Problem]) -> Vec<(&str, Option<usize>)> {
        notes.iter().map(|p| (p.key.as_str(), p.line)).collect()
    }

    proptest::proptest! {
        /// Any text is a config or a list of problems, never a panic.
        #[test]
        fn any_text_is_read_or_refused(text in "\\PC{0,400}") {
            let _ = Config::parse(&text);
        }

        /// Text shaped like a config, with values of any kind where values go.
        #[test]
        fn any_values_in_a_config_are_read_or_refused(
            section in proptest::sample::select(vec!["agent", "monitor", "output", "enrich", "behavior", "logging"]),
            key in "[a-z_]{1,24}",
            value in any_yaml_value(),
        ) {
            let _ = Config::parse(&format!("{section}:\n  {key}: {value}\n"));
        }
    }

    #[test]
    fn values_that_would_fail_at_run_time_fail_the_check() {
        let text = "behavior:\n  window_seconds: 1000000000000\noutput:\n  remote:\n    enabled: true\n    protocol: http\n    address: \"127.0.0.1:1\"\n    headers:\n      \"Bad Name\": x\n      X-Token: \"a\\nb\"\n";
        let problems = Config::parse(text).unwrap_err();
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert!(
            messages.contains(&"must be from 1 to 86400"),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("`Bad Name` is not an HTTP header name")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("the value of `X-Token` is not an HTTP header value")),
            "{messages:?}"
        );
    }

    #[test]
    fn an_alias_bomb_is_a_clear_problem_not_gigabytes() {
        let problems = Config::parse(&alias_bomb("agent_group")).unwrap_err();
        assert!(
            problems[0].message.contains("aliases expand it"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_shipped_config_parses_and_is_the_default() {
        let text = include_str!("../../../config.yaml");
        let parsed = Config::parse(text).expect("the shipped config");
        assert_eq!(parsed.config, Config::default());
        assert_eq!(parsed.warnings, []);
    }

    /// The file the Go agent's install steps copied to /etc/owo/config.yaml, as it shipped.
    #[test]
    fn the_go_agents_shipped_config_loads_with_its_meaning() {
        let text = include_str!("../../tests/data/go-agent-config.yaml");
        let Parsed { config, warnings } = Config::parse(text).expect("the Go agent's config");
        assert!(config.monitor.file_watch_all_paths);
        assert!(config.output.stderr);
        let remote = &config.output.remote;
        assert!(!remote.enabled);
        assert_eq!(remote.address, "");
        assert_eq!(remote.http_endpoint, "/alerts");
        assert_eq!(remote.retry_interval_seconds, 10);
        assert_eq!(
            keys_and_lines(&warnings),
            vec![
                ("output.remote.max_retries", Some(29)),
                ("output.remote.retry_interval", Some(30))
            ]
        );
        assert_eq!(
            warnings[1].to_string(),
            "line 30: `output.remote.retry_interval`: read for the Go agent's configs: use \
             `output.remote.retry_interval_seconds`"
        );
        assert!(warnings[0].message.contains("spool.max_mb"), "{warnings:?}");
        assert_eq!(config.output.remote.envelope, "none", "its remote is off");
    }

    /// Values as the Go agent read them: yaml.v3's YAML 1.1 booleans and its start-up defaults.
    #[test]
    fn the_go_agents_own_readings_of_values_are_kept_with_a_warning_each() {
        let text = "monitor:\n  execve: yes\n  write_events: Off\noutput:\n  file:\n    enabled: true\n    path: \"\"\n  stderr: on\n  remote:\n    enabled: true\n    address: \"\"\n    protocol: HTTP\n    http_endpoint: \"\"\n    retry_interval: 0\nlogging:\n  level: verbose\n";
        let Parsed { config, warnings } = Config::parse(text).expect("a Go agent's config");
        assert!(config.monitor.execve && !config.monitor.write_events && config.output.stderr);
        assert!(!config.output.file.enabled, "an empty path writes no file");
        let remote = &config.output.remote;
        assert!(!remote.enabled, "a remote with no address is off");
        assert_eq!(remote.protocol, "http");
        assert_eq!(remote.http_endpoint, "/alerts");
        assert_eq!(remote.retry_interval_seconds, 10);
        assert_eq!(
            remote.envelope, "alert",
            "a Go agent's remote keeps its envelope"
        );
        assert_eq!(config.logging.level, "info");
        let said = "output:\n  remote:\n    enabled: true\n    address: \"h:1\"\n    max_retries: 5\n    envelope: none\n";
        assert_eq!(
            Config::parse(said).unwrap().config.output.remote.envelope,
            "none"
        );
        assert_eq!(
            keys_and_lines(&warnings),
            vec![
                ("monitor.execve", Some(2)),
                ("monitor.write_events", Some(3)),
                ("output.file.path", Some(7)),
                ("output.stderr", Some(8)),
                ("output.remote.address", Some(11)),
                ("output.remote.protocol", Some(12)),
                ("output.remote.http_endpoint", Some(13)),
                // Its envelope (a Go agent's remote), and the key's new name.
                ("output.remote.retry_interval", Some(14)),
                ("output.remote.retry_interval", Some(14)),
                ("logging.level", Some(16)),
            ],
            "{warnings:#?}"
        );
        assert_eq!(
            warnings[0].to_string(),
            "line 2: `monitor.execve`: `yes` is a boolean only in YAML 1.1, which the Go agent \
             read: write true"
        );
        // Words that are no boolean in either YAML stay a problem.
        let problems = Config::parse("monitor:\n  execve: maybe\n").unwrap_err();
        assert_eq!(problems[0].key, "monitor.execve");
    }

    #[test]
    fn an_http_path_that_is_no_path_is_a_problem() {
        let text = "output:\n  remote:\n    enabled: true\n    protocol: https\n    address: \"h:443\"\n    http_endpoint: events\n";
        let problems = Config::parse(text).unwrap_err();
        assert!(
            problems[0]
                .message
                .contains("is not a path starting with /"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_format_is_one_of_three_and_the_go_envelope_wraps_only_owo_records() {
        let text = "output:\n  file:\n    format: ecs\n  stderr_format: ocsf\n";
        let config = Config::parse(text).unwrap().config;
        assert_eq!(
            (config.output.file.format, config.output.stderr_format),
            (Format::Ecs, Format::Ocsf)
        );
        for format in Format::ALL {
            let text = format!("output:\n  file:\n    format: {}\n", format.name());
            assert_eq!(
                Config::parse(&text).unwrap().config.output.file.format,
                format
            );
        }
        let problems = Config::parse("agent:\n  heartbeat_seconds: 90000\n").unwrap_err();
        assert_eq!(
            keys_and_lines(&problems),
            vec![("agent.heartbeat_seconds", Some(2))]
        );
        let problems = Config::parse("output:\n  file:\n    format: cef\n").unwrap_err();
        assert_eq!(
            keys_and_lines(&problems),
            vec![("output.file.format", Some(3))]
        );
        assert!(
            problems[0].message.contains("owo") && problems[0].message.contains("ocsf"),
            "{problems:?}"
        );
        let text = "output:\n  remote:\n    enabled: true\n    address: \"h:1\"\n    envelope: alert\n    format: ocsf\n";
        let problems = Config::parse(text).unwrap_err();
        assert!(
            problems[0].message.contains("not format `ocsf`"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_kept_key_and_its_replacement_together_are_a_problem() {
        let text = "output:\n  remote:\n    retry_interval: 3\n    retry_interval_seconds: 4\n";
        let problems = Config::parse(text).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "output.remote.retry_interval");
        assert_eq!(problems[0].line, Some(3));
        // Only the Go agent's own remote: owod's `remotes` never had these keys.
        let text = "output:\n  remotes:\n    - retry_interval: 3\n      address: \"h:1\"\n";
        let problems = Config::parse(text).unwrap_err();
        assert!(problems[0].message.contains("unknown key"), "{problems:?}");
    }

    #[test]
    fn an_empty_file_or_section_is_the_default() {
        assert_eq!(Config::parse("").map(|p| p.config), Ok(Config::default()));
        assert_eq!(
            Config::parse("monitor:\n").map(|p| p.config),
            Ok(Config::default())
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_line() {
        let text = "agent:\n  name: ws1\nmonitor:\n  execve: yes please\n  bogus: 1\noutput:\n  file:\n    path: relative.jsonl\nlogging:\n  level: loud\nextra: {}\n";
        let problems = Config::parse(text).unwrap_err();
        assert_eq!(
            keys_and_lines(&problems),
            vec![
                ("monitor.execve", Some(4)),
                ("monitor.bogus", Some(5)),
                ("extra", Some(11))
            ],
            "{problems:#?}"
        );
        assert!(problems[0].message.contains("boolean"), "{}", problems[0]);
        assert!(problems[1].message.contains("unknown key"));
        assert_eq!(
            problems[0].to_string(),
            "line 4: `monitor.execve`: expected a boolean (true or false), found a string"
        );
    }

    #[test]
    fn value_problems_are_all_reported_with_lines() {
        let text = "output:\n  file:\n    path: relative.jsonl\n  stderr: false\nbehavior:\n  window_seconds: 0\nenrich:\n  sha256_max_file_mb: 0\n";
        let problems = Config::parse(text).unwrap_err();
        assert_eq!(
            keys_and_lines(&problems),
            vec![
                ("enrich.sha256_max_file_mb", Some(8)),
                ("behavior.window_seconds", Some(6)),
                ("output.file.path", Some(3))
            ]
        );
    }

    #[test]
    fn types_inside_lists_are_checked() {
        let problems =
            Config::parse("monitor:\n  file_watch_paths:\n    - /etc\n    - 5\n    - tmp\n")
                .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(
            (problems[0].key.as_str(), problems[0].line),
            ("monitor.file_watch_paths.1", Some(4))
        );
        let problems = Config::parse("monitor:\n  file_watch_paths: [/etc, tmp]\n").unwrap_err();
        assert_eq!(problems[0].key, "monitor.file_watch_paths.1");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let problems = Config::parse("monitor:\n  execve: true\n   bad: [\n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].line.is_some(), "{problems:?}");
    }
}
