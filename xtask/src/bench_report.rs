//! The bench's report: `report.json` (keys documented in docs/bench.md), `report.md`, and one
//! SVG plot of loss against offered rate per template, every receiver on it.

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde_json::{json, Value};
use std::path::Path;

/// The template the headline keys are measured on (64-byte frames are the hardest case).
pub const HEADLINE_TEMPLATE: &str = "udp64";

/// One step of a sweep: what was offered, what arrived, where the rest went.
#[derive(Clone, Debug, Default)]
pub struct Step {
    pub no: usize,
    pub template: String,
    pub receiver: String,
    /// `max` (unpaced), `curve`, `sweep`, `search` or `names_check`.
    pub phase: String,
    /// Asked-for rate; 0: as fast as possible.
    pub target_pps: f64,
    /// Offered rate, measured: frames the generator built over the time it took.
    pub achieved_pps: f64,
    pub duration_s: f64,
    pub sent: u64,
    pub received: u64,
    /// Dropped where the receiver counts it (socket/ring drops, frames XDP saw that never
    /// reached the socket).
    pub receiver_dropped: u64,
    /// Dropped by the veth itself (peer ring full: `xdp_xmit_errors`).
    pub link_dropped: u64,
    /// sent − received − receiver_dropped − link_dropped: must be 0.
    pub unaccounted: i64,
    pub loss_pct: f64,
    /// CPU share of the receiver's busiest thread during the traffic (1.0 = one core).
    pub worker_cpu: f64,
    /// Softirq share of each CPU during the traffic.
    pub softirq_cpu: Vec<f64>,
    pub batches: u64,
    pub batch_p50_us: f64,
    pub batch_p99_us: f64,
    pub batch_p999_us: f64,
    pub batch_max_us: f64,
    /// Time the receiver spent in its batches per frame read (ns): its cost per frame, which
    /// CPU time does not show for a receiver that spins between batches. NaN when unknown.
    pub ns_per_frame: f64,
    pub gen_late_batches: u64,
    /// nameflow ran with names on.
    pub names: bool,
    /// Connection records nameflow logged.
    pub records: u64,
    /// nameflow's stats.log `zero_copy` (sockets in zero-copy mode), for the machine line.
    pub zero_copy: Option<f64>,
}

impl Step {
    /// Frames that did not reach the receiver, for whatever reason.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }

    pub fn finish(&mut self) {
        self.unaccounted = self.sent as i64
            - self.received as i64
            - self.receiver_dropped as i64
            - self.link_dropped as i64;
        self.loss_pct = if self.sent == 0 {
            0.0
        } else {
            self.lost() as f64 * 100.0 / self.sent as f64
        };
    }

    pub fn set_latency(&mut self, j: &Value) {
        let n = |k: &str| j.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        self.batches = n("batches").max(0.0) as u64;
        self.batch_p50_us = n("batch_p50_ns") / 1e3;
        self.batch_p99_us = n("batch_p99_ns") / 1e3;
        self.batch_p999_us = n("batch_p999_ns") / 1e3;
        self.batch_max_us = n("batch_max_ns") / 1e3;
        self.ns_per_frame = n("batch_busy_ns") / n("packets");
    }

    pub fn line(&self) -> String {
        format!(
            "target {:>9} pps offered {:>9.0} pps: sent {} received {} dropped {}+{} unaccounted {} loss {:.3}% cpu {:.2} p99 {:.1}us",
            if self.target_pps == 0.0 {
                "max".to_string()
            } else {
                format!("{:.0}", self.target_pps)
            },
            self.achieved_pps,
            self.sent,
            self.received,
            self.receiver_dropped,
            self.link_dropped,
            self.unaccounted,
            self.loss_pct,
            self.worker_cpu,
            self.batch_p99_us
        )
    }

