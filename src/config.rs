//! The TOML config file (`--config FILE`). Every section mirrors a group of command-line
//! options; a flag given on the command line overrides the file, and the file overrides the
//! built-in defaults. Unknown keys are errors that name the key, so a typo never silently
//! falls back to a default.
//!
//! ```toml
//! [output]
//! # Where logs go: a directory, "-" (stdout), "tcp://HOST:PORT", "unix:PATH", or a table
//! # with its own format.
//! sinks = ["/var/log/nameflow", { to = "tcp://198.18.0.10:5170", format = "json" }]
//! format = "tsv"            # json | tsv: default for sinks that do not say
//! json_ts = "epoch"         # epoch | iso8601
//! rotate = "1h"             # rotate directory sinks on the hour (aligned like zeekctl)
//! rotate_size = "1GiB"      # ... and/or when a file reaches this size
//! compress = true           # gzip rotated files
//! stream_buffer = "16MiB"   # per stream sink, while its peer is away
//! flush_timeout = "2s"      # how long exit waits for stream sinks
//! on_write_error = "drop"   # fail | drop: a full disk drops and counts records (capture's
//!                           # default) or ends the run with an error (read's default)
//! # nats:// and tls:// sinks (NATS JetStream): see docs/output.md.
//! nats_subject = "nameflow.logs.{path}"   # {path} and {sensor}
//! nats_stream = "NAMEFLOW_LOGS"           # created when missing, else used as it is
//! nats_max_age = "7d"                     # max age of a stream nameflow creates
//! nats_dedup_window = "2m"                # its duplicate window
//! nats_creds = "/etc/nameflow/nats.creds"
//! nats_ca = "/etc/nameflow/nats-ca.pem"   # with tls://
//! nats_required = false                   # true: exit at start when no server answers
//! sensor = "sensor-1"                     # _system_name; default the host name
//! ```
//!
//!
//! ```toml
//! [context]
//! # Inventories: kubectl/AWS CLI JSON files, JSON-lines tables (*.jsonl), or directories of
//! # successive snapshots. See docs/context.md.
//! files = ["/var/lib/nameflow/k8s", "/var/lib/nameflow/ec2.json"]
//! poll = "2s"               # how often the files are checked for changes
//! prefix = "ctx_"           # extra columns are orig_<prefix><name> and resp_<prefix><name>
//! max_records = 2000000     # windows kept at most (the oldest closed ones go first)
//! # At most 4 extra columns, NAME=ATTRIBUTE, in column order: a pod label, a JSON-lines
//! # table field, an EC2 tag or attribute (docs/context.md lists them).
//! extra = ["app=label:app.kubernetes.io/name", "team=team", "az=az"]
//! ```
//!
//! `[capture]`, `[read]`, `[flow]` and `[names]` hold the other command-line options, each
//! under the flag's long name (`ring_size = 4096` for `--ring-size 4096`; in `[names]` without
//! the `name_` prefix: `max_entries` for `--name-max-entries`). `nameflow config default`
//! prints them all with their defaults and help; `nameflow config check FILE` validates a file.
//!
//! ```toml
//! [capture]
//! interface = "eth1"
//! queues = "all"
//! metrics = "127.0.0.1:9464"
//! user = "nameflow"
//! [flow]
//! max_flows = 1048576
//! conn_key = "vlan"        # 5-tuple + VLAN ids, as Zeek 8's frameworks/conn_key/vlan_fivetuple
//! [names]
//! max_entries = 1048576
//! ```

use crate::context::{ContextConfig, ExtraColumn};
use crate::output::sink::nats::{self, NatsOptions};
use crate::output::{Format, JsonTs, OnWriteError, OutputConfig, Rotation, SinkConfig, SinkSpec};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole file.
///
/// `[output]` and `[context]` are typed here. The other sections mirror command-line options
/// one to one (`[capture]`, `[read]`, `[flow]`, `[names]`: a key is the flag's long name with
/// `_` for `-`); they are kept as raw tables and validated by the command line, which knows
/// its own flags, so the file covers every option without naming any of them twice.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub output: OutputSection,
    #[serde(default)]
    pub context: ContextSection,
    /// `nameflow capture` options.
    #[serde(default)]
    pub capture: toml::Table,
    /// `nameflow read` options.
    #[serde(default)]
    pub read: toml::Table,
    /// Connection tracking options (both subcommands).
    #[serde(default)]
    pub flow: toml::Table,
    /// Name options (both subcommands).
    #[serde(default)]
    pub names: toml::Table,
}

