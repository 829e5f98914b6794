//! `cargo xtask bench --soak MINUTES`: the report of a soak run (`soak.json`, `soak.md`,
//! `soak-rss.svg`) and the pure logic it rests on. The run itself (namespaces, veth,
//! generator, receiver, the account) is `bench.rs`'s.

use crate::bench_report::Step;
use anyhow::{Context, Result};
use plotters::prelude::*;
use serde_json::{json, Value};
use std::path::Path;

/// Templates whose every frame is a UDP flow of its own (one frame per flow per pass), so the
/// connections offered follow from the frames sent.
pub const SOAK_TEMPLATES: &[&str] = &["imix", "udp64"];
/// The default: IMIX (7:4:1 of 64, 594 and 1518-byte frames) over 98,304 UDP flows.
pub const SOAK_TEMPLATE: &str = "imix";

/// One sample, taken every second during the soak.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the generator started.
    pub t_s: f64,
    /// nameflow's VmRSS (KiB).
    pub rss_kib: u64,
    /// stats.log's last `all` row at that time (cumulative).
    pub frames: u64,
    pub dropped: u64,
    pub records: u64,
    pub flows_active: u64,
}

/// VmRSS (KiB) from the text of `/proc/PID/status`.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Distinct connections in the first `sent` frames of a template set whose every frame is a
/// flow of its own: the generator sends `frames_per_round` frames per pass and moves the
/// client addresses each pass, for `rounds` passes, then starts over with the same flows.
pub fn expected_connections(sent: u64, frames_per_round: u64, rounds: u64) -> u64 {
    sent.min(frames_per_round.saturating_mul(rounds.max(1)))
}

/// Connection records in a conn.log in Zeek JSON or TSV: every line that is not a `#` header.
pub fn count_records(text: &str) -> u64 {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count() as u64
}

#[derive(Clone, Debug, Default)]
pub struct SoakReport {
    pub template: String,
    pub minutes: f64,
    pub rate_pps: u64,
    /// How the rate was chosen (`--rate`, or half of the zero-loss rate a short search found).
    pub rate_source: String,
    pub zero_loss_pps: Option<f64>,
    pub samples: Vec<Sample>,
    /// The whole soak as one step: sent = received + dropped, as the bench reconciles.
    pub step: Step,
    /// conn.log lines nameflow wrote.
    pub records_written: u64,
    /// Distinct connections in what the generator sent.
    pub records_expected: u64,
    pub machine: Value,
    pub elapsed_s: f64,
}

impl SoakReport {
    /// Highest RSS of the samples within `secs` of the start (`from_end`: of the end).
    pub fn peak_rss(&self, secs: f64, from_end: bool) -> Option<u64> {
        let end = self.samples.last()?.t_s;
        self.samples
            .iter()
            .filter(|s| {
                if from_end {
                    s.t_s >= end - secs
                } else {
                    s.t_s <= secs
                }
            })
            .map(|s| s.rss_kib)
            .max()
    }

