//! Inventories in their real formats: the fixtures in `tests/context/` were written from the
//! documented output of `kubectl get pods|services|nodes -A -o json` (Kubernetes v1 API) and
//! `aws ec2 describe-instances` (EC2 API `DescribeInstances` as the AWS CLI prints it), with
//! made-up names and documentation/benchmark addresses. Each test loads them through the
//! same loader the CLI uses and asks what an address was at an instant.
//!
//! The watch-event fixtures (`watch*.json`) are what `kubectl get pods,services,nodes -A
//! --watch --output-watch-events -o json` prints: `{"type": ..., "object": ...}` documents,
//! pretty-printed one after the other, the objects as in the v1 API (`watch.json`: a node, a
//! service, a pod deleted and a new pod on its address, a job pod that lived 20 s, a
//! host-network pod, a bookmark; `watch-relist.json`: what a restarted command lists when
//! that new pod is gone; `watch-damaged.json`: a syntax error, a bad address and an `ERROR`
//! status among good documents).

use nameflow::context::reload::{now_ns, PollOutcome};
use nameflow::context::{
    col, Context, ContextConfig, ContextEvent, EndContext, ExtraColumn, Inventory, Loader,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/context")
        .join(name)
}

fn extra(specs: &[(&str, &str)]) -> Vec<ExtraColumn> {
    specs
        .iter()
        .map(|(n, a)| ExtraColumn {
            name: (*n).into(),
            attribute: (*a).into(),
        })
        .collect()
}

/// The extra columns every test here configures (index 0..4 after the standard columns).
const EXTRA: [(&str, &str); 4] = [
    ("app", "label:app.kubernetes.io/name"),
    ("team", "team"),
    ("az", "az"),
    ("owner", "tag:Team"),
];

fn load(files: &[&str]) -> Inventory {
    let cfg = ContextConfig {
        paths: files.iter().map(|f| fixture(f)).collect(),
        extra: extra(&EXTRA),
        ..ContextConfig::default()
    };
    Loader::open(&cfg)
        .unwrap_or_else(|e| panic!("fixtures {files:?} must load: {e}"))
        .build()
}

fn ns(rfc3339: &str) -> u64 {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("test time");
    t.timestamp_nanos_opt().expect("in range") as u64
}

/// What `ip` was at `when`: column name → value, for the columns that are set.
fn at(inv: &Inventory, ip: &str, when: &str) -> Vec<(&'static str, String)> {
    let mut e = EndContext::default();
    inv.lookup(ip.parse().expect("test address"), ns(when), &mut e);
    let names = [
        "pod",
        "pod_namespace",
        "pod_node",
        "svc",
        "instance",
        "instance_name",
        "vpc",
        EXTRA[0].0,
        EXTRA[1].0,
        EXTRA[2].0,
        EXTRA[3].0,
    ];
    e.columns()
        .iter()
        .zip(names)
        .filter_map(|(v, n)| v.map(|v| (n, String::from_utf8_lossy(v).into_owned())))
        .collect()
}

