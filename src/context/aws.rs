//! AWS inventories: the JSON that `aws ec2 describe-instances` prints
//! (`{"Reservations": [{"OwnerId": ..., "Instances": [...]}]}`). Only the fields below are
//! read; everything else is ignored.
//!
//! Every address of an instance maps to `instance` = `InstanceId`, `instance_name` = the
//! `Name` tag, `vpc` = `VpcId`: `PrivateIpAddress`, `PublicIpAddress`, `Ipv6Address`, and
//! each network interface's private addresses, their public association and its IPv6
//! addresses. The window opens at the interface's `Attachment.AttachTime` (else
//! `LaunchTime`, else the first snapshot that shows it); instances that are terminated or
//! shutting down are not listed as holders, so the next snapshot closes their windows.
//!
//! Attributes for extra columns: `account` (the reservation's `OwnerId`), `az`, `region`,
//! `subnet`, `instance_type`, `state`, `tag:KEY`.

use super::history::{Observation, Snapshot};
use super::kube::FieldError;
use super::{col, fill_extras, parse_time, Rank, Values};
use serde::Deserialize;
use std::net::IpAddr;

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "PascalCase")]
pub struct Reservation {
    pub owner_id: Option<String>,
    pub instances: Option<Vec<Instance>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "PascalCase")]
pub struct Instance {
    pub instance_id: Option<String>,
    pub instance_type: Option<String>,
    pub launch_time: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub placement: Option<Placement>,
    pub private_ip_address: Option<String>,
    pub public_ip_address: Option<String>,
    pub ipv6_address: Option<String>,
    pub tags: Option<Vec<Tag>>,
    pub state: Option<State>,
    pub network_interfaces: Option<Vec<Interface>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "PascalCase")]
pub struct Placement {
    pub availability_zone: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "PascalCase")]
pub struct Tag {
    pub key: Option<String>,
    pub value: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "PascalCase")]
pub struct State {
    pub name: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "PascalCase")]
pub struct Interface {
    pub attachment: Option<Attachment>,
    pub private_ip_addresses: Option<Vec<PrivateIp>>,
    pub ipv6_addresses: Option<Vec<Ipv6>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "PascalCase")]
pub struct Attachment {
    pub attach_time: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "PascalCase")]
pub struct PrivateIp {
    pub private_ip_address: Option<String>,
    pub association: Option<Association>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "PascalCase")]
pub struct Association {
    pub public_ip: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default, rename_all = "PascalCase")]
pub struct Ipv6 {
    pub ipv6_address: Option<String>,
}

fn ip(v: &str, field: impl FnOnce() -> String) -> Result<IpAddr, FieldError> {
    v.trim().parse().map_err(|_| {
        (
            field(),
            format!("{v:?} is not an IP address; the AWS CLI writes addresses such as 10.0.1.15"),
        )
    })
}

fn time(v: &Option<String>, field: impl FnOnce() -> String) -> Result<Option<u64>, FieldError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => parse_time(s).map(Some).ok_or_else(|| {
            (
                field(),
                format!("{s:?} is not an RFC 3339 time such as 2024-05-01T10:00:00+00:00"),
            )
        }),
    }
}

/// The region of an availability zone: `eu-west-1b` → `eu-west-1`.
fn region(az: &str) -> &str {
    az.trim_end_matches(|c: char| c.is_ascii_lowercase())
}

/// Adds the observations of `reservations` (at `Reservations[i]`) to `snap`.
pub fn observe(
    reservations: &[Reservation],
    wanted: &[String],
    snap: &mut Snapshot,
) -> Result<(), FieldError> {
    for (r, res) in reservations.iter().enumerate() {
        for (i, inst) in res.instances.iter().flatten().enumerate() {
            let at = format!("Reservations[{r}].Instances[{i}]");
            instance(res, inst, &at, wanted, snap)?;
        }
    }
    Ok(())
}