/// `[output]`: sinks, formats, rotation. Every key is optional; [`OutputSection::over`]
/// layers the command line on top, [`OutputSection::resolve`] validates and fills defaults.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    pub sinks: Option<Vec<SinkEntry>>,
    pub format: Option<Format>,
    pub json_ts: Option<JsonTs>,
    pub rotate: Option<String>,
    pub rotate_size: Option<String>,
    pub compress: Option<bool>,
    pub stream_buffer: Option<String>,
    pub flush_timeout: Option<String>,
    pub on_write_error: Option<OnWriteError>,
    /// `nats://` outputs: subject template, stream, the created stream's max age and duplicate
    /// window, credentials, CA, whether a server must answer at start.
    pub nats_subject: Option<String>,
    pub nats_stream: Option<String>,
    pub nats_max_age: Option<String>,
    pub nats_dedup_window: Option<String>,
    pub nats_creds: Option<PathBuf>,
    pub nats_ca: Option<PathBuf>,
    pub nats_required: Option<bool>,
    /// The sensor's name (`_system_name` in NATS records); default the host name.
    pub sensor: Option<String>,
}

/// One sink: its spec, or a table with the spec and its own format.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum SinkEntry {
    Spec(String),
    Table(SinkTable),
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkTable {
    pub to: String,
    pub format: Option<Format>,
}

/// A config file that cannot be used; each names the file or the key and what is expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key} = {value:?}: {reason}")]
    Invalid {
        /// The option, as both the flag and the config key (`--rotate / output.rotate`).
        key: &'static str,
        value: String,
        reason: String,
    },
}

/// Reads and parses a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|message| ConfigError::Parse {
        path: path.to_owned(),
        message,
    })
}

/// Parses config text; the error message says where and which key.
pub fn parse(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
}

impl OutputSection {
    /// `self` (the command line) over `base` (the file): each key set here wins.
    pub fn over(&self, base: &OutputSection) -> OutputSection {
        OutputSection {
            sinks: self.sinks.clone().or_else(|| base.sinks.clone()),
            format: self.format.or(base.format),
            json_ts: self.json_ts.or(base.json_ts),
            rotate: self.rotate.clone().or_else(|| base.rotate.clone()),
            rotate_size: self
                .rotate_size
                .clone()
                .or_else(|| base.rotate_size.clone()),
            compress: self.compress.or(base.compress),
            stream_buffer: self
                .stream_buffer
                .clone()
                .or_else(|| base.stream_buffer.clone()),
            flush_timeout: self
                .flush_timeout
                .clone()
                .or_else(|| base.flush_timeout.clone()),
            on_write_error: self.on_write_error.or(base.on_write_error),
            nats_subject: self
                .nats_subject
                .clone()
                .or_else(|| base.nats_subject.clone()),
            nats_stream: self
                .nats_stream
                .clone()
                .or_else(|| base.nats_stream.clone()),
            nats_max_age: self
                .nats_max_age
                .clone()
                .or_else(|| base.nats_max_age.clone()),
            nats_dedup_window: self
                .nats_dedup_window
                .clone()
                .or_else(|| base.nats_dedup_window.clone()),
            nats_creds: self.nats_creds.clone().or_else(|| base.nats_creds.clone()),
            nats_ca: self.nats_ca.clone().or_else(|| base.nats_ca.clone()),
            nats_required: self.nats_required.or(base.nats_required),
            sensor: self.sensor.clone().or_else(|| base.sensor.clone()),
        }
    }

