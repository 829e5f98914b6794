//! Kubernetes inventories: the JSON that `kubectl get pods,services,nodes -A -o json` prints
//! (a `List` whose `items` are objects with `kind`, `metadata`, `spec` and `status`), or one
//! object. Only the fields below are read; everything else is ignored.
//!
//! - Pod: `status.podIPs[].ip` (or `status.podIP`) → `pod` = `metadata.name`,
//!   `pod_namespace` = `metadata.namespace`, `pod_node` = `spec.nodeName`. The window opens at
//!   `status.startTime` (else `metadata.creationTimestamp`) and closes at
//!   `metadata.deletionTimestamp` (the end of the grace period), or when the pod has finished
//!   (`status.phase` `Succeeded`/`Failed`: the last `finishedAt` of its containers), because
//!   a finished pod still lists an address that the network has already given to another.
//!   Pods with `spec.hostNetwork` share their node's address and are skipped.
//! - Service: `spec.clusterIPs` (or `spec.clusterIP`; `None` for headless services) and
//!   `status.loadBalancer.ingress[].ip` → `svc` = `namespace/name`.
//! - Node: `status.addresses[]` of type `InternalIP` → `pod_node` = `metadata.name`.
//!
//! Attributes for extra columns: `label:KEY`, `annotation:KEY`, `uid`, `namespace`, `name`,
//! and for pods `phase` and `node`, for services `type`.

use super::history::{Observation, Snapshot};
use super::{col, fill_extras, parse_time, Rank, Values};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;