fn instance(
    res: &Reservation,
    inst: &Instance,
    at: &str,
    wanted: &[String],
    snap: &mut Snapshot,
) -> Result<(), FieldError> {
    let id = inst.instance_id.as_deref().ok_or_else(|| {
        (
            format!("{at}.InstanceId"),
            "missing; every instance has an id".into(),
        )
    })?;
    let account = res.owner_id.as_deref().unwrap_or("");
    let az = inst
        .placement
        .as_ref()
        .and_then(|p| p.availability_zone.as_deref())
        .unwrap_or("");
    let scope = format!("ec2:{account}:{}", region(az));
    // Listing an instance, even a terminated one, shows this snapshot covers its scope.
    snap.cover(&scope);
    let state = inst.state.as_ref().and_then(|s| s.name.as_deref());
    if matches!(state, Some("terminated" | "shutting-down")) {
        snap.no_address += 1;
        return Ok(());
    }
    let launch = time(&inst.launch_time, || format!("{at}.LaunchTime"))?;
    let tag = |k: &str| {
        inst.tags
            .iter()
            .flatten()
            .find(|t| t.key.as_deref() == Some(k))
            .and_then(|t| t.value.as_deref())
    };
    let mut values: Values = Default::default();
    values[col::INSTANCE] = Some(id.into());
    values[col::INSTANCE_NAME] = tag("Name").filter(|v| !v.is_empty()).map(Into::into);
    values[col::VPC] = inst.vpc_id.as_deref().map(Into::into);
    fill_extras(&mut values, wanted, |n| {
        if let Some(k) = n.strip_prefix("tag:") {
            return tag(k);
        }
        match n {
            "account" => res.owner_id.as_deref(),
            "az" => Some(az),
            "region" => Some(region(az)),
            "subnet" => inst.subnet_id.as_deref(),
            "instance_type" => inst.instance_type.as_deref(),
            "state" => state,
            _ => None,
        }
    });
    // Each address with the time it was attached; the top-level fields repeat the primary
    // interface's, so an address is kept once, with its interface's time when there is one.
    let mut held: Vec<(IpAddr, Option<u64>)> = Vec::new();
    let mut add = |ip: IpAddr, t: Option<u64>| {
        if let Some(h) = held.iter_mut().find(|h| h.0 == ip) {
            h.1 = h.1.or(t);
        } else {
            held.push((ip, t));
        }
    };
    for (n, eni) in inst.network_interfaces.iter().flatten().enumerate() {
        let attached = match &eni.attachment {
            Some(a) => time(&a.attach_time, || {
                format!("{at}.NetworkInterfaces[{n}].Attachment.AttachTime")
            })?,
            None => None,
        };
        let t = attached.or(launch);
        for (j, p) in eni.private_ip_addresses.iter().flatten().enumerate() {
            if let Some(v) = p.private_ip_address.as_deref() {
                let f = || {
                    format!("{at}.NetworkInterfaces[{n}].PrivateIpAddresses[{j}].PrivateIpAddress")
                };
                add(ip(v, f)?, t);
            }
            if let Some(v) = p.association.as_ref().and_then(|a| a.public_ip.as_deref()) {
                let f = || {
                    format!(
                        "{at}.NetworkInterfaces[{n}].PrivateIpAddresses[{j}].Association.PublicIp"
                    )
                };
                add(ip(v, f)?, t);
            }
        }
        for (j, a) in eni.ipv6_addresses.iter().flatten().enumerate() {
            if let Some(v) = a.ipv6_address.as_deref() {
                let f = || format!("{at}.NetworkInterfaces[{n}].Ipv6Addresses[{j}].Ipv6Address");
                add(ip(v, f)?, t);
            }
        }
    }
    for (field, v) in [
        ("PrivateIpAddress", &inst.private_ip_address),
        ("PublicIpAddress", &inst.public_ip_address),
        ("Ipv6Address", &inst.ipv6_address),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            add(ip(v, || format!("{at}.{field}"))?, launch);
        }
    }
    if held.is_empty() {
        snap.no_address += 1;
        return Ok(());
    }
    for (ip, t) in held {
        snap.observations.push(Observation {
            scope: scope.as_str().into(),
            id: id.into(),
            ip,
            start_ns: t,
            end_ns: None,
            rank: Rank::Instance,
            values: values.clone(),
        });
    }
    Ok(())
}