    /// The NATS settings, validated (defaults for what is not given).
    fn resolve_nats(&self) -> Result<NatsOptions, ConfigError> {
        let mut o = NatsOptions::default();
        if let Some(s) = &self.nats_subject {
            nats::check_subject(s)
                .map_err(|r| invalid("--nats-subject / output.nats_subject", s, &r))?;
            o.subject = s.clone();
        }
        if let Some(s) = &self.nats_stream {
            nats::check_stream(s)
                .map_err(|r| invalid("--nats-stream / output.nats_stream", s, &r))?;
            o.stream = s.clone();
        }
        if let Some(s) = &self.nats_max_age {
            o.max_age = parse_duration("--nats-max-age / output.nats_max_age", s)?;
        }
        if let Some(s) = &self.nats_dedup_window {
            let d = parse_duration("--nats-dedup-window / output.nats_dedup_window", s)?;
            if d.is_zero() {
                return Err(invalid(
                    "--nats-dedup-window / output.nats_dedup_window",
                    s,
                    "a zero window removes no duplicate; give at least 1s",
                ));
            }
            o.dedup_window = d;
        }
        if !o.max_age.is_zero() && o.dedup_window > o.max_age {
            return Err(invalid(
                "--nats-dedup-window / output.nats_dedup_window",
                &humantime::format_duration(o.dedup_window).to_string(),
                "JetStream wants the duplicate window no longer than --nats-max-age",
            ));
        }
        o.creds = self.nats_creds.clone();
        o.ca = self.nats_ca.clone();
        o.required = self.nats_required.unwrap_or(false);
        if let Some(s) = &self.sensor {
            if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
                return Err(invalid(
                    "--sensor / output.sensor",
                    s,
                    "a sensor name is 1 to 255 printable characters",
                ));
            }
            o.sensor = s.clone();
        }
        Ok(o)
    }

    /// Validates and fills in defaults (`./logs`, JSON, epoch times, no rotation).
    pub fn resolve(&self) -> Result<OutputConfig, ConfigError> {
        let defaults = OutputConfig::default();
        let format = self.format.unwrap_or(Format::Json);
        let sinks = match &self.sinks {
            None => defaults
                .sinks
                .iter()
                .map(|s| SinkConfig {
                    spec: s.spec.clone(),
                    format,
                })
                .collect(),
            Some(list) => {
                let mut out: Vec<SinkConfig> = Vec::with_capacity(list.len());
                for e in list {
                    let (to, f) = match e {
                        SinkEntry::Spec(s) => (s, None),
                        SinkEntry::Table(t) => (&t.to, t.format),
                    };
                    let spec: SinkSpec =
                        to.parse()
                            .map_err(|e: crate::output::sink::SinkSpecError| {
                                ConfigError::Invalid {
                                    key: "-o / output.sinks",
                                    // The spec as the error shows it (NATS credentials hidden).
                                    value: e.spec.clone(),
                                    reason: e.to_string(),
                                }
                            })?;
                    if out.iter().any(|o| o.spec == spec) {
                        return Err(ConfigError::Invalid {
                            key: "-o / output.sinks",
                            value: spec.to_string(),
                            reason: "this output is listed twice; list each once".into(),
                        });
                    }
                    out.push(SinkConfig {
                        spec,
                        format: f.unwrap_or(format),
                    });
                }
                if out.is_empty() {
                    return Err(ConfigError::Invalid {
                        key: "-o / output.sinks",
                        value: String::new(),
                        reason: "at least one output is needed".into(),
                    });
                }
                out
            }
        };
        let interval = match &self.rotate {
            None => None,
            Some(s) => {
                let d = parse_duration("--rotate / output.rotate", s)?;
                if d < Duration::from_secs(1) {
                    return Err(invalid(
                        "--rotate / output.rotate",
                        s,
                        "rotate at most once per second (archive names have one-second resolution)",
                    ));
                }
                Some(d)
            }
        };
        let size = match &self.rotate_size {
            None => None,
            Some(s) => Some(parse_size("--rotate-size / output.rotate_size", s)?),
        };
        let compress = self.compress.unwrap_or(false);
        if compress && interval.is_none() && size.is_none() {
            return Err(invalid(
                "--compress / output.compress",
                "true",
                "only rotated files are compressed; also set --rotate or --rotate-size",
            ));
        }
        let stream_buffer = match &self.stream_buffer {
            None => defaults.stream_buffer,
            Some(s) => {
                let n = parse_size("--stream-buffer / output.stream_buffer", s)?;
                usize::try_from(n).map_err(|_| {
                    invalid("--stream-buffer / output.stream_buffer", s, "too large")
                })?
            }
        };
        let flush_timeout = match &self.flush_timeout {
            None => defaults.flush_timeout,
            Some(s) => parse_duration("--flush-timeout / output.flush_timeout", s)?,
        };
        let nats = self.resolve_nats()?;
        Ok(OutputConfig {
            nats,
            sinks,
            json_ts: self.json_ts.unwrap_or_default(),
            rotation: Rotation {
                interval,
                size,
                compress,
            },
            stream_buffer,
            flush_timeout,
            on_write_error: self.on_write_error.unwrap_or_default(),
        })
    }
}