fn get(cols: &[(&'static str, String)], name: &str) -> Option<String> {
    cols.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.clone())
}

#[test]
fn pods_from_kubectl_json() {
    let inv = load(&["pods.json"]);
    let c = at(&inv, "198.18.100.7", "2024-05-01T10:00:00Z");
    assert_eq!(get(&c, "pod").as_deref(), Some("checkout-7d4b9c6f5-x2x1z"));
    assert_eq!(get(&c, "pod_namespace").as_deref(), Some("shop"));
    assert_eq!(get(&c, "pod_node").as_deref(), Some("worker-a"));
    assert_eq!(get(&c, "app").as_deref(), Some("checkout"));
    // The second address of a dual-stack pod.
    let c6 = at(&inv, "fd00:10:244::7", "2024-05-01T10:00:00Z");
    assert_eq!(get(&c6, "pod").as_deref(), Some("checkout-7d4b9c6f5-x2x1z"));
    // Before the pod started.
    assert!(at(&inv, "198.18.100.7", "2024-05-01T09:58:11Z").is_empty());
    // A pod on the host network does not claim its node's address; a pending pod has none.
    assert!(at(&inv, "198.18.10.1", "2024-05-01T10:00:00Z").is_empty());
}

#[test]
fn two_pods_use_one_address_one_after_the_other() {
    // report-28573920-4kq9z (a job) held 198.18.100.9 from 09:00:00 until it finished at
    // 09:04:30; ledger-6f9c8d7b5-p8m2d has held it since 09:30:00. kubectl still lists the
    // finished job's address: the window must close when it finished, not when it is deleted.
    let inv = load(&["pods.json"]);
    let pod = |when| get(&at(&inv, "198.18.100.9", when), "pod");
    assert_eq!(
        pod("2024-05-01T09:02:00Z").as_deref(),
        Some("report-28573920-4kq9z")
    );
    assert_eq!(pod("2024-05-01T09:10:00Z"), None, "in the gap");
    assert_eq!(
        pod("2024-05-01T09:45:00Z").as_deref(),
        Some("ledger-6f9c8d7b5-p8m2d")
    );
    assert_eq!(
        get(
            &at(&inv, "198.18.100.9", "2024-05-01T09:02:00Z"),
            "pod_namespace"
        )
        .as_deref(),
        Some("batch")
    );
}

#[test]
fn a_terminating_pod_holds_its_address_until_its_deletion_time() {
    let inv = load(&["pods.json"]);
    let pod = |when| get(&at(&inv, "198.18.100.12", when), "pod");
    assert_eq!(pod("2024-05-01T10:05:29Z").as_deref(), Some("search-0"));
    assert_eq!(pod("2024-05-01T10:05:30Z"), None);
}

#[test]
fn services_and_nodes() {
    let inv = load(&["services.json", "nodes.json"]);
    let when = "2024-05-01T10:00:00Z";
    for ip in ["198.19.0.20", "fd00:96::14"] {
        assert_eq!(
            get(&at(&inv, ip, when), "svc").as_deref(),
            Some("shop/checkout"),
            "{ip}"
        );
    }
    for ip in ["198.19.0.99", "198.18.200.10"] {
        assert_eq!(
            get(&at(&inv, ip, when), "svc").as_deref(),
            Some("ingress-nginx/ingress-nginx-controller"),
            "{ip}: cluster IP and load-balancer address"
        );
    }
    // Created on 2024-04-20: not before.
    assert!(at(&inv, "198.19.0.20", "2024-04-19T00:00:00Z").is_empty());
    let node = at(&inv, "198.18.10.1", when);
    assert_eq!(get(&node, "pod_node").as_deref(), Some("worker-a"));
    assert_eq!(get(&node, "pod"), None);
    // Only InternalIP addresses name a node.
    assert!(at(&inv, "203.0.113.10", when).is_empty());
}

#[test]
fn instances_from_describe_instances() {
    let inv = load(&["ec2.json"]);
    let when = "2024-05-01T10:00:00Z";
    for ip in ["198.18.10.1", "203.0.113.10", "fd00:ec2::a1", "198.18.11.5"] {
        let c = at(&inv, ip, when);
        assert_eq!(
            get(&c, "instance").as_deref(),
            Some("i-0a1b2c3d4e5f60718"),
            "{ip}"
        );
        assert_eq!(get(&c, "instance_name").as_deref(), Some("k8s-worker-a"));
        assert_eq!(get(&c, "vpc").as_deref(), Some("vpc-0fedcba9876543210"));
        assert_eq!(get(&c, "az").as_deref(), Some("eu-west-1a"));
        assert_eq!(get(&c, "owner").as_deref(), Some("platform"));
    }
    // The second interface was attached on 2024-04-15 at 06:00.
    assert!(at(&inv, "198.18.11.5", "2024-04-15T05:59:59Z").is_empty());
    assert_eq!(
        get(&at(&inv, "198.18.10.1", "2024-04-02T00:00:00Z"), "instance").as_deref(),
        Some("i-0a1b2c3d4e5f60718")
    );
    // A stopped instance keeps its private address; it has no Name tag.
    let c = at(&inv, "198.18.20.4", when);
    assert_eq!(get(&c, "instance").as_deref(), Some("i-0c3d4e5f607182930"));
    assert_eq!(get(&c, "instance_name"), None);
    assert_eq!(get(&c, "owner").as_deref(), Some("data"));
}

#[test]
fn sources_merge_per_column() {
    let inv = load(&[
        "pods.json",
        "services.json",
        "nodes.json",
        "ec2.json",
        "table.jsonl",
    ]);
    // A pod address that is also a secondary address of its node's instance (the VPC CNI
    // way): the pod columns from kubectl, the instance columns from EC2, and the operator's
    // table row adds a team but does not override the pod.
    let c = at(&inv, "198.18.100.7", "2024-05-01T10:00:00Z");
    assert_eq!(get(&c, "pod").as_deref(), Some("checkout-7d4b9c6f5-x2x1z"));
    assert_eq!(get(&c, "instance").as_deref(), Some("i-0a1b2c3d4e5f60718"));
    assert_eq!(get(&c, "team").as_deref(), Some("payments-override"));
    // The node's address: node from kubectl, instance from EC2.
    let c = at(&inv, "198.18.10.1", "2024-05-01T10:00:00Z");
    assert_eq!(get(&c, "pod_node").as_deref(), Some("worker-a"));
    assert_eq!(get(&c, "instance_name").as_deref(), Some("k8s-worker-a"));
}

#[test]
fn a_table_covers_anything_else_with_its_own_windows() {
    let inv = load(&["table.jsonl"]);
    let c = at(&inv, "198.18.30.5", "2024-05-01T12:00:00Z");
    assert_eq!(get(&c, "team").as_deref(), Some("payments"));
    assert_eq!(get(&c, "instance_name").as_deref(), Some("legacy-billing"));
    let c = at(&inv, "198.18.30.5", "2024-05-02T12:00:00Z");
    assert_eq!(get(&c, "team").as_deref(), Some("search"));
    assert_eq!(get(&c, "instance_name"), None);
    assert!(at(&inv, "198.18.30.5", "2024-04-30T12:00:00Z").is_empty());
    let c = at(&inv, "fd00:30::5", "2030-01-01T00:00:00Z");
    assert_eq!(get(&c, "team").as_deref(), Some("platform"));
}

#[test]
fn a_broken_fixture_is_named_with_its_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read_to_string(fixture("pods.json"))
        .expect("fixture")
        .replacen("\"198.18.100.12\"", "\"198.18.100.312\"", 2);
    let path = dir.path().join("pods.json");
    std::fs::write(&path, text).expect("write");
    let cfg = ContextConfig {
        paths: vec![path],
        ..ContextConfig::default()
    };
    let e = Loader::open(&cfg).expect_err("a bad address must be refused");
    let msg = e.to_string();
    assert!(
        msg.contains("pods.json") && msg.contains("items[3].status.podIP"),
        "{msg}"
    );
}