    fn json(&self) -> Value {
        let f = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
        json!({
            "no": self.no,
            "template": self.template,
            "receiver": self.receiver,
            "phase": self.phase,
            "target_pps": self.target_pps,
            "offered_pps": self.achieved_pps,
            "duration_s": self.duration_s,
            "sent": self.sent,
            "received": self.received,
            "receiver_dropped": self.receiver_dropped,
            "link_dropped": self.link_dropped,
            "unaccounted": self.unaccounted,
            "loss_pct": self.loss_pct,
            "worker_cpu": self.worker_cpu,
            "softirq_cpu": self.softirq_cpu,
            "batches": self.batches,
            "batch_p50_us": f(self.batch_p50_us),
            "batch_p99_us": f(self.batch_p99_us),
            "batch_p999_us": f(self.batch_p999_us),
            "batch_max_us": f(self.batch_max_us),
            "ns_per_frame": f(self.ns_per_frame),
            "gen_late_batches": self.gen_late_batches,
            "names": self.names,
            "records": self.records,
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub driver: String,
    pub xdp_mode: String,
    pub queues: u32,
    pub gen_cpu: usize,
    pub rx_cpu: usize,
    pub load_start: String,
    pub load_end: String,
}

pub struct Report {
    pub quick: bool,
    pub templates: Vec<String>,
    pub receivers: Vec<String>,
    pub config: Value,
    pub machine: Machine,
    pub notes: Vec<String>,
    /// nameflow has `--no-names`, so names on and off are two different runs.
    pub names_measured: bool,
    pub steps: Vec<Step>,
    pub elapsed_s: f64,
    /// Derived at the end.
    pub summary: Value,
}

/// The highest offered rate (Mpps) of a zero-loss step of `receiver` on `template`.
pub fn zero_loss_mpps(steps: &[Step], template: &str, receiver: &str) -> Option<f64> {
    best_zero_loss(steps, template, receiver).map(|s| s.achieved_pps / 1e6)
}

fn best_zero_loss<'a>(steps: &'a [Step], template: &str, receiver: &str) -> Option<&'a Step> {
    steps
        .iter()
        .filter(|s| s.template == template && s.receiver == receiver && s.phase != "names_check")
        .filter(|s| s.lost() == 0 && s.sent > 0)
        .max_by(|a, b| a.achieved_pps.total_cmp(&b.achieved_pps))
}

/// The receiver's cost per frame (ns) in its unpaced step, where every batch is full.
fn ns_per_frame_at_max(steps: &[Step], template: &str, receiver: &str) -> Option<f64> {
    steps
        .iter()
        .find(|s| s.template == template && s.receiver == receiver && s.phase == "max")
        .map(|s| s.ns_per_frame)
        .filter(|v| v.is_finite() && *v > 0.0)
}

/// `1 − off/on` of nameflow's cost per frame with names on and off, on `template`.
fn names_cost_per_frame(steps: &[Step], template: &str) -> Option<f64> {
    let on = ns_per_frame_at_max(steps, template, "nameflow")?;
    let off = ns_per_frame_at_max(steps, template, "nameflow_no_names")?;
    Some(1.0 - off / on)
}

/// The rate to ask for to repeat the best zero-loss step of `receiver` on `template`.
pub fn zero_loss_target(steps: &[Step], template: &str, receiver: &str) -> Option<u64> {
    best_zero_loss(steps, template, receiver).map(|s| s.achieved_pps as u64)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

impl Report {
    pub fn new(quick: bool, templates: &[String], receivers: &[String], config: &Value) -> Report {
        Report {
            quick,
            templates: templates.to_vec(),
            receivers: receivers.to_vec(),
            config: config.clone(),
            machine: Machine::default(),
            notes: Vec::new(),
            names_measured: true,
            steps: Vec::new(),
            elapsed_s: 0.0,
            summary: Value::Null,
        }
    }

    /// Derives the headline keys and the targets from the steps.
    pub fn finish(&mut self) {
        let t = HEADLINE_TEMPLATE;
        let z = |r: &str| zero_loss_mpps(&self.steps, t, r);
        let ceiling = z("xdp_drop");
        let af = z("af_packet");
        let xsk = z("af_xdp");
        let nf = z("nameflow");
        let nf_off = z("nameflow_no_names");
        let names_cost = if self.names_measured {
            ratio(nf, nf_off).map(|r| 1.0 - r)
        } else {
            None
        };
        let latency = best_zero_loss(&self.steps, t, "nameflow")
            .map(|s| s.batch_p99_us)
            .filter(|v| v.is_finite());
        let dns_check = self
            .steps
            .iter()
            .find(|s| s.phase == "names_check")
            .map(|s| s.loss_pct);
        let vs_ceiling = ratio(nf, ceiling);
        let vs_af = ratio(nf, af);
        let vs_xsk = ratio(nf, xsk);
        let targets = vec![
            target(
                "nameflow_vs_ceiling",
                ">= 0.6",
                vs_ceiling,
                vs_ceiling.map(|v| v >= 0.6),
            ),
            target(
                "nameflow_vs_af_packet",
                ">= 3",
                vs_af,
                vs_af.map(|v| v >= 3.0),
            ),
            target(
                "names_cost",
                "<= 0.05",
                names_cost,
                names_cost.map(|v| v <= 0.05),
            ),
            target(
                "dns_loss_caused_by_names_pct",
                "= 0",
                dns_check,
                dns_check.map(|v| v == 0.0),
            ),
        ];
        let mut per_template = serde_json::Map::new();
        for tpl in &self.templates {
            let mut m = serde_json::Map::new();
            for r in &self.receivers {
                let max = self
                    .steps
                    .iter()
                    .filter(|s| &s.template == tpl && &s.receiver == r)
                    .map(|s| s.achieved_pps)
                    .fold(0.0, f64::max);
                m.insert(
                    r.clone(),
                    json!({
                        "zero_loss_mpps": zero_loss_mpps(&self.steps, tpl, r),
                        "max_offered_mpps": max / 1e6,
                        "latency_p99_us_at_zero_loss": best_zero_loss(&self.steps, tpl, r)
                            .map(|s| s.batch_p99_us).filter(|v| v.is_finite()),
                        "ns_per_frame_at_max": ns_per_frame_at_max(&self.steps, tpl, r),
                    }),
                );
            }
            m.insert(
                "names_cost_per_frame".into(),
                json!(names_cost_per_frame(&self.steps, tpl)),
            );
            per_template.insert(tpl.clone(), Value::Object(m));
        }
        self.summary = json!({
            "headline_template": t,
            "ceiling_xdp_drop_mpps": ceiling,
            "af_packet_zero_loss_mpps": af,
            "af_xdp_zero_loss_mpps": xsk,
            "nameflow_zero_loss_mpps": nf,
            "nameflow_no_names_zero_loss_mpps": nf_off,
            "nameflow_vs_ceiling": vs_ceiling,
            "nameflow_vs_af_packet": vs_af,
            "nameflow_vs_af_xdp": vs_xsk,
            "names_cost": names_cost,
            "names_cost_per_frame": names_cost_per_frame(&self.steps, t),
            "latency_p99_us": latency,
            "dns_loss_caused_by_names_pct": dns_check,
            "targets": targets,
            "per_template": per_template,
            "unaccounted_total": self.steps.iter().map(|s| s.unaccounted.abs()).sum::<i64>(),
        });
    }

    pub fn json(&self) -> Value {
        let m = &self.machine;
        let mut v = self.summary.clone();
        let o = v.as_object_mut().expect("summary is an object");
        o.insert("version".into(), json!(1));
        o.insert("quick".into(), json!(self.quick));
        o.insert("elapsed_s".into(), json!(self.elapsed_s));
        o.insert("config".into(), self.config.clone());
        o.insert("notes".into(), json!(self.notes));
        o.insert(
            "machine".into(),
            json!({
                "cores": m.cores,
                "cpu_model": m.cpu_model,
                "kernel": m.kernel,
                "driver": m.driver,
                "xdp_mode": m.xdp_mode,
                "queues": m.queues,
                "gen_cpu": m.gen_cpu,
                "rx_cpu": m.rx_cpu,
                "loadavg_start": m.load_start,
                "loadavg_end": m.load_end,
            }),
        );
        o.insert(
            "steps".into(),
            Value::Array(self.steps.iter().map(Step::json).collect()),
        );
        v
    }

    /// A few lines for the terminal.
    pub fn summary(&self) -> String {
        let s = &self.summary;
        let g = |k: &str| match s.get(k).and_then(Value::as_f64) {
            Some(v) => format!("{v:.3}"),
            None => "n/a".into(),
        };
        let mut out = format!(
            "ceiling_xdp_drop_mpps {} | af_packet_zero_loss_mpps {} | af_xdp_zero_loss_mpps {} | nameflow_zero_loss_mpps {} | nameflow_no_names_zero_loss_mpps {}\n\
             nameflow_vs_ceiling {} | nameflow_vs_af_packet {} | nameflow_vs_af_xdp {} | names_cost {} (per frame {}) | latency_p99_us {}",
            g("ceiling_xdp_drop_mpps"),
            g("af_packet_zero_loss_mpps"),
            g("af_xdp_zero_loss_mpps"),
            g("nameflow_zero_loss_mpps"),
            g("nameflow_no_names_zero_loss_mpps"),
            g("nameflow_vs_ceiling"),
            g("nameflow_vs_af_packet"),
            g("nameflow_vs_af_xdp"),
            g("names_cost"),
            g("names_cost_per_frame"),
            g("latency_p99_us"),
        );
        if let Some(ts) = s.get("targets").and_then(Value::as_array) {
            for t in ts {
                out.push_str(&format!(
                    "\ntarget {} {}: {}",
                    t["key"].as_str().unwrap_or(""),
                    t["target"].as_str().unwrap_or(""),
                    match t["met"].as_bool() {
                        Some(true) => "met",
                        Some(false) => "MISSED",
                        None => "not measured",
                    }
                ));
            }
        }
        out
    }

    fn markdown(&self) -> String {
        let m = &self.machine;
        let s = &self.summary;
        let f = |v: &Value| match v.as_f64() {
            Some(x) => format!("{x:.3}"),
            None => "n/a".into(),
        };
        let mut md = String::new();
        md.push_str("# nameflow bench report\n\n");
        md.push_str(&format!(
            "{} run, {:.0} s. Machine: {} cores ({}), kernel {}, driver {}, {}, {} queue; generator on CPU {}, receiver on CPU {}. Load average at start `{}`, at end `{}`: other work shares these cores, so compare the ratios of this run, not absolute rates across runs.\n\n",
            if self.quick { "Quick" } else { "Full" },
            self.elapsed_s,
            m.cores,
            m.cpu_model,
            m.kernel,
            m.driver,
            m.xdp_mode,
            m.queues,
            m.gen_cpu,
            m.rx_cpu,
            m.load_start,
            m.load_end
        ));
        for n in &self.notes {
            md.push_str(&format!("Note: {n}.\n\n"));
        }
        md.push_str(&format!(
            "## Headline ({HEADLINE_TEMPLATE})\n\n| key | value |\n|---|---|\n"
        ));
        for k in [
            "ceiling_xdp_drop_mpps",
            "af_packet_zero_loss_mpps",
            "af_xdp_zero_loss_mpps",
            "nameflow_zero_loss_mpps",
            "nameflow_no_names_zero_loss_mpps",
            "nameflow_vs_ceiling",
            "nameflow_vs_af_packet",
            "nameflow_vs_af_xdp",
            "names_cost",
            "names_cost_per_frame",
            "latency_p99_us",
            "dns_loss_caused_by_names_pct",
        ] {
            md.push_str(&format!("| `{k}` | {} |\n", f(&s[k])));
        }
        md.push_str("\n## Targets\n\n| key | target | value | met |\n|---|---|---|---|\n");
        if let Some(ts) = s["targets"].as_array() {
            for t in ts {
                md.push_str(&format!(
                    "| `{}` | {} | {} | {} |\n",
                    t["key"].as_str().unwrap_or(""),
                    t["target"].as_str().unwrap_or(""),
                    f(&t["value"]),
                    match t["met"].as_bool() {
                        Some(true) => "yes",
                        Some(false) => "**no**",
                        None => "not measured",
                    }
                ));
            }
        }
        md.push_str("\n## Zero-loss rate per template (Mpps)\n\n| template |");
        for r in &self.receivers {
            md.push_str(&format!(" {r} |"));
        }
        md.push_str("\n|---|");
        for _ in &self.receivers {
            md.push_str("---|");
        }
        md.push('\n');
        for t in &self.templates {
            md.push_str(&format!("| {t} |"));
            for r in &self.receivers {
                md.push_str(&format!(
                    " {} |",
                    f(&s["per_template"][t][r]["zero_loss_mpps"])
                ));
            }
            md.push('\n');
        }
        md.push('\n');
        for t in &self.templates {
            md.push_str(&format!("![loss vs offered rate, {t}](loss-{t}.svg)\n\n"));
        }
        md.push_str("\n## Steps\n\n| # | template | receiver | phase | offered pps | sent | received | dropped (rx+link) | unaccounted | loss % | worker CPU | ns/frame | batch p50/p99/p99.9/max µs |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for st in &self.steps {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {} | {} | {}+{} | {} | {:.3} | {:.2} | {} | {:.1}/{:.1}/{:.1}/{:.1} |\n",
                st.no,
                st.template,
                st.receiver,
                st.phase,
                st.achieved_pps,
                st.sent,
                st.received,
                st.receiver_dropped,
                st.link_dropped,
                st.unaccounted,
                st.loss_pct,
                st.worker_cpu,
                if st.ns_per_frame.is_finite() {
                    format!("{:.0}", st.ns_per_frame)
                } else {
                    "-".into()
                },
                st.batch_p50_us,
                st.batch_p99_us,
                st.batch_p999_us,
                st.batch_max_us
            ));
        }
        md
    }
}