/// One Kubernetes object; the fields of the three kinds read here do not clash, so one
/// struct serves them all.
#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct Object {
    pub kind: Option<String>,
    pub metadata: Meta,
    pub spec: Spec,
    pub status: Status,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct Meta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    pub creation_timestamp: Option<String>,
    pub deletion_timestamp: Option<String>,
    pub labels: Option<HashMap<String, String>>,
    pub annotations: Option<HashMap<String, String>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct Spec {
    pub node_name: Option<String>,
    pub host_network: Option<bool>,
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Option<Vec<String>>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct Status {
    pub phase: Option<String>,
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pub pod_ips: Option<Vec<PodIp>>,
    pub start_time: Option<String>,
    pub container_statuses: Option<Vec<ContainerStatus>>,
    pub addresses: Option<Vec<NodeAddress>>,
    pub load_balancer: Option<LoadBalancer>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct PodIp {
    pub ip: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct ContainerStatus {
    pub state: Option<ContainerState>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct ContainerState {
    pub terminated: Option<Terminated>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct Terminated {
    pub finished_at: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub address: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct LoadBalancer {
    pub ingress: Option<Vec<Ingress>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct Ingress {
    pub ip: Option<String>,
}

/// What a field error says: where the value is and what is wrong with it.
pub type FieldError = (String, String);

/// Adds the observations of `objects` (at `base[i]`, e.g. `items[3]`) to `snap`.
/// `wanted` are the attributes the extra columns read.
pub fn observe(
    objects: &[Object],
    base: &str,
    list: bool,
    wanted: &[String],
    snap: &mut Snapshot,
) -> Result<(), FieldError> {
    for (i, o) in objects.iter().enumerate() {
        let at = if list {
            format!("{base}[{i}]")
        } else {
            base.to_owned()
        };
        match o.kind.as_deref() {
            Some("Pod") => pod(o, &at, wanted, snap)?,
            Some("Service") => service(o, &at, wanted, snap)?,
            Some("Node") => node(o, &at, wanted, snap)?,
            // `kubectl get all` lists deployments and the like: they hold no address.
            _ => snap.ignored += 1,
        }
    }
    Ok(())
}

fn ip(v: &str, field: impl FnOnce() -> String) -> Result<IpAddr, FieldError> {
    v.trim().parse().map_err(|_| {
        (
            field(),
            format!("{v:?} is not an IP address; kubectl writes addresses such as 10.244.1.7"),
        )
    })
}

fn time(v: &Option<String>, field: impl FnOnce() -> String) -> Result<Option<u64>, FieldError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => parse_time(s).map(Some).ok_or_else(|| {
            (
                field(),
                format!("{s:?} is not an RFC 3339 time such as 2024-05-01T10:00:00Z"),
            )
        }),
    }
}

fn attrs<'a>(
    o: &'a Object,
    extra: &'a [(&'static str, Option<&'a str>)],
    name: &str,
) -> Option<&'a str> {
    let m = &o.metadata;
    if let Some(k) = name.strip_prefix("label:") {
        return m.labels.as_ref()?.get(k).map(String::as_str);
    }
    if let Some(k) = name.strip_prefix("annotation:") {
        return m.annotations.as_ref()?.get(k).map(String::as_str);
    }
    match name {
        "uid" => m.uid.as_deref(),
        "namespace" => m.namespace.as_deref(),
        "name" => m.name.as_deref(),
        _ => extra.iter().find(|(k, _)| *k == name).and_then(|(_, v)| *v),
    }
}

fn identity(o: &Object, at: &str) -> Result<(String, String), FieldError> {
    let name = o.metadata.name.clone().ok_or_else(|| {
        (
            format!("{at}.metadata.name"),
            "missing; every object has a name".into(),
        )
    })?;
    // The uid tells apart two objects that had the same name one after the other.
    let uid =
        o.metadata.uid.clone().unwrap_or_else(|| {
            format!("{}/{}", o.metadata.namespace.as_deref().unwrap_or(""), name)
        });
    Ok((name, uid))
}

/// The scope and identity an object's observations carry (`k8s:Pod` and its uid), or
/// `None` for kinds that hold no address or an object without a name.
pub fn object_key(o: &Object) -> Option<(&'static str, String)> {
    let scope = match o.kind.as_deref()? {
        "Pod" => "k8s:Pod",
        "Service" => "k8s:Service",
        "Node" => "k8s:Node",
        _ => return None,
    };
    identity(o, "").ok().map(|(_, uid)| (scope, uid))
}

fn pod(o: &Object, at: &str, wanted: &[String], snap: &mut Snapshot) -> Result<(), FieldError> {
    let (name, uid) = identity(o, at)?;
    if o.spec.host_network == Some(true) {
        // The address is the node's: the node inventory names it.
        snap.host_network += 1;
        return Ok(());
    }
    let start = match time(&o.status.start_time, || format!("{at}.status.startTime"))? {
        Some(t) => Some(t),
        None => time(&o.metadata.creation_timestamp, || {
            format!("{at}.metadata.creationTimestamp")
        })?,
    };
    let mut end = time(&o.metadata.deletion_timestamp, || {
        format!("{at}.metadata.deletionTimestamp")
    })?;
    let finished = matches!(o.status.phase.as_deref(), Some("Succeeded" | "Failed"));
    if finished {
        let mut last: Option<u64> = None;
        for (j, c) in o.status.container_statuses.iter().flatten().enumerate() {
            let t = c.state.as_ref().and_then(|s| s.terminated.as_ref());
            if let Some(t) = t {
                if let Some(f) = time(&t.finished_at, || {
                    format!("{at}.status.containerStatuses[{j}].state.terminated.finishedAt")
                })? {
                    last = Some(last.map_or(f, |l| l.max(f)));
                }
            }
        }
        // Without a finish time the pod is known finished only as of this snapshot.
        let f = last.unwrap_or(snap.taken_ns);
        end = Some(end.map_or(f, |e| e.min(f)));
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    for (j, p) in o.status.pod_ips.iter().flatten().enumerate() {
        if let Some(v) = p.ip.as_deref() {
            ips.push(ip(v, || format!("{at}.status.podIPs[{j}].ip"))?);
        }
    }
    if ips.is_empty() {
        if let Some(v) = o.status.pod_ip.as_deref().filter(|v| !v.is_empty()) {
            ips.push(ip(v, || format!("{at}.status.podIP"))?);
        }
    }
    if ips.is_empty() {
        // Pending pods have no address yet.
        snap.no_address += 1;
        return Ok(());
    }
    let mut values: Values = Default::default();
    values[col::POD] = Some(name.as_str().into());
    values[col::POD_NAMESPACE] = o.metadata.namespace.as_deref().map(Into::into);
    values[col::POD_NODE] = o.spec.node_name.as_deref().map(Into::into);
    let extra = [
        ("phase", o.status.phase.as_deref()),
        ("node", o.spec.node_name.as_deref()),
    ];
    fill_extras(&mut values, wanted, |n| attrs(o, &extra, n));
    push(snap, "k8s:Pod", &uid, &ips, start, end, Rank::Pod, &values);
    Ok(())
}

fn service(o: &Object, at: &str, wanted: &[String], snap: &mut Snapshot) -> Result<(), FieldError> {
    let (name, uid) = identity(o, at)?;
    let start = time(&o.metadata.creation_timestamp, || {
        format!("{at}.metadata.creationTimestamp")
    })?;
    let end = time(&o.metadata.deletion_timestamp, || {
        format!("{at}.metadata.deletionTimestamp")
    })?;
    let mut ips: Vec<IpAddr> = Vec::new();
    let usable = |v: &str| !v.is_empty() && v != "None";
    match &o.spec.cluster_ips {
        Some(list) => {
            for (j, v) in list.iter().enumerate().filter(|(_, v)| usable(v)) {
                ips.push(ip(v, || format!("{at}.spec.clusterIPs[{j}]"))?);
            }
        }
        None => {
            if let Some(v) = o.spec.cluster_ip.as_deref().filter(|v| usable(v)) {
                ips.push(ip(v, || format!("{at}.spec.clusterIP"))?);
            }
        }
    }
    let ingress = o
        .status
        .load_balancer
        .as_ref()
        .and_then(|l| l.ingress.as_ref());
    for (j, g) in ingress.into_iter().flatten().enumerate() {
        if let Some(v) = g.ip.as_deref().filter(|v| !v.is_empty()) {
            ips.push(ip(v, || {
                format!("{at}.status.loadBalancer.ingress[{j}].ip")
            })?);
        }
    }
    if ips.is_empty() {
        snap.no_address += 1;
        return Ok(());
    }
    let mut values: Values = Default::default();
    let ns = o.metadata.namespace.as_deref().unwrap_or("default");
    values[col::SVC] = Some(format!("{ns}/{name}").into());
    let extra = [("type", o.spec.kind.as_deref())];
    fill_extras(&mut values, wanted, |n| attrs(o, &extra, n));
    push(
        snap,
        "k8s:Service",
        &uid,
        &ips,
        start,
        end,
        Rank::Service,
        &values,
    );
    Ok(())
}

fn node(o: &Object, at: &str, wanted: &[String], snap: &mut Snapshot) -> Result<(), FieldError> {
    let (name, uid) = identity(o, at)?;
    let start = time(&o.metadata.creation_timestamp, || {
        format!("{at}.metadata.creationTimestamp")
    })?;
    let end = time(&o.metadata.deletion_timestamp, || {
        format!("{at}.metadata.deletionTimestamp")
    })?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for (j, a) in o.status.addresses.iter().flatten().enumerate() {
        if a.kind.as_deref() == Some("InternalIP") {
            if let Some(v) = a.address.as_deref() {
                ips.push(ip(v, || format!("{at}.status.addresses[{j}].address"))?);
            }
        }
    }
    if ips.is_empty() {
        snap.no_address += 1;
        return Ok(());
    }
    let mut values: Values = Default::default();
    values[col::POD_NODE] = Some(name.as_str().into());
    fill_extras(&mut values, wanted, |n| attrs(o, &[], n));
    push(
        snap,
        "k8s:Node",
        &uid,
        &ips,
        start,
        end,
        Rank::Node,
        &values,
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)] // One call per kind above; a struct would only rename them.
fn push(
    snap: &mut Snapshot,
    scope: &str,
    id: &str,
    ips: &[IpAddr],
    start: Option<u64>,
    end: Option<u64>,
    rank: Rank,
    values: &Values,
) {
    snap.cover(scope);
    for &ip in ips {
        snap.observations.push(Observation {
            scope: scope.into(),
            id: id.into(),
            ip,
            start_ns: start,
            end_ns: end,
            rank,
            values: values.clone(),
        });
    }
}