#[test]
fn the_attribute_columns_take_labels_tags_and_table_fields() {
    let cfg = ContextConfig {
        paths: vec![fixture("pods.json"), fixture("ec2.json")],
        extra: extra(&[
            ("uid", "uid"),
            ("phase", "phase"),
            ("account", "account"),
            ("type", "instance_type"),
        ]),
        ..ContextConfig::default()
    };
    let inv = Loader::open(&cfg).expect("fixtures load").build();
    let mut e = EndContext::default();
    inv.lookup(
        "198.18.100.7".parse().unwrap(),
        ns("2024-05-01T10:00:00Z"),
        &mut e,
    );
    let v = |c: usize| e.get(c).map(|v| String::from_utf8_lossy(v).into_owned());
    assert_eq!(v(col::POD).as_deref(), Some("checkout-7d4b9c6f5-x2x1z"));
    assert_eq!(
        v(7).as_deref(),
        Some("0b5f7c1a-2d3e-4f60-8a9b-1c2d3e4f5a6b"),
        "uid"
    );
    assert_eq!(v(8).as_deref(), Some("Running"), "phase");
    assert_eq!(v(9).as_deref(), Some("123456789012"), "account");
    assert_eq!(v(10).as_deref(), Some("m6i.xlarge"), "instance type");
}

