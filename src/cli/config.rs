//! The config file on the command line: every option of `capture` and `read` can be set in
//! the file, a flag given on the command line wins, and `nameflow config check|default`.
//!
//! `[output]` and `[context]` are typed sections of the library's `config` module. The other
//! options are mapped from clap's own description of the commands: a key in `[capture]`,
//! `[read]`, `[flow]` or `[names]` is a flag's long name with `_` for `-` (in `[names]` without
//! the `name_` prefix), and each key the command line does not already set becomes that flag,
//! inserted right after the subcommand before clap parses. A new flag is therefore a new key
//! with no code here, and `config default` lists it with its help.

use super::{Cli, Command as Cmd};
use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory};
use nameflow::config::Config;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Validate a config file: unknown sections and keys, values, and the settings they make
    /// together; errors name the key.
    Check {
        /// The file (usually /etc/nameflow/nameflow.toml).
        file: PathBuf,
    },
    /// Print a config file with every option at its default, each with its help.
    Default,
}

/// The option sections, the subcommands they apply to, and the clap group(s) whose flags they
/// hold (`[flow]` holds the flags of the `FlowArgs` group, and so on; `[capture]` and `[read]`
/// hold the subcommand's own flags).
const SECTIONS: &[(&str, &[&str], &str)] = &[
    ("capture", &["capture"], "CaptureArgs"),
    ("read", &["read"], "ReadArgs"),
    ("flow", &["capture", "read"], "FlowArgs"),
    ("names", &["capture", "read"], "NameArgs"),
];

/// Groups whose flags belong to the typed `[output]` and `[context]` sections.
const TYPED_GROUPS: &[&str] = &["OutputArgs", "ContextArgs"];

/// One option a section key stands for.
#[derive(Clone, Debug)]
struct Opt {
    key: String,
    id: String,
    long: String,
    action: ArgAction,
    help: String,
    default: Option<String>,
    value_name: Option<String>,
}

/// The options of `section` as the subcommand `sub` declares them.
fn options(section: &str, sub: &str) -> Vec<Opt> {
    let Some(&(_, _, group)) = SECTIONS.iter().find(|(s, _, _)| *s == section) else {
        return Vec::new();
    };
    let cmd = Cli::command();
    let Some(sc) = cmd.find_subcommand(sub) else {
        return Vec::new();
    };
    let in_group = |group: &str, id: &str| {
        sc.get_groups()
            .find(|g| g.get_id().as_str() == group)
            .is_some_and(|g| g.get_args().any(|a| a.as_str() == id))
    };
    let mut out = Vec::new();
    for a in sc.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        let id = a.get_id().as_str();
        if long == "help" || long == "version" || long == "config" {
            continue;
        }
        let own = group == "CaptureArgs" || group == "ReadArgs";
        let belongs = if own {
            // The subcommand's own flags: those of no flattened group.
            !sc.get_groups()
                .any(|g| g.get_id().as_str() != group && g.get_args().any(|x| x.as_str() == id))
                && !TYPED_GROUPS.iter().any(|t| in_group(t, id))
        } else {
            in_group(group, id)
        };
        if !belongs {
            continue;
        }
        let mut key = long.replace('-', "_");
        if section == "names" {
            if let Some(k) = key.strip_prefix("name_") {
                key = k.to_owned();
            }
        }
        out.push(Opt {
            key,
            id: id.to_owned(),
            long: long.to_owned(),
            action: a.get_action().clone(),
            help: a.get_help().map(|h| h.to_string()).unwrap_or_default(),
            default: a
                .get_default_values()
                .first()
                .map(|v| v.to_string_lossy().into_owned()),
            value_name: a
                .get_value_names()
                .and_then(|v| v.first())
                .map(|v| v.to_string()),
        });
    }
    out
}

