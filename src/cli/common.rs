//! Option groups shared by several subcommands.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use nameflow::config::{OutputSection, SinkEntry};
use nameflow::decode::DecodeConfig;
use nameflow::flow::{FlowConfig, LocalNets, ServerPorts};
use nameflow::output::{Format, JsonTs, OnWriteError, OutputConfig};

/// Where and how logs are written. Every option can also be set in the config file's
/// `[output]` section; a flag overrides the file.
#[derive(Args, Debug)]
pub struct OutputArgs {
    /// Where logs go; repeat for several at once: a directory (`<log>.log` files inside),
    /// `-` for standard output, `tcp://HOST:PORT` or `unix:PATH` for a collector
    /// (newline-delimited records), `nats://HOST:PORT[,HOST:PORT...]` (or `tls://`) for NATS
    /// JetStream: one Zeek JSON record per message, acknowledged, with `_path` and
    /// `_system_name` (user:password@ or token@ before the host authenticate). Default: ./logs.
    #[arg(short = 'o', long = "output", value_name = "SINK")]
    pub outputs: Vec<String>,
    /// Log format (default json).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// How JSON writes times: seconds since the epoch (Zeek's default) or ISO 8601 strings.
    #[arg(long, value_enum, value_name = "STYLE")]
    pub json_ts: Option<JsonTsArg>,
    /// Rotate log files on boundaries of this interval, aligned to the clock like zeekctl
    /// (`1h` rotates on the hour; packet time when reading captures). Rotated files move to
    /// DIR/YYYY-MM-DD/<log>.HH:MM:SS-HH:MM:SS.log.
    #[arg(long, value_name = "DURATION")]
    pub rotate: Option<String>,
    /// Rotate a log file once it reaches this size (e.g. 100MiB, 1G).
    #[arg(long, value_name = "SIZE")]
    pub rotate_size: Option<String>,
    /// Gzip rotated files (in the background).
    #[arg(long)]
    pub compress: bool,
    /// Memory each tcp://, unix: or nats:// output may hold while its peer is away or slow
    /// (NATS: until JetStream acknowledged); beyond it records are dropped and counted
    /// (default 16MiB).
    #[arg(long, value_name = "SIZE")]
    pub stream_buffer: Option<String>,
    /// How long to wait at exit for tcp://, unix: and nats:// outputs to deliver (default 2s).
    #[arg(long, value_name = "DURATION")]
    pub flush_timeout: Option<String>,
    /// What a directory output does when its file system refuses a write (full, over quota,
    /// I/O error): `fail` ends the run with an error; `drop` drops the records it cannot
    /// write, counts them, warns once and writes again when space returns. Default: `fail`
    /// for `read`, `drop` for `capture`.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_write_error: Option<OnWriteErrorArg>,
    /// NATS subject of each record; `{path}` is the log (conn, dns, ...), `{sensor}` the
    /// sensor name with '.', '*', '>' and spaces as '_' (default nameflow.logs.{path}).
    #[arg(long, value_name = "TEMPLATE")]
    pub nats_subject: Option<String>,
    /// JetStream stream the records go to (default NAMEFLOW_LOGS). Created when missing, taking
    /// the subject's literal prefix + `>` (nameflow.logs.>); an existing stream is used as it is.
    #[arg(long, value_name = "NAME")]
    pub nats_stream: Option<String>,
    /// Max age of records in a stream nameflow creates (default 7d; 0 keeps them forever).
    #[arg(long, value_name = "DURATION")]
    pub nats_max_age: Option<String>,
    /// Duplicate window of a stream nameflow creates: a record sent again after a reconnect
    /// is stored once if it arrives within this window of the first copy (default 2m).
    #[arg(long, value_name = "DURATION")]
    pub nats_dedup_window: Option<String>,
    /// NATS credentials file (user JWT and nkey seed, as `nsc generate creds` writes it).
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<std::path::PathBuf>,
    /// PEM file of the CA that signed the NATS servers' certificates (with tls://).
    #[arg(long, value_name = "FILE")]
    pub nats_ca: Option<std::path::PathBuf>,
    /// Exit with an error when no NATS server answers at start (default: start, say so once,
    /// buffer and retry).
    #[arg(long)]
    pub nats_required: bool,
    /// This sensor's name: `_system_name` in NATS records and `{sensor}` in subjects
    /// (default the host name).
    #[arg(long, value_name = "NAME")]
    pub sensor: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OnWriteErrorArg {
    Fail,
    Drop,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    Json,
    Tsv,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum JsonTsArg {
    Epoch,
    Iso8601,
}

impl OutputArgs {
    /// The output settings: these flags over the config file's `[output]` section.
    /// `on_write_error` is the subcommand's default policy, used when neither the flag nor
    /// the config file sets one.
    pub fn output_config(
        &self,
        file: &OutputSection,
        on_write_error: OnWriteError,
    ) -> anyhow::Result<OutputConfig> {
        let flags = OutputSection {
            sinks: (!self.outputs.is_empty())
                .then(|| self.outputs.iter().cloned().map(SinkEntry::Spec).collect()),
            format: self.format.map(|f| match f {
                FormatArg::Json => Format::Json,
                FormatArg::Tsv => Format::Tsv,
            }),
            json_ts: self.json_ts.map(|t| match t {
                JsonTsArg::Epoch => JsonTs::Epoch,
                JsonTsArg::Iso8601 => JsonTs::Iso8601,
            }),
            rotate: self.rotate.clone(),
            rotate_size: self.rotate_size.clone(),
            compress: self.compress.then_some(true),
            stream_buffer: self.stream_buffer.clone(),
            flush_timeout: self.flush_timeout.clone(),
            on_write_error: self.on_write_error.map(|p| match p {
                OnWriteErrorArg::Fail => OnWriteError::Fail,
                OnWriteErrorArg::Drop => OnWriteError::Drop,
            }),
            nats_subject: self.nats_subject.clone(),
            nats_stream: self.nats_stream.clone(),
            nats_max_age: self.nats_max_age.clone(),
            nats_dedup_window: self.nats_dedup_window.clone(),
            nats_creds: self.nats_creds.clone(),
            nats_ca: self.nats_ca.clone(),
            nats_required: self.nats_required.then_some(true),
            sensor: self.sensor.clone(),
        };
        let mut section = flags.over(file);
        section.on_write_error = section.on_write_error.or(Some(on_write_error));
        section.resolve().context("bad output settings")
    }
}

/// Connection tracking settings.
#[derive(Args, Debug)]
pub struct FlowArgs {
    /// Networks counted as local for local_orig/local_resp (comma-separated CIDRs).
    /// Default: Zeek's private address space.
    #[arg(long, value_name = "CIDR,...")]
    pub local_nets: Option<String>,
    /// Do not validate checksums (Zeek's -C); use it for captures with offloaded checksums.
    #[arg(short = 'C', long)]
    pub ignore_checksums: bool,
    /// Maximum flows held per worker; the least recently active flow is logged and evicted
    /// beyond it.
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    pub max_flows: usize,
    /// What identifies a connection. `default`: the 5-tuple, VLAN tags ignored (Zeek's
    /// default). `vlan`: the 5-tuple plus the frame's outer and inner 802.1Q VLAN ids (Zeek 8's
    /// `@load frameworks/conn_key/vlan_fivetuple`), so one 5-tuple on two VLANs is two
    /// connections, and conn.log gets `id.ctx.vlan` and `id.ctx.inner_vlan` after `id.resp_p`.
    #[arg(long, value_enum, value_name = "KEY", default_value = "default")]
    pub conn_key: ConnKeyArg,
    /// Seed of conn.log's community_id (0-65535), as Zeek's `CommunityID::seed` and
    /// Suricata's `community-id-seed`: use the seed the site's other tools use, so one flow
    /// has one id across them.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub community_id_seed: u16,
    /// Zeek's `likely_server_ports`, which decide who the originator is when a connection's
    /// first packet is not a plain SYN: `default` (the ports of Zeek's default scripts),
    /// `none`, or a list such as `80/tcp,53/udp` (`default` may be one item). A `zeek -b` run
    /// loads fewer protocol scripts and so has fewer such ports; give its set to guess roles
    /// as it did.
    #[arg(long, value_name = "LIST", default_value = "default")]
    pub likely_server_ports: String,
}

/// `--conn-key`: Zeek's connection key factories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConnKeyArg {
    /// The 5-tuple (Zeek's default `ConnKey::CONNKEY_FIVETUPLE`).
    Default,
    /// The 5-tuple and the VLAN ids (Zeek's `ConnKey::CONNKEY_VLAN_FIVETUPLE`).
    Vlan,
}

impl FlowArgs {
    /// Validated flow settings.
    pub fn flow_config(&self) -> anyhow::Result<FlowConfig> {
        if self.max_flows == 0 {
            bail!("--max-flows must be at least 1");
        }
        let local_nets = match &self.local_nets {
            Some(list) => LocalNets::parse_list(list).context("bad --local-nets")?,
            None => LocalNets::zeek_default(),
        };
        let server_ports = ServerPorts::parse_list(&self.likely_server_ports)
            .map_err(anyhow::Error::msg)
            .context("bad --likely-server-ports")?;
        Ok(FlowConfig {
            max_flows: self.max_flows,
            local_nets,
            community_id_seed: self.community_id_seed,
            server_ports,
            ..FlowConfig::default()
        })
    }

