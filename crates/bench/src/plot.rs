//! The failover-time distributions of both systems as one SVG: a row of dots per system and
//! scenario on a shared logarithmic time axis (a restart takes milliseconds, a node crash
//! seconds). halo's dots are filled circles, Pacemaker's open squares, so the plot reads without
//! colour; each row carries its median.

use std::fmt::Write;

use crate::record::number;
use crate::report::{Measured, PAIRINGS, Report};

const WIDTH: f64 = 960.0;
const LABEL: f64 = 330.0;
const RIGHT: f64 = 90.0;
const ROW: f64 = 24.0;
const HEADING: f64 = 22.0;
const TOP: f64 = 50.0;
const AXIS: f64 = 50.0;

/// One row of dots: its label, the samples, whether they are halo's.
type Row<'a> = (String, &'a Measured, bool);

/// The SVG, or None when no plotted scenario has samples.
pub fn failover_svg(report: &Report) -> Option<String> {
    let groups: Vec<(&str, Vec<Row>)> = PAIRINGS
        .iter()
        .filter(|p| p.plotted)
        .filter_map(|p| {
            let c = report.comparisons.iter().find(|c| c.id == p.id)?;
            let mut rows = Vec::new();
            if let Some(h) = &c.halo {
                rows.push((format!("halo · {}", h.profile), h, true));
            }
            if let Some(m) = &c.pacemaker {
                rows.push((format!("Pacemaker · {}", m.profile), m, false));
            }
            (!rows.is_empty()).then_some((c.scenario.as_str(), rows))
        })
        .collect();
    let all: Vec<f64> =
        groups.iter().flat_map(|(_, rows)| rows.iter().flat_map(|(_, m, _)| m.samples.iter().copied())).collect();
    let lo = all.iter().copied().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(0.0, f64::max);
    if !lo.is_finite() || hi <= 0.0 {
        return None;
    }
    let (d0, d1) = (lo.log10().floor() as i32, hi.log10().ceil().max(lo.log10().floor() + 1.0) as i32);
    let x = |v: f64| {
        let v = v.max(10f64.powi(d0));
        LABEL + (v.log10() - d0 as f64) / (d1 - d0) as f64 * (WIDTH - LABEL - RIGHT)
    };
    let rows: usize = groups.iter().map(|(_, r)| r.len()).sum();
    let height = TOP + groups.len() as f64 * HEADING + rows as f64 * ROW + AXIS;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape("Failover times, halo and Pacemaker + Corosync, same machine, same run")
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="40" fill="#444">{}</text>"##,
        escape(&format!(
            "seconds, logarithmic; ● halo, □ Pacemaker; | median; {}, {} cores, {}",
            report.date.get(..10).unwrap_or(&report.date),
            report.machine.cores,
            report.machine.cpu
        ))
    );
    let bottom = height - AXIS;
    for d in d0..=d1 {
        let v = 10f64.powi(d);
        let gx = x(v);
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{bottom}" stroke="#ccc" stroke-dasharray="3,3"/>"##
        );
        let _ = writeln!(s, r#"<text x="{gx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, bottom + 16.0, tick(v));
    }
    let _ = writeln!(s, r#"<line x1="{LABEL}" y1="{bottom}" x2="{:.1}" y2="{bottom}" stroke="black"/>"#, WIDTH - RIGHT);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time (s)</text>"#,
        (LABEL + WIDTH - RIGHT) / 2.0,
        bottom + 34.0
    );
    let mut y = TOP;
    for (scenario, rows) in &groups {
        y += HEADING;
        let heading = escape(&scenario.replace('`', ""));
        let _ = writeln!(s, r#"<text x="10" y="{:.1}" font-weight="bold">{heading}</text>"#, y - 6.0);
        for (label, m, is_halo) in rows {
            let mid = y + ROW / 2.0;
            let _ = writeln!(s, r#"<text x="20" y="{:.1}">{}</text>"#, mid + 4.0, escape(label));
            for v in &m.samples {
                let px = x(*v);
                if *is_halo {
                    let _ = writeln!(
                        s,
                        r##"<circle cx="{px:.1}" cy="{mid:.1}" r="4" fill="#1f5fa8" fill-opacity="0.6"/>"##
                    );
                } else {
                    let _ = writeln!(
                        s,
                        r##"<rect x="{:.1}" y="{:.1}" width="8" height="8" fill="none" stroke="#b5451b" stroke-width="1.5"/>"##,
                        px - 4.0,
                        mid - 4.0
                    );
                }
            }
            let mx = x(m.stats.median);
            let _ = writeln!(
                s,
                r#"<line x1="{mx:.1}" y1="{:.1}" x2="{mx:.1}" y2="{:.1}" stroke="black" stroke-width="2"/>"#,
                mid - 9.0,
                mid + 9.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{} s</text>"#,
                WIDTH - RIGHT + 8.0,
                mid + 4.0,
                number(m.stats.median)
            );
            y += ROW;
        }
    }
    s.push_str("</svg>\n");
    Some(s)
}

fn tick(v: f64) -> String {
    if v < 1.0 { format!("{}", (v * 1e6).round() / 1e6) } else { format!("{v:.0}") }
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

    #[test]
    fn every_sample_is_a_mark_and_the_svg_parses() {
        let r = sample_report();
        let svg = failover_svg(&r).expect("svg");
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        let count = |tag: &str| doc.descendants().filter(|n| n.has_tag_name(tag)).count();
        // halo: 3 + 3 + 2 samples, circles; Pacemaker: 3 + 3 + 2, squares (plus the background).
        assert_eq!(count("circle"), 8);
        assert_eq!(count("rect"), 1 + 8);
        let text: String = doc.descendants().filter_map(|n| n.text()).collect::<Vec<_>>().join("|");
        assert!(text.contains("halo · fast") && text.contains("Pacemaker · tuned"), "{text}");
        // The axis spans the restarts' milliseconds up to the crashes' seconds.
        assert!(text.contains("|0.001|") && text.contains("|10|"), "{text}");
    }

    #[test]
    fn nothing_to_plot_is_no_plot() {
        let mut r = sample_report();
        r.comparisons.clear();
        assert!(failover_svg(&r).is_none());
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
