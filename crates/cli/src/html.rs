//! The validation report as one self-contained HTML page (`halo validate --html FILE`): the
//! kind of record an admin files with a change request. No scripts and no external resources;
//! outcomes are words (and marks), so the page reads the same printed in black and white.
//! Written with maud, like the console, so every text shown is escaped by the engine.

use halo_api::validation::ValidationView;
use halo_core::validation::{Category, Check, Outcome, outcome_word};
use maud::{DOCTYPE, Markup, PreEscaped, html};

pub fn validation_report(report: &ValidationView) -> String {
    let subject =
        if report.cluster.is_empty() { "nodes before clustering".to_string() } else { report.cluster.clone() };
    let when = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(report.generated_at_ms),
    );
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "halo validation report: " (subject) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "Validation report: " (subject) }
                p class={ "verdict " (outcome_word(report.result)) } {
                    "Result: " strong { (mark(report.result)) } ", " (when.to_string()) ", halo " (env!("CARGO_PKG_VERSION"))
                }
                (summary(&report.checks))
                (nodes(report))
                @for category in Category::ALL {
                    @let checks: Vec<&Check> = report.checks.iter().filter(|c| c.category == category).collect();
                    @if !checks.is_empty() {
                        section id=(category_id(category)) {
                            h2 { (category.title()) }
                            @for c in checks {
                                div class={ "check " (outcome_word(c.outcome)) } {
                                    h3 { span.outcome { (mark(c.outcome)) } " " (c.title) " " code { (c.id) } }
                                    p { (c.explanation) }
                                    @if !c.fix.is_empty() {
                                        p.fix { strong { "Fix:" } " " (c.fix) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page.into_string()
}

/// Outcomes per category, a row each.
fn summary(checks: &[Check]) -> Markup {
    let outcomes = [Outcome::Fail, Outcome::Warning, Outcome::Pass, Outcome::Skipped];
    html! {
        table.summary {
            caption { "Summary" }
            thead { tr { th scope="col" { "Category" } @for o in outcomes { th scope="col" { (mark(o)) } } } }
            tbody {
                @for category in Category::ALL {
                    tr {
                        th scope="row" { a href={ "#" (category_id(category)) } { (category.title()) } }
                        @for o in outcomes {
                            td { (checks.iter().filter(|c| c.category == category && c.outcome == o).count()) }
                        }
                    }
                }
            }
        }
    }
}

/// One row per node: what it runs and has.
fn nodes(report: &ValidationView) -> Markup {
    html! {
        @if !report.survey.nodes.is_empty() {
            table.nodes {
                caption { "Nodes" }
                thead {
                    tr {
                        @for title in ["Node", "halo", "System", "QEMU", "KVM", "Memory free", "Disk free", "Networks"] {
                            th scope="col" { (title) }
                        }
                    }
                }
                tbody {
                    @for n in &report.survey.nodes {
                        tr {
                            th scope="row" { (n.name) @if n.witness { " (witness)" } }
                            @match &n.facts {
                                Some(f) => {
                                    td { (f.version) }
                                    td { (f.os) ", Linux " (f.kernel) ", " (f.arch) }
                                    td { (f.qemu.as_deref().unwrap_or("not installed")) }
                                    td { @if f.kvm { "yes" } @else { "no" } }
                                    td { (f.memory_available_mb) " of " (f.memory_total_mb) " MB" }
                                    td { (f.disk_free_mb) " MB" }
                                    td { (n.networks.join(", ")) }
                                }
                                None => td colspan="7" { "no answer: " (n.error.as_deref().unwrap_or("unknown")) }
                            }
                        }
                    }
                }
            }
        }
    }
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
            1_700_000_000_000,
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