/// What `ip` was at `t_ns` (nanoseconds since the epoch): its pod, or `None`.
fn pod_at_ns(inv: &Inventory, ip: &str, t_ns: u64) -> Option<String> {
    let mut e = EndContext::default();
    inv.lookup(ip.parse().expect("test address"), t_ns, &mut e);
    e.get(col::POD)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn watch_events_a_deleted_pod_then_a_new_pod_on_its_address() {
    // checkout-…-x2x1z held 198.18.100.7 from 10:00:00; it was deleted with a grace period
    // ending 10:30:30 (MODIFIED with deletionTimestamp, then DELETED). checkout-…-q8w3e got
    // the address at 10:30:40, just before a connection at 10:30:45.
    let inv = load(&["watch.json"]);
    let pod = |when| get(&at(&inv, "198.18.100.7", when), "pod");
    assert_eq!(
        pod("2024-05-01T10:15:00Z").as_deref(),
        Some("checkout-7d4b9c6f5-x2x1z")
    );
    assert_eq!(
        pod("2024-05-01T10:30:29Z").as_deref(),
        Some("checkout-7d4b9c6f5-x2x1z"),
        "terminating: until its deletion time"
    );
    assert_eq!(pod("2024-05-01T10:30:35Z"), None, "deleted, not yet reused");
    assert_eq!(
        pod("2024-05-01T10:30:45Z").as_deref(),
        Some("checkout-7d4b9c6f5-q8w3e")
    );
    let c = at(&inv, "198.18.100.7", "2024-05-01T10:30:45Z");
    assert_eq!(get(&c, "pod_namespace").as_deref(), Some("shop"));
    assert_eq!(get(&c, "pod_node").as_deref(), Some("worker-a"));
    assert_eq!(get(&c, "app").as_deref(), Some("checkout"));
    assert!(
        at(&inv, "198.18.100.7", "2024-05-01T09:59:59Z").is_empty(),
        "before the first pod started"
    );
}

#[test]
fn watch_events_a_pod_that_lived_20_s_between_two_snapshots_is_attributed() {
    // report-…-9zz1c: Pending at 10:19:58, address 198.18.100.21 from 10:20:00, finished at
    // 10:20:20, deleted at 10:20:25. A snapshot a minute apart would never list it.
    let inv = load(&["watch.json"]);
    let pod = |when| get(&at(&inv, "198.18.100.21", when), "pod");
    assert_eq!(
        pod("2024-05-01T10:20:10Z").as_deref(),
        Some("report-28573940-9zz1c")
    );
    assert_eq!(
        get(
            &at(&inv, "198.18.100.21", "2024-05-01T10:20:10Z"),
            "pod_namespace"
        )
        .as_deref(),
        Some("batch")
    );
    assert_eq!(pod("2024-05-01T10:19:59Z"), None, "before its address");
    assert_eq!(pod("2024-05-01T10:20:21Z"), None, "finished at 10:20:20");
}

#[test]
fn watch_events_services_nodes_and_the_host_network_pod() {
    let inv = load(&["watch.json"]);
    let svc = at(&inv, "198.19.0.20", "2024-05-01T11:00:00Z");
    assert_eq!(get(&svc, "svc").as_deref(), Some("shop/checkout"));
    let node = at(&inv, "198.18.10.1", "2024-05-01T10:00:00Z");
    assert_eq!(get(&node, "pod_node").as_deref(), Some("worker-a"));
    assert_eq!(
        get(&node, "pod"),
        None,
        "the host-network pod claims nothing"
    );
}

#[test]
fn a_damaged_watch_stream_is_reported_by_line_and_field_and_read_on() {
    let cfg = ContextConfig {
        paths: vec![fixture("watch-damaged.json")],
        ..ContextConfig::default()
    };
    let mut l = Loader::open(&cfg).expect("bad watch documents are not fatal");
    let w: Vec<String> = l
        .take_deferred()
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(w.len(), 3, "{w:#?}");
    assert!(w[0].contains("watch-damaged.json:105:"), "syntax: {}", w[0]);
    assert!(
        w[1].contains("line 109: object.status.podIPs[0].ip") && w[1].contains("198.18.100.300"),
        "field: {}",
        w[1]
    );
    assert!(
        w[2].contains("line 209") && w[2].contains("410: Expired"),
        "the ERROR document: {}",
        w[2]
    );
    let inv = l.build();
    assert_eq!(
        get(&at(&inv, "198.18.100.7", "2024-05-01T10:15:00Z"), "pod").as_deref(),
        Some("checkout-7d4b9c6f5-x2x1z"),
        "before the damage"
    );
    assert_eq!(
        get(&at(&inv, "198.19.0.20", "2024-05-01T10:15:00Z"), "svc").as_deref(),
        Some("shop/checkout"),
        "after it"
    );
}

/// Pumps `l` until a note contains `want`, or panics after 20 s; returns all it saw.
fn pump_until(l: &mut Loader, want: &str) -> PollOutcome {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = PollOutcome::default();
    while !seen.notes.iter().any(|n| n.contains(want)) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {want:?}: {seen:#?}"
        );
        seen.absorb(l.pump(Instant::now() + Duration::from_millis(200)));
    }
    seen
}