    /// The decoder settings these flags choose (checksums, connection key).
    pub fn decode_config(&self) -> DecodeConfig {
        DecodeConfig {
            verify_checksums: !self.ignore_checksums,
            vlan_key: self.conn_key == ConnKeyArg::Vlan,
            ..DecodeConfig::default()
        }
    }

    /// Fixes conn.log's columns for the chosen key (the VLAN key adds two). Call before the
    /// context columns are added and before the writer starts.
    pub fn conn_log_columns(&self) -> anyhow::Result<()> {
        nameflow::output::record::enable_vlan_columns(self.conn_key == ConnKeyArg::Vlan)
            .map_err(anyhow::Error::msg)
            .context("cannot set conn.log's columns for --conn-key")
    }
}

/// The worker count: the flag, or one per available core.
pub fn worker_count(flag: Option<usize>) -> anyhow::Result<usize> {
    match flag {
        Some(0) => bail!("--workers must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)),
    }
}

/// Name settings (which host name each address had when a connection started).
#[derive(Args, Debug)]
pub struct NameArgs {
    /// Do not learn names: conn.log's orig_name/resp_name columns stay unset.
    #[arg(long)]
    pub no_names: bool,
    /// Name-cache mappings one worker may replicate to the others per second (token bucket,
    /// packet time); beyond it replication is skipped and counted.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub name_rate: u32,
    /// Burst allowed above --name-rate (default: twice the rate).
    #[arg(long, value_name = "N")]
    pub name_burst: Option<u32>,
    /// Shortest life of a mapping whatever its DNS TTL (SNI, HTTP and DHCP carry no TTL).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub name_ttl_floor: String,
    /// Longest life of a mapping whatever its DNS TTL.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub name_ttl_cap: String,
    /// Addresses each worker's name cache holds at most; the least recently used is evicted
    /// beyond it (memory: about 120 bytes per address with one name).
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    pub name_max_entries: usize,
    /// How long after a connection's first packet a name still counts as the one it had
    /// (a DNS answer handled on another core just after the SYN).
    #[arg(long, value_name = "DURATION", default_value = "500ms")]
    pub name_tolerance: String,
    /// How many names conn.log's orig_names/resp_names hold at most (1 to 8): every distinct
    /// name the address had when the connection started, newest first.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub names_max: usize,
    /// Load the name cache from FILE at start (if it exists) and save it there at exit, so a
    /// restart keeps its names. A corrupt or foreign file is reported and ignored.
    #[arg(long, value_name = "FILE")]
    pub name_state: Option<std::path::PathBuf>,
    /// Logs to write, comma-separated: conn (always), dns (Zeek's dns.log), namecache
    /// (name-cache hit rates and replication counts, every stats interval live and at exit).
    #[arg(long, value_name = "LOG,...", default_value = "conn")]
    pub logs: String,
}

impl NameArgs {
    /// The logs asked for besides conn.log.
    pub fn logs(&self) -> anyhow::Result<nameflow::engine::offline::Logs> {
        let mut logs = nameflow::engine::offline::Logs::default();
        for l in self
            .logs
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            match l {
                "conn" => {}
                "namecache" => logs.namecache = true,
                "dns" => logs.dns = true,
                other => bail!("--logs: unknown log {other:?}; choose among conn, dns, namecache"),
            }
        }
        Ok(logs)
    }

    /// Validated name settings; `None` with --no-names.
    pub fn names_config(&self) -> anyhow::Result<Option<nameflow::names::NamesConfig>> {
        if self.no_names {
            return Ok(None);
        }
        let secs = |flag: &str, v: &str| -> anyhow::Result<u32> {
            let d = humantime::parse_duration(v)
                .with_context(|| format!("bad {flag} {v:?}: give a duration such as 30s or 1h"))?;
            Ok(d.as_secs().min(u64::from(u32::MAX)) as u32)
        };
        let ttl_floor_s = secs("--name-ttl-floor", &self.name_ttl_floor)?;
        let ttl_cap_s = secs("--name-ttl-cap", &self.name_ttl_cap)?;
        if ttl_cap_s < ttl_floor_s {
            bail!(
                "--name-ttl-cap ({ttl_cap_s}s) must not be below --name-ttl-floor ({ttl_floor_s}s)"
            );
        }
        if self.name_max_entries == 0 {
            bail!("--name-max-entries must be at least 1");
        }
        let max = nameflow::types::record::NAMES_MAX;
        if !(1..=max).contains(&self.names_max) {
            bail!(
                "--names-max {} is out of range: give 1 to {max} (names per address in \
                 orig_names/resp_names)",
                self.names_max
            );
        }
        let tolerance = humantime::parse_duration(&self.name_tolerance).with_context(|| {
            format!(
                "bad --name-tolerance {:?}: give a duration such as 500ms",
                self.name_tolerance
            )
        })?;
        Ok(Some(nameflow::names::NamesConfig {
            ttl_floor_s,
            ttl_cap_s,
            max_entries: self.name_max_entries,
            rate_per_s: self.name_rate,
            burst: self
                .name_burst
                .unwrap_or_else(|| self.name_rate.saturating_mul(2))
                .max(1),
            tolerance_ns: tolerance.as_nanos().min(u128::from(u64::MAX)) as u64,
            names_max: self.names_max,
            ..nameflow::names::NamesConfig::default()
        }))
    }
}

/// Context settings: inventories that say which pod, service, node or cloud instance held
/// each address when a connection started. Each can also be set in the config file's
/// `[context]` section; a flag overrides the file.
#[derive(Args, Clone, Debug)]
pub struct ContextArgs {
    /// An inventory: `kubectl get pods,services,nodes -A -o json` or `aws ec2
    /// describe-instances` output, a JSON-lines table (*.jsonl), a directory of successive
    /// snapshots, or Kubernetes watch events (`kubectl get ... --watch --output-watch-events
    /// -o json`) in a file or a FIFO. Repeat for several. Files are watched and reloaded when
    /// they change.
    #[arg(long = "context", value_name = "PATH")]
    pub context: Vec<std::path::PathBuf>,
    /// A shell command whose output is Kubernetes watch events, read as it arrives and
    /// started again (with backoff) when it exits, e.g. 'kubectl get pods,services,nodes -A
    /// --watch --output-watch-events -o json'. Repeat for several.
    #[arg(long = "context-command", value_name = "CMD")]
    pub commands: Vec<String>,
    /// An extra conn.log column NAME=ATTRIBUTE (e.g. app=label:app, team=team, az=az);
    /// repeat for up to 4. See docs/context.md for the attributes.
    #[arg(long = "context-column", value_name = "NAME=ATTRIBUTE")]
    pub columns: Vec<String>,
    /// What comes between orig_/resp_ and an extra column's name (default ctx_).
    #[arg(long, value_name = "PREFIX")]
    pub context_prefix: Option<String>,
    /// How often inventory files are checked for changes (default 2s).
    #[arg(long, value_name = "DURATION")]
    pub context_poll: Option<String>,
}

impl ContextArgs {
    /// Loads the inventories (these flags over the config file's `[context]`), adds the
    /// context columns to conn.log and starts watching the files; reload events and errors
    /// go to stderr. `None` when no inventory is configured. Keep the watcher for the run.
    /// `hold_streams`: commands and FIFOs start only at `Watcher::release_streams` (a live
    /// capture, once it has dropped its privileges).
    pub fn start(
        &self,
        file: &nameflow::config::ContextSection,
        hold_streams: bool,
    ) -> anyhow::Result<
        Option<(
            nameflow::context::Context,
            nameflow::context::reload::Watcher,
        )>,
    > {
        use nameflow::context::{Context as Ctx, ContextEvent};
        let flags = nameflow::config::ContextSection {
            files: (!self.context.is_empty()).then(|| self.context.clone()),
            commands: (!self.commands.is_empty()).then(|| self.commands.clone()),
            poll: self.context_poll.clone(),
            prefix: self.context_prefix.clone(),
            max_records: None,
            extra: (!self.columns.is_empty()).then(|| self.columns.clone()),
        };
        let Some(cfg) = flags.over(file).resolve().context("bad context settings")? else {
            return Ok(None);
        };
        nameflow::output::record::enable_context_columns(&cfg)
            .map_err(anyhow::Error::msg)
            .context("cannot add the context columns to conn.log")?;
        let mut first = true;
        let started = Ctx::start_with(&cfg, hold_streams, move |ev| match ev {
            ContextEvent::Reloaded {
                files,
                stats,
                took_ms,
            } => {
                let what = if first { "loaded" } else { "reloaded" };
                first = false;
                let cut = if stats.dropped > 0 {
                    format!(
                        " ({} oldest windows dropped: over context.max_records)",
                        stats.dropped
                    )
                } else {
                    String::new()
                };
                eprintln!(
                    "nameflow: context {what}: {} windows for {} addresses in {took_ms} ms{cut}{}",
                    stats.windows,
                    stats.addresses,
                    if files.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (changed: {})",
                            files
                                .iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                );
            }
            ContextEvent::Error(e) => {
                eprintln!("nameflow: context error: {e}; keeping the last good inventory");
            }
            ContextEvent::Note(n) => eprintln!("nameflow: context {n}"),
        })
        .context("cannot load the context inventories")?;
        Ok(Some(started))
    }
}