/// The command-line flags one TOML value stands for; the error names the key.
fn flags_for(section: &str, opt: &Opt, value: &toml::Value) -> anyhow::Result<Vec<OsString>> {
    let key = format!("{section}.{}", opt.key);
    let scalar = |v: &toml::Value| -> anyhow::Result<String> {
        Ok(match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!(
                "{key} = {other}: give a {}",
                opt.value_name.as_deref().unwrap_or("value")
            ),
        })
    };
    Ok(match opt.action {
        ArgAction::SetTrue => match value {
            toml::Value::Boolean(true) => vec![format!("--{}", opt.long).into()],
            toml::Value::Boolean(false) => Vec::new(),
            other => bail!("{key} = {other}: write true or false"),
        },
        ArgAction::Append => {
            let items = match value {
                toml::Value::Array(a) => a.iter().map(scalar).collect::<Result<Vec<_>, _>>()?,
                v => vec![scalar(v)?],
            };
            items
                .into_iter()
                .map(|v| format!("--{}={v}", opt.long).into())
                .collect()
        }
        _ => vec![format!("--{}={}", opt.long, scalar(value)?).into()],
    })
}

/// Unknown keys of the option sections, named with what is known.
fn check_keys(cfg: &Config) -> anyhow::Result<()> {
    for (section, subs, _) in SECTIONS {
        let table = section_table(cfg, section);
        let known = options(section, subs[0]);
        for k in table.keys() {
            if !known.iter().any(|o| &o.key == k) {
                let mut names: Vec<&str> = known.iter().map(|o| o.key.as_str()).collect();
                names.sort_unstable();
                bail!(
                    "unknown key {section}.{k}; [{section}] takes: {}",
                    names.join(", ")
                );
            }
        }
    }
    Ok(())
}

fn section_table<'a>(cfg: &'a Config, section: &str) -> &'a toml::Table {
    match section {
        "capture" => &cfg.capture,
        "read" => &cfg.read,
        "flow" => &cfg.flow,
        _ => &cfg.names,
    }
}

/// Where `--config FILE` is, and the index of the subcommand token (global options come
/// first; `--config` is the only one with a value).
fn scan(argv: &[OsString]) -> (Option<PathBuf>, Option<usize>) {
    let mut config = None;
    let mut sub = None;
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        if a == "--config" {
            config = argv.get(i + 1).map(PathBuf::from);
            i += 2;
            continue;
        }
        if let Some(v) = a.strip_prefix("--config=") {
            config = Some(PathBuf::from(v));
        } else if a == "--" {
            break;
        } else if !a.starts_with('-') && sub.is_none() {
            sub = Some(i);
        }
        i += 1;
    }
    (config, sub)
}

/// Loads `--config` (when given) and returns the command line with the file's options
/// inserted after the subcommand, except those the command line sets itself.
pub fn apply_file(argv: Vec<OsString>) -> anyhow::Result<(Vec<OsString>, Config)> {
    let (path, sub_at) = scan(&argv);
    let Some(path) = path else {
        return Ok((argv, Config::default()));
    };
    let cfg = nameflow::config::load(&path)?;
    check_keys(&cfg).with_context(|| format!("config file {}", path.display()))?;
    let Some(sub_at) = sub_at else {
        return Ok((argv, cfg));
    };
    let sub = argv[sub_at].to_string_lossy().into_owned();
    let inserted =
        file_flags(&cfg, &sub, &argv).with_context(|| format!("config file {}", path.display()))?;
    let mut out = argv[..=sub_at].to_vec();
    out.extend(inserted);
    out.extend_from_slice(&argv[sub_at + 1..]);
    Ok((out, cfg))
}

/// The flags the file gives subcommand `sub`, minus those `argv` sets.
fn file_flags(cfg: &Config, sub: &str, argv: &[OsString]) -> anyhow::Result<Vec<OsString>> {
    // Which options the command line sets: a lenient parse that tolerates what is missing
    // (the file may supply a required option).
    let matches = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(argv)
        .ok();
    let given = |id: &str| {
        matches
            .as_ref()
            .and_then(|m| m.subcommand_matches(sub))
            .is_some_and(|m| {
                m.try_contains_id(id).unwrap_or(false)
                    && m.value_source(id) == Some(ValueSource::CommandLine)
            })
    };
    let mut out = Vec::new();
    for (section, subs, _) in SECTIONS {
        if !subs.contains(&sub) {
            continue;
        }
        let table = section_table(cfg, section);
        for opt in options(section, sub) {
            if let Some(v) = table.get(&opt.key) {
                if !given(&opt.id) {
                    out.extend(flags_for(section, &opt, v)?);
                }
            }
        }
    }
    Ok(out)
}

pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Default => {
            print!("{}", default_file());
            Ok(ExitCode::SUCCESS)
        }
        Action::Check { file } => {
            check(&file)?;
            println!("{}: ok", file.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Placeholders for the options a check needs but the flags being checked may not give
/// (`has_interface`: they include `--interface`).
fn required_stand_ins(sub: &str, has_interface: bool) -> Vec<OsString> {
    match sub {
        "capture" if !has_interface => vec!["--interface=stand-in".into()],
        "read" => vec!["stand-in.pcap".into()],
        _ => Vec::new(),
    }
}

/// Validates `path` as both subcommands would use it: every key alone (so an error names its
/// key), then the whole file (settings that only conflict together).
pub fn check(path: &Path) -> anyhow::Result<()> {
    let cfg = nameflow::config::load(path)?;
    let ctx = || format!("config file {}", path.display());
    check_keys(&cfg).with_context(ctx)?;
    cfg.output
        .resolve()
        .map_err(anyhow::Error::from)
        .with_context(ctx)?;
    cfg.context
        .resolve()
        .map_err(anyhow::Error::from)
        .with_context(ctx)?;
    for sub in ["capture", "read"] {
        let base = vec![OsString::from("nameflow"), sub.into()];
        for (section, subs, _) in SECTIONS {
            if !subs.contains(&sub) {
                continue;
            }
            let table = section_table(&cfg, section);
            for opt in options(section, sub) {
                let Some(v) = table.get(&opt.key) else {
                    continue;
                };
                let mut argv = base.clone();
                argv.extend(flags_for(section, &opt, v).with_context(ctx)?);
                argv.extend(required_stand_ins(sub, opt.key == "interface"));
                validate(&argv, &cfg).with_context(|| {
                    format!(
                        "config file {}: {section}.{} = {v}",
                        path.display(),
                        opt.key
                    )
                })?;
            }
        }
        let mut argv = base.clone();
        argv.extend(file_flags(&cfg, sub, &base).with_context(ctx)?);
        argv.extend(required_stand_ins(
            sub,
            sub == "capture" && cfg.capture.contains_key("interface"),
        ));
        validate(&argv, &cfg).with_context(|| {
            format!(
                "config file {}: the settings together ({sub})",
                path.display()
            )
        })?;
    }
    Ok(())
}

/// Parses `argv` and builds the subcommand's settings without running anything.
fn validate(argv: &[OsString], cfg: &Config) -> anyhow::Result<()> {
    let cli = <Cli as clap::Parser>::try_parse_from(argv)
        .map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    match cli.command {
        Cmd::Capture(a) => super::capture::check(*a, cfg),
        Cmd::Read(a) => super::read::check(*a, cfg),
        _ => Ok(()),
    }
}

/// A TOML literal for a default as clap holds it (a string).
fn literal(v: &str) -> String {
    let number = v.parse::<i64>().is_ok() || (v.parse::<f64>().is_ok() && !v.contains(['e', 'E']));
    if number || v == "true" || v == "false" {
        v.to_owned()
    } else {
        format!("{v:?}")
    }
}

/// Examples for options without a default, so the printed file shows the expected form.
fn example(key: &str) -> &'static str {
    match key {
        "interface" => "\"eth1\"",
        "workers" => "4",
        "cpus" => "\"2,3,4,5\"",
        "duration" => "3600",
        "busy_poll" => "50",
        "bypass" | "drop" => "[\"198.18.0.0/15\"]",
        "metrics" => "\"127.0.0.1:9464\"",
        "user" => "\"nameflow\"",
        "local_nets" => "\"10.0.0.0/8,fd00::/8\"",
        "burst" => "40000",
        "state" => "\"/var/lib/nameflow/names.state\"",
        _ => "\"...\"",
    }
}

fn comment(out: &mut String, text: &str) {
    for line in textwrap(text, 94) {
        out.push_str("# ");
        out.push_str(&line);
        out.push('\n');
    }
}

fn textwrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for w in text.split_whitespace() {
        if !cur.is_empty() && cur.len() + 1 + w.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// The commented default file: every option with its help, set to its default (options
/// without a default are shown commented out with an example).
pub fn default_file() -> String {
    let mut out = String::new();
    out.push_str(
        "# nameflow configuration (nameflow --config FILE capture|read). Flags given on the\n\
         # command line override this file. Validate with `nameflow config check FILE`.\n\n",
    );
    for (section, subs, _) in SECTIONS {
        out.push_str(&format!("[{section}]\n"));
        for opt in options(section, subs[0]) {
            comment(&mut out, &opt.help);
            match (&opt.action, &opt.default) {
                (ArgAction::SetTrue, _) => out.push_str(&format!("{} = false\n\n", opt.key)),
                (_, Some(d)) => out.push_str(&format!("{} = {}\n\n", opt.key, literal(d))),
                (_, None) => out.push_str(&format!("# {} = {}\n\n", opt.key, example(&opt.key))),
            }
        }
    }
    out.push_str(
        "[output]\n\
         # Where logs go: a directory, \"-\" (stdout), \"tcp://HOST:PORT\", \"unix:PATH\",\n\
         # \"nats://HOST:PORT[,HOST:PORT...]\" or \"tls://...\" (NATS JetStream), or a\n\
         # table with its own format: { to = \"tcp://198.18.0.10:5170\", format = \"json\" }.\n\
         sinks = [\"logs\"]\n\
         # json | tsv: the default for sinks that do not say.\n\
         format = \"json\"\n\
         # epoch | iso8601: how JSON writes times.\n\
         json_ts = \"epoch\"\n\
         # Rotate directory sinks on boundaries of this interval (aligned like zeekctl) and/or at\n\
         # this size; gzip rotated files.\n\
         # rotate = \"1h\"\n\
         # rotate_size = \"1GiB\"\n\
         compress = false\n\
         # Memory each tcp://, unix: or nats:// sink may hold while its peer is away.\n\
         stream_buffer = \"16MiB\"\n\
         # How long exit waits for stream sinks to deliver.\n\
         flush_timeout = \"2s\"\n\
         # fail | drop: a directory whose file system refuses a write (full, quota, I/O error)\n\
         # ends the run, or costs counted records until it takes writes again. Unset: fail for\n\
         # `read`, drop for `capture`.\n\
         # on_write_error = \"drop\"\n\n\
         # nats:// sinks: subject ({path}, {sensor}), stream (created when missing with the\n\
         # subject's prefix + \">\", else used as it is), the created stream's max age and\n\
         # duplicate window, credentials, CA (tls://), exit at start without a server.\n\
         nats_subject = \"nameflow.logs.{path}\"\n\
         nats_stream = \"NAMEFLOW_LOGS\"\n\
         nats_max_age = \"7d\"\n\
         nats_dedup_window = \"2m\"\n\
         # nats_creds = \"/etc/nameflow/nats.creds\"\n\
         # nats_ca = \"/etc/nameflow/nats-ca.pem\"\n\
         nats_required = false\n\
         # This sensor's name (_system_name in NATS records); default the host name.\n\
         # sensor = \"sensor-1\"\n\n\
         [context]\n\
         # Inventories: kubectl/AWS CLI JSON files, JSON-lines tables (*.jsonl), directories of\n\
         # successive snapshots, or watch-event files and FIFOs (docs/context.md). Without files\n\
         # or commands there are no context columns.\n\
         # files = [\"/var/lib/nameflow/k8s\"]\n\
         # Commands whose output is kubectl watch events, restarted when they exit.\n\
         # commands = [\"kubectl get pods,services,nodes -A --watch --output-watch-events -o json\"]\n\
         # poll = \"2s\"\n\
         # prefix = \"ctx_\"\n\
         # max_records = 2000000\n\
         # extra = [\"app=label:app\"]\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nameflow.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn every_flag_has_a_key() {
        // Every option of capture and read is in a section, typed or mapped.
        for sub in ["capture", "read"] {
            let cmd = Cli::command();
            let sc = cmd.find_subcommand(sub).unwrap();
            let mapped: Vec<String> = SECTIONS
                .iter()
                .filter(|(_, subs, _)| subs.contains(&sub))
                .flat_map(|(s, _, _)| options(s, sub))
                .map(|o| o.id)
                .collect();
            for a in sc.get_arguments() {
                let id = a.get_id().as_str();
                if a.get_long().is_none() || ["help", "config"].contains(&id) {
                    continue;
                }
                let typed = TYPED_GROUPS.iter().any(|g| {
                    sc.get_groups()
                        .any(|x| x.get_id() == *g && x.get_args().any(|y| y == id))
                });
                assert!(
                    typed || mapped.iter().any(|m| m == id),
                    "{sub} --{} has no config key",
                    a.get_long().unwrap()
                );
            }
        }
    }

    #[test]
    fn file_options_are_inserted_and_flags_win() {
        let (_d, p) = write(
            "[capture]\ninterface = \"eth9\"\nring_size = 4096\nbypass = [\"198.18.0.0/16\"]\n\
             drop_non_ip = true\n[flow]\nmax_flows = 77\nconn_key = \"vlan\"\ncommunity_id_seed = 7\n[names]\n\
             max_entries = 5\n",
        );
        let cfg = p.to_str().unwrap();
        let (out, _) = apply_file(argv(&[
            "nameflow",
            "--config",
            cfg,
            "capture",
            "--ring-size",
            "64",
        ]))
        .unwrap();
        let cli = <Cli as clap::Parser>::try_parse_from(&out).unwrap();
        let Cmd::Capture(a) = cli.command else {
            panic!("capture expected")
        };
        let s = format!("{a:?}");
        assert!(s.contains("interface: \"eth9\""), "{s}");
        assert!(s.contains("ring_size: 64"), "the flag wins: {s}");
        assert!(s.contains("drop_non_ip: true"), "{s}");
        assert!(s.contains("\"198.18.0.0/16\""), "{s}");
        assert!(s.contains("max_flows: 77"), "{s}");
        assert!(s.contains("conn_key: Vlan"), "{s}");
        assert!(s.contains("community_id_seed: 7"), "{s}");
        assert!(s.contains("name_max_entries: 5"), "{s}");
        // The [capture] section does not reach `read`.
        let (out, _) =
            apply_file(argv(&["nameflow", "read", &format!("--config={cfg}"), "x"])).unwrap();
        let s = format!(
            "{:?}",
            <Cli as clap::Parser>::try_parse_from(&out).unwrap().command
        );
        assert!(!s.contains("eth9") && s.contains("max_flows: 77"), "{s}");
        assert!(s.contains("conn_key: Vlan"), "[flow] reaches read too: {s}");
    }

    #[test]
    fn the_default_file_passes_check() {
        let (_d, p) = write(&default_file());
        check(&p).unwrap_or_else(|e| panic!("{e:#}\n{}", default_file()));
        let text = default_file();
        for key in [
            "ring_size = 2048",
            "max_flows = 1048576",
            "conn_key = \"default\"",
            "max_entries = 1048576",
        ] {
            assert!(text.contains(key), "{key} missing:\n{text}");
        }
        assert!(text.contains("# interface = \"eth1\""), "{text}");
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let cases = [
            ("[capture]\nring_szie = 4096\n", "capture.ring_szie"),
            ("[flow]\nmax_flows = 0\n", "flow.max_flows"),
            ("[flow]\nconn_key = \"vxlan\"\n", "flow.conn_key"),
            (
                "[flow]\ncommunity_id_seed = 65536\n",
                "flow.community_id_seed",
            ),
            ("[capture]\nring_size = \"big\"\n", "capture.ring_size"),
            ("[capture]\nxdp_mode = \"turbo\"\n", "capture.xdp_mode"),
            ("[capture]\nforce = \"yes\"\n", "capture.force"),
            ("[names]\nttl_floor = \"soon\"\n", "names.ttl_floor"),
            ("[capture]\nmetrics = \"localhost\"\n", "capture.metrics"),
            (
                "[capture]\nuser = \"no-such-user-nameflow\"\n",
                "capture.user",
            ),
            ("[output]\nrotate = \"x\"\n", "output.rotate"),
            ("[nmaes]\n", "nmaes"),
        ];
        for (text, key) in cases {
            let (_d, p) = write(text);
            let e = format!("{:#}", check(&p).unwrap_err());
            assert!(e.contains(key), "{text:?}: {e}");
        }
        // Settings that only conflict together are reported for the file as a whole.
        let (_d, p) = write("[names]\nttl_floor = \"2h\"\nttl_cap = \"1h\"\n");
        let e = format!("{:#}", check(&p).unwrap_err());
        assert!(e.contains("together") && e.contains("ttl"), "{e}");
    }
}