/// `[context]`: inventories that attribute addresses to workloads. Every key is optional;
/// without `files` there is no context and conn.log has no context columns.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContextSection {
    pub files: Option<Vec<PathBuf>>,
    /// Shell commands whose output is a Kubernetes watch stream.
    pub commands: Option<Vec<String>>,
    pub poll: Option<String>,
    pub prefix: Option<String>,
    pub max_records: Option<usize>,
    /// Extra columns, `NAME=ATTRIBUTE` each, in column order.
    pub extra: Option<Vec<String>>,
}

impl ContextSection {
    /// `self` (the command line) over `base` (the file): each key set here wins.
    pub fn over(&self, base: &ContextSection) -> ContextSection {
        ContextSection {
            files: self.files.clone().or_else(|| base.files.clone()),
            commands: self.commands.clone().or_else(|| base.commands.clone()),
            poll: self.poll.clone().or_else(|| base.poll.clone()),
            prefix: self.prefix.clone().or_else(|| base.prefix.clone()),
            max_records: self.max_records.or(base.max_records),
            extra: self.extra.clone().or_else(|| base.extra.clone()),
        }
    }

    /// Validates and fills in defaults; `None` when no inventory is configured.
    pub fn resolve(&self) -> Result<Option<ContextConfig>, ConfigError> {
        let files = self.files.clone().unwrap_or_default();
        let commands = self.commands.clone().unwrap_or_default();
        if files.is_empty() && commands.is_empty() {
            if self.extra.as_ref().is_some_and(|e| !e.is_empty()) {
                return Err(invalid(
                    "--context-column / context.extra",
                    "",
                    "extra columns need an inventory: also give --context / context.files or \
                     --context-command / context.commands",
                ));
            }
            return Ok(None);
        }
        for c in &commands {
            if c.trim().is_empty() {
                return Err(invalid(
                    "--context-command / context.commands",
                    c,
                    "give a shell command, such as 'kubectl get pods,services,nodes -A \
                     --watch --output-watch-events -o json'",
                ));
            }
        }
        let mut cfg = ContextConfig {
            paths: files,
            commands,
            ..ContextConfig::default()
        };
        if let Some(p) = &self.poll {
            cfg.poll = parse_duration("--context-poll / context.poll", p)?;
        }
        if let Some(p) = &self.prefix {
            cfg.prefix = p.clone();
        }
        if let Some(m) = self.max_records {
            cfg.max_records = m;
        }
        for e in self.extra.iter().flatten() {
            let Some((name, attribute)) = e.split_once('=') else {
                return Err(invalid(
                    "--context-column / context.extra",
                    e,
                    "write NAME=ATTRIBUTE, such as app=label:app or team=team",
                ));
            };
            cfg.extra.push(ExtraColumn {
                name: name.trim().to_owned(),
                attribute: attribute.trim().to_owned(),
            });
        }
        cfg.validate().map_err(|reason| ConfigError::Invalid {
            key: "[context]",
            value: String::new(),
            reason,
        })?;
        Ok(Some(cfg))
    }
}

fn invalid(key: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A duration such as `1h`, `30min`, `90s`, `500ms`.
pub fn parse_duration(key: &'static str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s.trim()).map_err(|e| ConfigError::Invalid {
        key,
        value: s.to_owned(),
        reason: format!("{e}; write a duration such as 1h, 30min, 90s or 500ms"),
    })
}