    pub fn json(&self) -> Value {
        let s = &self.step;
        json!({
            "template": self.template,
            "minutes": self.minutes,
            "rate_pps": self.rate_pps,
            "rate_source": self.rate_source,
            "zero_loss_pps": self.zero_loss_pps,
            "offered_pps": s.achieved_pps,
            "duration_s": s.duration_s,
            "sent": s.sent,
            "received": s.received,
            "receiver_dropped": s.receiver_dropped,
            "link_dropped": s.link_dropped,
            "unaccounted": s.unaccounted,
            "loss_pct": s.loss_pct,
            "records_counter": s.records,
            "records_written": self.records_written,
            "records_expected": self.records_expected,
            "rss_peak_first_min_kib": self.peak_rss(60.0, false),
            "rss_peak_last_min_kib": self.peak_rss(60.0, true),
            "rss_peak_kib": self.samples.iter().map(|x| x.rss_kib).max(),
            "machine": self.machine,
            "elapsed_s": self.elapsed_s,
            "samples": self.samples.iter().map(|x| json!({
                "t_s": x.t_s, "rss_kib": x.rss_kib, "frames": x.frames, "dropped": x.dropped,
                "records": x.records, "flows_active": x.flows_active,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn markdown(&self) -> String {
        let s = &self.step;
        let mib =
            |v: Option<u64>| v.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        let mut md = format!(
            "# nameflow soak: {} for {} min\n\n\
             | | |\n|---|---|\n\
             | template | `{}` |\n\
             | rate | {} pps ({}) |\n\
             | offered (measured) | {:.0} pps over {:.1} s |\n\
             | sent | {} |\n| received | {} |\n\
             | dropped (receiver + link) | {} + {} |\n\
             | unaccounted | {} |\n| loss | {:.4} % |\n\
             | records written (conn.log lines) | {} |\n\
             | records expected (distinct connections sent) | {} |\n\
             | records (stats.log counter) | {} |\n\
             | peak RSS, first minute | {} |\n\
             | peak RSS, last minute | {} |\n\
             | peak RSS, whole run | {} |\n\n",
            self.template,
            self.minutes,
            self.template,
            self.rate_pps,
            self.rate_source,
            s.achieved_pps,
            s.duration_s,
            s.sent,
            s.received,
            s.receiver_dropped,
            s.link_dropped,
            s.unaccounted,
            s.loss_pct,
            self.records_written,
            self.records_expected,
            s.records,
            mib(self.peak_rss(60.0, false)),
            mib(self.peak_rss(60.0, true)),
            mib(self.samples.iter().map(|x| x.rss_kib).max()),
        );
        md.push_str("RSS over time: `soak-rss.svg`; one sample a second in `soak.json`.\n");
        md
    }
}

/// Writes soak.json, soak.md and soak-rss.svg into `dir`.
pub fn write(r: &SoakReport, dir: &Path) -> Result<()> {
    let j = dir.join("soak.json");
    std::fs::write(&j, serde_json::to_string_pretty(&r.json())?)
        .with_context(|| format!("failed to write {}", j.display()))?;
    let md = dir.join("soak.md");
    std::fs::write(&md, r.markdown())
        .with_context(|| format!("failed to write {}", md.display()))?;
    plot_rss(r, &dir.join("soak-rss.svg")).context("failed to plot RSS")?;
    Ok(())
}

/// nameflow's RSS (MiB) against time (minutes).
fn plot_rss(r: &SoakReport, path: &Path) -> Result<()> {
    let pts: Vec<(f64, f64)> = r
        .samples
        .iter()
        .map(|s| (s.t_s / 60.0, s.rss_kib as f64 / 1024.0))
        .collect();
    let max_x = pts.iter().map(|p| p.0).fold(0.1, f64::max) * 1.02;
    let max_y = pts.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "nameflow RSS during the soak ({} at {} pps)",
                r.template, r.rate_pps
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("time (min)")
        .y_desc("VmRSS (MiB)")
        .draw()?;
    chart
        .draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))?
        .label("nameflow VmRSS")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_proc_status() {
        let status =
            "Name:\tnameflow\nVmPeak:\t  900000 kB\nVmRSS:\t   81234 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(vm_rss_kib(status), Some(81234));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn expected_connections_stop_growing_after_every_round() {
        // imix: 1536 frames a pass, 64 passes.
        assert_eq!(expected_connections(1000, 1536, 64), 1000);
        assert_eq!(expected_connections(1536 * 10, 1536, 64), 15_360);
        assert_eq!(expected_connections(50_000_000, 1536, 64), 98_304);
        assert_eq!(expected_connections(5, 4, 0), 4);
    }

    #[test]
    fn records_skip_headers() {
        assert_eq!(count_records("#separator \\x09\n#fields\ta\n1\n2\n"), 2);
        assert_eq!(count_records("{\"uid\":1}\n{\"uid\":2}\n{\"uid\":3}\n"), 3);
    }

    #[test]
    fn report_peaks_and_files() {
        let mut r = SoakReport {
            template: SOAK_TEMPLATE.into(),
            minutes: 3.0,
            rate_pps: 1000,
            rate_source: "--rate".into(),
            ..SoakReport::default()
        };
        r.samples = (0..=180)
            .map(|t| Sample {
                t_s: t as f64,
                rss_kib: 1000 + t as u64,
                ..Sample::default()
            })
            .collect();
        r.step.sent = 100;
        r.step.received = 99;
        r.step.receiver_dropped = 1;
        r.step.finish();
        assert_eq!(r.peak_rss(60.0, false), Some(1060));
        assert_eq!(r.peak_rss(60.0, true), Some(1180));
        let dir = tempfile::tempdir().unwrap();
        write(&r, dir.path()).unwrap();
        let j: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("soak.json")).unwrap())
                .unwrap();
        assert_eq!(j["rss_peak_last_min_kib"], json!(1180));
        assert_eq!(j["unaccounted"], json!(0));
        assert_eq!(j["samples"].as_array().unwrap().len(), 181);
        let md = std::fs::read_to_string(dir.path().join("soak.md")).unwrap();
        assert!(md.contains("| loss | 1.0000 % |"), "{md}");
        let svg = std::fs::read_to_string(dir.path().join("soak-rss.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("VmRSS"));
    }
}
