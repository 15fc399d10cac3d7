//! The validation report as one self-contained HTML page (`halo validate --html FILE`): the
//! kind of record an admin files with a change request. No scripts and no external resources;
//! outcomes are words (and marks), so the page reads the same printed in black and white.

use halo_agent::validate_api::ValidationView;
use halo_core::validation::{Category, Check, Outcome};

use halo_core::validation::outcome_word;

pub fn validation_report(report: &ValidationView) -> String {
    let subject =
        if report.cluster.is_empty() { "nodes before clustering".to_string() } else { report.cluster.clone() };
    let when = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(report.generated_at_ms),
    );
    let mut page = String::new();
    page.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>halo validation report: {subject}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Validation report: {subject}</h1>\n\
         <p class=\"verdict {result}\">Result: <strong>{result_upper}</strong>, {when}, halo {version}</p>\n",
        subject = escape(&subject),
        result = outcome_word(report.result),
        result_upper = mark(report.result),
        version = escape(env!("CARGO_PKG_VERSION")),
    ));
    page.push_str(&summary(&report.checks));
    page.push_str(&nodes(report));
    for category in Category::ALL {
        let checks: Vec<&Check> = report.checks.iter().filter(|c| c.category == category).collect();
        if checks.is_empty() {
            continue;
        }
        page.push_str(&format!(
            "<section id=\"{id}\">\n<h2>{title}</h2>\n",
            id = category_id(category),
            title = category.title()
        ));
        for c in checks {
            page.push_str(&format!(
                "<div class=\"check {outcome}\">\n<h3><span class=\"outcome\">{mark}</span> {title} \
                 <code>{id}</code></h3>\n<p>{explanation}</p>\n",
                outcome = outcome_word(c.outcome),
                mark = mark(c.outcome),
                title = escape(&c.title),
                id = escape(&c.id),
                explanation = escape(&c.explanation),
            ));
            if !c.fix.is_empty() {
                page.push_str(&format!("<p class=\"fix\"><strong>Fix:</strong> {}</p>\n", escape(&c.fix)));
            }
            page.push_str("</div>\n");
        }
        page.push_str("</section>\n");
    }
    page.push_str("</body>\n</html>\n");
    page
}

/// Outcomes per category, a row each.
fn summary(checks: &[Check]) -> String {
    let outcomes = [Outcome::Fail, Outcome::Warning, Outcome::Pass, Outcome::Skipped];
    let mut table = String::from(
        "<table class=\"summary\">\n<caption>Summary</caption>\n<thead><tr><th scope=\"col\">Category</th>",
    );
    for o in outcomes {
        table.push_str(&format!("<th scope=\"col\">{}</th>", mark(o)));
    }
    table.push_str("</tr></thead>\n<tbody>\n");
    for category in Category::ALL {
        let of = |o: Outcome| checks.iter().filter(|c| c.category == category && c.outcome == o).count();
        table.push_str(&format!(
            "<tr><th scope=\"row\"><a href=\"#{}\">{}</a></th>",
            category_id(category),
            category.title()
        ));
        for o in outcomes {
            table.push_str(&format!("<td>{}</td>", of(o)));
        }
        table.push_str("</tr>\n");
    }
    table.push_str("</tbody>\n</table>\n");
    table
}