#[test]
fn a_watch_command_that_exits_is_restarted_and_its_relist_closes_what_is_gone() {
    // The command replays watch.json and exits; started again, it lists only the node and the
    // service (watch-relist.json): the pod it no longer lists is closed at the restart.
    let dir = tempfile::tempdir().expect("temp dir");
    let ran = dir.path().join("ran");
    let script = format!(
        "if [ -e '{ran}' ]; then cat '{relist}'; else touch '{ran}'; cat '{first}'; fi; exit 0",
        ran = ran.display(),
        relist = fixture("watch-relist.json").display(),
        first = fixture("watch.json").display(),
    );
    let cfg = ContextConfig {
        commands: vec![script],
        extra: extra(&EXTRA),
        ..ContextConfig::default()
    };
    let mut l = Loader::open(&cfg).expect("a command source");
    l.first_lists(Duration::from_secs(20));
    let first = l.take_deferred();
    assert!(first.warnings.is_empty(), "{first:#?}");
    let inv = l.build();
    let later = now_ns() + 3600 * 1_000_000_000;
    assert_eq!(
        pod_at_ns(&inv, "198.18.100.7", later).as_deref(),
        Some("checkout-7d4b9c6f5-q8w3e"),
        "open while the first run's state holds"
    );
    assert_eq!(
        pod_at_ns(&inv, "198.18.100.21", ns("2024-05-01T10:20:10Z")).as_deref(),
        Some("report-28573940-9zz1c")
    );

    let before_restart = now_ns();
    let seen = pump_until(&mut l, "no longer listed closed at the restart");
    let after_restart = now_ns();
    assert!(seen.restarts >= 1, "{seen:#?}");
    assert!(
        seen.notes.iter().any(|n| n.contains("exited (status 0)")),
        "{seen:#?}"
    );
    assert!(seen.warnings.is_empty(), "{seen:#?}");
    let inv = l.build();
    assert_eq!(
        pod_at_ns(&inv, "198.18.100.7", ns("2024-05-01T10:31:00Z")).as_deref(),
        Some("checkout-7d4b9c6f5-q8w3e"),
        "its history stays"
    );
    assert_eq!(
        pod_at_ns(&inv, "198.18.100.7", after_restart + 1_000_000_000),
        None,
        "closed at the restart"
    );
    assert_eq!(
        pod_at_ns(&inv, "198.18.100.7", before_restart).as_deref(),
        Some("checkout-7d4b9c6f5-q8w3e"),
        "open until the restart"
    );
    let mut e = EndContext::default();
    inv.lookup("198.19.0.20".parse().unwrap(), later, &mut e);
    assert_eq!(
        e.get(col::SVC),
        Some(&b"shop/checkout"[..]),
        "listed again: still open"
    );
}