/// A byte size such as `1048576`, `512K`, `100MiB`, `1G` (K, M, G, T are powers of 1024).
pub fn parse_size(key: &'static str, s: &str) -> Result<u64, ConfigError> {
    let bad = || ConfigError::Invalid {
        key,
        value: s.to_owned(),
        reason: "write a size above zero such as 1048576, 512K, 100MiB or 1G".into(),
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    let v = n.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if v == 0 {
        return Err(bad());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_output_section_parses_and_resolves() {
        let c = parse(
            r#"
            [output]
            sinks = ["logs", { to = "tcp://127.0.0.1:5170", format = "json" }, "unix:/tmp/x.sock"]
            format = "tsv"
            json_ts = "iso8601"
            rotate = "1h"
            rotate_size = "100MiB"
            compress = true
            stream_buffer = "1M"
            flush_timeout = "500ms"
            "#,
        )
        .unwrap();
        let o = c.output.resolve().unwrap();
        assert_eq!(o.sinks.len(), 3);
        assert_eq!(o.sinks[0].format, Format::Tsv);
        assert_eq!(o.sinks[1].format, Format::Json);
        assert_eq!(o.sinks[1].spec, SinkSpec::Tcp("127.0.0.1:5170".into()));
        assert_eq!(o.sinks[2].spec, SinkSpec::Unix("/tmp/x.sock".into()));
        assert_eq!(o.json_ts, JsonTs::Iso8601);
        assert_eq!(o.rotation.interval, Some(Duration::from_secs(3600)));
        assert_eq!(o.rotation.size, Some(100 << 20));
        assert!(o.rotation.compress);
        assert_eq!(o.stream_buffer, 1 << 20);
        assert_eq!(o.flush_timeout, Duration::from_millis(500));
    }

    #[test]
    fn empty_file_gives_defaults() {
        let o = parse("").unwrap().output.resolve().unwrap();
        assert_eq!(o, OutputConfig::default());
    }

    #[test]
    fn nats_settings_from_the_file() {
        let o = parse(
            "[output]\nsinks = [\"nats://a:4222,b:4222\"]\nnats_subject = \"logs.{sensor}.{path}\"\n\
             nats_stream = \"S\"\nnats_max_age = \"1h\"\nnats_dedup_window = \"30s\"\n\
             nats_required = true\nsensor = \"edge\"\n",
        )
        .unwrap()
        .output
        .resolve()
        .unwrap();
        assert!(matches!(&o.sinks[0].spec, SinkSpec::Nats(n) if n.urls.len() == 2));
        assert_eq!(o.nats.subject, "logs.{sensor}.{path}");
        assert_eq!(o.nats.stream, "S");
        assert_eq!(o.nats.max_age, Duration::from_secs(3600));
        assert_eq!(o.nats.dedup_window, Duration::from_secs(30));
        assert!(o.nats.required);
        assert_eq!(o.nats.sensor, "edge");
        let bad = |text: &str| {
            parse(text)
                .unwrap()
                .output
                .resolve()
                .unwrap_err()
                .to_string()
        };
        assert!(bad("[output]\nnats_stream = \"a.b\"\n").contains("--nats-stream"));
        assert!(bad("[output]\nnats_max_age = \"1m\"\n").contains("--nats-dedup-window"));
        assert!(bad("[output]\nsensor = \"\"\n").contains("--sensor"));
    }

    #[test]
    fn flags_override_the_file() {
        let file = parse("[output]\nformat = \"tsv\"\nsinks = [\"a\"]\nrotate = \"1h\"\n")
            .unwrap()
            .output;
        let flags = OutputSection {
            sinks: Some(vec![SinkEntry::Spec("b".into())]),
            ..OutputSection::default()
        };
        let o = flags.over(&file).resolve().unwrap();
        assert_eq!(o.sinks[0].spec, SinkSpec::Dir("b".into()));
        assert_eq!(o.sinks[0].format, Format::Tsv);
        assert_eq!(o.rotation.interval, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let e = parse("[output]\nrotat = \"1h\"\n").unwrap_err();
        assert!(e.contains("rotat"), "{e}");
        let e = parse("[outptu]\n").unwrap_err();
        assert!(e.contains("outptu"), "{e}");
        let e = parse("[output]\nformat = \"xml\"\n").unwrap_err();
        assert!(e.contains("xml") || e.contains("format"), "{e}");
        let cases = [
            ("rotate = \"soon\"", "output.rotate"),
            ("rotate = \"10ms\"", "output.rotate"),
            ("rotate_size = \"12Q\"", "output.rotate_size"),
            ("rotate_size = \"0\"", "output.rotate_size"),
            ("compress = true", "output.compress"),
            ("sinks = []", "output.sinks"),
            ("sinks = [\"tcp://nohost\"]", "output.sinks"),
            ("sinks = [\"a\", \"a\"]", "output.sinks"),
            ("flush_timeout = \"x\"", "output.flush_timeout"),
        ];
        for (line, key) in cases {
            let c = parse(&format!("[output]\n{line}\n")).unwrap();
            let e = c.output.resolve().unwrap_err().to_string();
            assert!(e.contains(key), "{line}: {e}");
        }
    }

    #[test]
    fn sizes() {
        let p = |s| parse_size("k", s);
        assert_eq!(p("4096").unwrap(), 4096);
        assert_eq!(p("512K").unwrap(), 512 << 10);
        assert_eq!(p("100MiB").unwrap(), 100 << 20);
        assert_eq!(p("1 GB").unwrap(), 1 << 30);
        assert!(p("1.5G").is_err() && p("").is_err() && p("99999999999T").is_err());
    }

    #[test]
    fn context_section_parses_in_order_and_flags_win() {
        let c = parse(
            r#"
            [context]
            files = ["/var/lib/nameflow/k8s", "ec2.json"]
            poll = "500ms"
            extra = ["zone=az", "app = label:app"]
            "#,
        )
        .unwrap();
        let cfg = c.context.resolve().unwrap().unwrap();
        assert_eq!(cfg.paths.len(), 2);
        assert_eq!(cfg.poll, Duration::from_millis(500));
        let names: Vec<&str> = cfg.extra.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["zone", "app"], "document order");
        assert_eq!(cfg.extra[1].attribute, "label:app");
        let flags = ContextSection {
            files: Some(vec!["other.json".into()]),
            ..ContextSection::default()
        };
        let cfg = flags.over(&c.context).resolve().unwrap().unwrap();
        assert_eq!(cfg.paths, [PathBuf::from("other.json")]);
        assert_eq!(cfg.extra.len(), 2);
        assert_eq!(parse("").unwrap().context.resolve().unwrap(), None);
        // A command alone is an inventory; the flag's commands replace the file's.
        let c = parse(
            "[context]\ncommands = [\"kubectl get pods -A --watch --output-watch-events -o json\"]\n",
        )
        .unwrap();
        let cfg = c.context.resolve().unwrap().unwrap();
        assert!(cfg.paths.is_empty());
        assert_eq!(cfg.commands.len(), 1);
        let flags = ContextSection {
            commands: Some(vec!["cat watch.json".into()]),
            ..ContextSection::default()
        };
        let cfg = flags.over(&c.context).resolve().unwrap().unwrap();
        assert_eq!(cfg.commands, ["cat watch.json"]);
    }

    #[test]
    fn bad_context_settings_are_named() {
        let e = parse("[context]\nfile = [\"x\"]\n").unwrap_err();
        assert!(e.contains("file"), "{e}");
        for (text, key) in [
            ("files = [\"x\"]\npoll = \"often\"", "context.poll"),
            ("files = [\"x\"]\nprefix = \"Bad-\"", "context.prefix"),
            ("extra = [\"app=label:app\"]", "context.files"),
            ("files = [\"x\"]\nextra = [\"app\"]", "context.extra"),
            ("commands = [\" \"]", "context.commands"),
        ] {
            let c = parse(&format!("[context]\n{text}\n")).unwrap();
            let e = c.context.resolve().unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn option_sections_are_kept_for_the_command_line() {
        let c = parse(
            "[capture]\ninterface = \"eth1\"\nring_size = 4096\n[flow]\nmax_flows = 10\n\
                   conn_key = \"vlan\"\n",
        )
        .unwrap();
        assert_eq!(c.capture["interface"].as_str(), Some("eth1"));
        assert_eq!(c.capture["ring_size"].as_integer(), Some(4096));
        assert_eq!(c.flow["max_flows"].as_integer(), Some(10));
        assert_eq!(c.flow["conn_key"].as_str(), Some("vlan"));
        assert!(c.read.is_empty() && c.names.is_empty());
        let e = parse("[captur]\ninterface = \"eth1\"\n").unwrap_err();
        assert!(e.contains("captur"), "{e}");
    }

    #[test]
    fn load_names_the_file() {
        let e = load(Path::new("/nonexistent/nameflow.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/nameflow.toml"));
    }
}