/// One row per node: what it runs and has.
fn nodes(report: &ValidationView) -> String {
    if report.survey.nodes.is_empty() {
        return String::new();
    }
    let mut table = String::from(
        "<table class=\"nodes\">\n<caption>Nodes</caption>\n<thead><tr><th scope=\"col\">Node</th>\
         <th scope=\"col\">halo</th><th scope=\"col\">System</th><th scope=\"col\">QEMU</th><th scope=\"col\">KVM</th>\
         <th scope=\"col\">Memory free</th><th scope=\"col\">Disk free</th><th scope=\"col\">Networks</th></tr></thead>\n<tbody>\n",
    );
    for n in &report.survey.nodes {
        let name = format!("{}{}", n.name, if n.witness { " (witness)" } else { "" });
        match &n.facts {
            Some(f) => table.push_str(&format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} of {} MB</td>\
                 <td>{} MB</td><td>{}</td></tr>\n",
                escape(&name),
                escape(&f.version),
                escape(&format!("{}, Linux {}, {}", f.os, f.kernel, f.arch)),
                escape(f.qemu.as_deref().unwrap_or("not installed")),
                if f.kvm { "yes" } else { "no" },
                f.memory_available_mb,
                f.memory_total_mb,
                f.disk_free_mb,
                escape(&n.networks.join(", ")),
            )),
            None => table.push_str(&format!(
                "<tr><th scope=\"row\">{}</th><td colspan=\"7\">no answer: {}</td></tr>\n",
                escape(&name),
                escape(n.error.as_deref().unwrap_or("unknown"))
            )),
        }
    }
    table.push_str("</tbody>\n</table>\n");
    table
}

fn category_id(category: Category) -> String {
    category.title().to_lowercase()
}

/// The outcome as a mark and a word, so that it reads without colour.
fn mark(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Fail => "✗ FAIL",
        Outcome::Warning => "! WARNING",
        Outcome::Pass => "✓ PASS",
        Outcome::Skipped => "– SKIPPED",
    }
}

/// Text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem; color: #111; line-height: 1.4; }
h1 { font-size: 1.5rem; } h2 { border-bottom: 1px solid #999; padding-bottom: .2rem; margin-top: 2rem; }
h3 { font-size: 1rem; margin: 0 0 .3rem; } code { font-size: .85em; color: #444; }
table { border-collapse: collapse; margin: 1rem 0; width: 100%; } caption { text-align: left; font-weight: bold; padding: .3rem 0; }
th, td { border: 1px solid #999; padding: .25rem .5rem; text-align: left; vertical-align: top; }
.check { border-left: .35rem solid #999; padding: .4rem .8rem; margin: .6rem 0; background: #f7f7f7; }
.check.fail { border-left-color: #b00020; border-left-style: double; } .check.warning { border-left-color: #a15c00; border-left-style: dashed; }
.check.pass { border-left-color: #1b7f3b; } .check p { margin: .2rem 0; } .fix { font-style: italic; }
.verdict { font-size: 1.1rem; padding: .5rem; border: 2px solid #111; display: inline-block; }
@media print { .check { break-inside: avoid; } }
";

#[cfg(test)]
mod tests {
    use super::*;
    use halo_core::validation::Survey;

    fn report() -> ValidationView {
        let check = |id: &str, category, outcome, explanation: &str, fix: &str| Check {
            id: id.into(),
            category,
            title: format!("title of {id}"),
            outcome,
            explanation: explanation.into(),
            fix: fix.into(),
        };
        ValidationView::new(
            "prod<1>".into(),
            vec![
                check("quorum.votes", Category::Quorum, Outcome::Pass, "3 votes", ""),
                check(
                    "roles.placeable",
                    Category::Roles,
                    Outcome::Fail,
                    "No node can host: <script>alert(1)</script>",
                    "Widen & retry",
                ),
            ],
            Survey::default(),
        )
    }

    #[test]
    fn the_page_escapes_what_it_shows_and_counts_per_category() {
        let page = validation_report(&report());
        assert!(page.contains("Validation report: prod&lt;1&gt;"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !page.contains("<script>"));
        assert!(page.contains("Widen &amp; retry"));
        assert!(page.contains("Result: <strong>✗ FAIL</strong>"));
        assert!(page.contains(
            "<tr><th scope=\"row\"><a href=\"#roles\">Roles</a></th><td>1</td><td>0</td><td>0</td><td>0</td></tr>"
        ));
        assert!(page.contains("<section id=\"quorum\">") && !page.contains("<section id=\"storage\">"));
    }
}