#[test]
fn a_watch_command_that_cannot_run_is_said_once_and_retried_with_backoff() {
    let cfg = ContextConfig {
        commands: vec!["/nonexistent/kubectl get pods -A --watch -o json".into()],
        ..ContextConfig::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (ctx, watcher) = Context::start(&cfg, move |e| {
        let _ = tx.send(e);
    })
    .expect("a failing command is not fatal");
    // Runs at 0 s, after 1 s and after 2 s more: three failures within 3.6 s.
    std::thread::sleep(Duration::from_millis(3600));
    let st = ctx.stats();
    watcher.stop();
    let errors: Vec<String> = rx
        .try_iter()
        .filter_map(|e| match e {
            ContextEvent::Error(e) => Some(e.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "said once: {errors:#?}");
    assert!(
        errors[0].contains("command `/nonexistent/kubectl") && errors[0].contains("127"),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("starting it again in 1 s"),
        "{}",
        errors[0]
    );
    assert!(st.restarts >= 2, "retries counted: {st:?}");
    assert!(st.errors >= 2, "every failure counted: {st:?}");
    assert!(st
        .last_error
        .is_some_and(|e| e.contains("/nonexistent/kubectl")));
}

#[test]
fn a_damaged_watch_command_stream_is_reported_by_line_and_field_and_read_on() {
    let cmd = format!("cat '{}'", fixture("watch-damaged.json").display());
    let cfg = ContextConfig {
        commands: vec![cmd.clone()],
        ..ContextConfig::default()
    };
    let mut l = Loader::open(&cfg).expect("a command source");
    l.first_lists(Duration::from_secs(20));
    // The ERROR document cut the list short, so the first run is settled only when it
    // ends, which closes nothing.
    let seen = l.take_deferred();
    assert!(
        seen.notes.iter().any(|n| n.contains("exited (status 0)")),
        "{seen:#?}"
    );
    assert!(
        !seen.notes.iter().any(|n| n.contains("list complete")),
        "{seen:#?}"
    );
    let w: Vec<String> = seen.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 3, "{w:#?}");
    let origin = format!("context command `{cmd}`: ");
    assert!(w.iter().all(|e| e.starts_with(&origin)), "{w:#?}");
    assert!(
        w[0].contains("line 105, column 23: key must be a string; skipped"),
        "syntax: {}",
        w[0]
    );
    assert!(
        w[1].contains("line 109: object.status.podIPs[0].ip"),
        "field: {}",
        w[1]
    );
    assert!(
        w[2].contains("line 209") && w[2].contains("410: Expired"),
        "{}",
        w[2]
    );
    let inv = l.build();
    assert_eq!(
        pod_at_ns(&inv, "198.18.100.7", ns("2024-05-01T10:15:00Z")).as_deref(),
        Some("checkout-7d4b9c6f5-x2x1z")
    );
    let mut e = EndContext::default();
    inv.lookup(
        "198.19.0.20".parse().unwrap(),
        ns("2024-05-01T10:15:00Z"),
        &mut e,
    );
    assert_eq!(
        e.get(col::SVC),
        Some(&b"shop/checkout"[..]),
        "read on after the damage"
    );
}

#[test]
fn a_fifo_whose_writer_comes_back_is_resynced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("k8s.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("failed to run mkfifo");
    assert!(made.success());
    // Two writers one after the other, as a supervisor restarting kubectl would be.
    let write = |name: &'static str| {
        let f = fifo.clone();
        std::thread::spawn(move || {
            let text = std::fs::read(fixture(name)).expect("fixture");
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(&f)
                .expect("open the FIFO for writing");
            std::io::Write::write_all(&mut w, &text).expect("write the FIFO");
        })
    };
    let first = write("watch.json");
    let cfg = ContextConfig {
        paths: vec![fifo.clone()],
        ..ContextConfig::default()
    };
    let mut l = Loader::open(&cfg).expect("a FIFO source");
    l.first_lists(Duration::from_secs(20));
    first.join().expect("first writer");
    let later = now_ns() + 3600 * 1_000_000_000;
    assert_eq!(
        pod_at_ns(&l.build(), "198.18.100.7", later).as_deref(),
        Some("checkout-7d4b9c6f5-q8w3e")
    );
    // The first writer's end may have been read while the first list was waited for.
    let early = l.take_deferred();
    if !early
        .notes
        .iter()
        .any(|n| n.contains("its writer closed it"))
    {
        pump_until(&mut l, "its writer closed it");
    }
    let second = write("watch-relist.json");
    let seen = pump_until(&mut l, "no longer listed closed at the restart");
    second.join().expect("second writer");
    assert!(seen.warnings.is_empty(), "{seen:#?}");
    let inv = l.build();
    assert_eq!(pod_at_ns(&inv, "198.18.100.7", later), None, "resynced");
    assert_eq!(
        pod_at_ns(&inv, "198.18.100.7", ns("2024-05-01T10:31:00Z")).as_deref(),
        Some("checkout-7d4b9c6f5-q8w3e"),
        "its history stays"
    );
}

#[test]
fn output_that_is_not_watch_events_is_said_ten_times_then_counted() {
    // `kubectl get pods --watch -o json` without --output-watch-events prints bare objects.
    let cfg = ContextConfig {
        commands: vec![
            "i=0; while [ $i -lt 30 ]; do echo '{\"kind\": \"Pod\", \"metadata\": {}}'; \
             i=$((i+1)); done"
                .into(),
        ],
        ..ContextConfig::default()
    };
    let mut l = Loader::open(&cfg).expect("a command source");
    l.first_lists(Duration::from_secs(20));
    let seen = l.take_deferred();
    assert_eq!(seen.warnings.len(), 10, "{seen:#?}");
    assert!(
        seen.warnings[0]
            .to_string()
            .contains("line 1: type: missing; a watch event is"),
        "{}",
        seen.warnings[0]
    );
    assert_eq!(seen.repeated, 20, "{seen:#?}");
    assert!(
        seen.notes
            .iter()
            .any(|n| n.contains("10 bad documents in a row")),
        "{seen:#?}"
    );
}