fn target(key: &str, want: &str, value: Option<f64>, met: Option<bool>) -> Value {
    json!({ "key": key, "target": want, "value": value, "met": met })
}

/// Writes report.json, report.md and one loss plot per template into `dir`.
pub fn write(r: &Report, dir: &Path) -> Result<()> {
    let json_path = dir.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&r.json())?)
        .with_context(|| format!("failed to write {}", json_path.display()))?;
    let md = dir.join("report.md");
    std::fs::write(&md, r.markdown())
        .with_context(|| format!("failed to write {}", md.display()))?;
    for t in &r.templates {
        plot(r, t, &dir.join(format!("loss-{t}.svg")))
            .with_context(|| format!("failed to plot {t}"))?;
    }
    Ok(())
}

/// Loss % against offered Mpps, one series per receiver.
fn plot(r: &Report, template: &str, path: &Path) -> Result<()> {
    let steps: Vec<&Step> = r
        .steps
        .iter()
        .filter(|s| s.template == template && s.phase != "names_check")
        .collect();
    let max_x = steps
        .iter()
        .map(|s| s.achieved_pps / 1e6)
        .fold(0.1, f64::max)
        * 1.05;
    let max_y = steps.iter().map(|s| s.loss_pct).fold(1.0, f64::max) * 1.05;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{template}: loss vs offered rate (same run, same veth)"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("offered rate (Mpps, measured)")
        .y_desc("loss (%)")
        .draw()?;
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (i, recv) in r.receivers.iter().enumerate() {
        let mut pts: Vec<(f64, f64)> = steps
            .iter()
            .filter(|s| &s.receiver == recv)
            .map(|s| (s.achieved_pps / 1e6, s.loss_pct))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(recv.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(recv: &str, pps: f64, sent: u64, received: u64) -> Step {
        let mut s = Step {
            template: HEADLINE_TEMPLATE.into(),
            receiver: recv.into(),
            achieved_pps: pps,
            sent,
            received,
            receiver_dropped: sent - received,
            ..Step::default()
        };
        s.finish();
        s
    }

    #[test]
    fn headline_ratios_come_from_the_best_zero_loss_steps() {
        let mut r = Report::new(
            false,
            &[HEADLINE_TEMPLATE.into()],
            &RECV.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &json!({}),
        );
        r.steps = vec![
            st("xdp_drop", 5e6, 100, 100),
            st("af_packet", 1e6, 100, 100),
            st("af_packet", 1.5e6, 100, 90),
            st("nameflow", 2e6, 100, 100),
            st("nameflow", 3e6, 100, 99),
            st("nameflow_no_names", 2.5e6, 100, 100),
        ];
        r.finish();
        let s = &r.summary;
        assert_eq!(s["ceiling_xdp_drop_mpps"], json!(5.0));
        assert_eq!(s["nameflow_zero_loss_mpps"], json!(2.0));
        assert!((s["nameflow_vs_ceiling"].as_f64().unwrap() - 0.4).abs() < 1e-9);
        assert!((s["nameflow_vs_af_packet"].as_f64().unwrap() - 2.0).abs() < 1e-9);
        assert!((s["names_cost"].as_f64().unwrap() - 0.2).abs() < 1e-9);
        assert_eq!(s["targets"][0]["met"], json!(false));
        assert_eq!(s["targets"][3]["met"], Value::Null);
        assert_eq!(s["unaccounted_total"], json!(0));
        let md = r.markdown();
        assert!(md.contains("| `nameflow_vs_ceiling` | 0.400 |"), "{md}");
    }

    const RECV: &[&str] = &["xdp_drop", "af_packet", "nameflow", "nameflow_no_names"];

    #[test]
    fn unaccounted_frames_are_reported() {
        let mut s = st("nameflow", 1e6, 100, 90);
        s.receiver_dropped = 5;
        s.link_dropped = 3;
        s.finish();
        assert_eq!(s.unaccounted, 2);
        assert_eq!(s.lost(), 10);
        assert!((s.loss_pct - 10.0).abs() < 1e-9);
    }

    #[test]
    fn plots_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Report::new(
            true,
            &[HEADLINE_TEMPLATE.into()],
            &["nameflow".to_string()],
            &json!({}),
        );
        r.steps = vec![st("nameflow", 1e6, 100, 100), st("nameflow", 2e6, 100, 50)];
        r.finish();
        write(&r, dir.path()).unwrap();
        let svg = std::fs::read_to_string(dir.path().join(format!("loss-{HEADLINE_TEMPLATE}.svg")))
            .unwrap();
        assert!(svg.contains("<svg") && svg.contains("nameflow"));
        let j: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
                .unwrap();
        assert_eq!(j["steps"].as_array().unwrap().len(), 2);
    }
}
