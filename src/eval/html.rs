//! The HTML report: one self-contained page (inline CSS and SVG, no script
//! and nothing fetched), so it opens from a CI artifact or an email as it
//! does on the machine that wrote it.

use std::fmt::Write;

use super::distribution::Distribution;
use super::report::Report;
use crate::dataset::ItemResult;

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#1d2430;padding:0 1rem}\
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}\
.figures{display:flex;gap:1rem;flex-wrap:wrap}.figure{background:#f3f5f8;border-radius:6px;padding:.6rem 1rem}\
.figure b{display:block;font-size:1.3rem}table{border-collapse:collapse;width:100%}\
td,th{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #e3e6ea;vertical-align:top}\
.num{text-align:right;font-variant-numeric:tabular-nums}.pass{color:#1a7f37}.fail{color:#cf222e}\
details{border:1px solid #e3e6ea;border-radius:6px;margin:.4rem 0;padding:.4rem .8rem}\
summary{cursor:pointer}pre{white-space:pre-wrap;background:#f6f8fa;padding:.5rem;border-radius:4px;margin:.3rem 0}\
.charts{display:flex;gap:2rem;flex-wrap:wrap}svg text{font:11px system-ui,sans-serif;fill:#1d2430}";

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn render(report: &Report, title: &str) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1>",
        esc(title),
        esc(title)
    );
    figures(&mut page, report);
    page.push_str("<h2>Score by tag</h2>");
    tag_chart(&mut page, report);
    page.push_str("<h2>Distributions</h2><div class=\"charts\">");
    histogram(&mut page, "Latency (ms)", &report.latency, "ms");
    histogram(&mut page, "Cost ($)", &report.cost, "$");
    page.push_str("</div>");
    evaluators(&mut page, report);
    let _ = write!(
        page,
        "<h2>Cases</h2><p>{} shown: failures first, then passes.</p>",
        report.sample.len()
    );
    for case in &report.sample {
        drill_down(&mut page, case);
    }
    page.push_str("</body></html>\n");
    page
}

fn figures(page: &mut String, r: &Report) {
    let items = [
        ("cases", r.total.cases.to_string()),
        ("passed", r.total.passed.to_string()),
        ("score", format!("{:.1}%", r.score() * 100.0)),
        ("failed runs", r.errors.values().sum::<u64>().to_string()),
        ("tokens", r.usage.total_tokens().to_string()),
        ("cost", format!("${:.4}", r.usage.cost)),
        ("latency p50", format!("{:.0} ms", r.latency.quantile(0.5))),
        ("latency p95", format!("{:.0} ms", r.latency.quantile(0.95))),
    ];
    page.push_str("<div class=\"figures\">");
    for (label, value) in items {
        let _ = write!(
            page,
            "<div class=\"figure\"><b>{}</b>{label}</div>",
            esc(&value)
        );
    }
    page.push_str("</div>");
}

fn tag_chart(page: &mut String, r: &Report) {
    let (row, label_w, bar_w) = (22.0, 160.0, 420.0);
    let height = row * r.by_tag.len() as f64 + 10.0;
    let _ = write!(
        page,
        "<svg role=\"img\" aria-label=\"score by tag\" width=\"{}\" height=\"{height}\">",
        label_w + bar_w + 140.0
    );
    for (i, (tag, t)) in r.by_tag.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let w = bar_w * t.score();
        let _ = write!(
            page,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{bar_w}\" height=\"16\" fill=\"#eef1f4\"/>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" fill=\"#2f81f7\"><title>{} of {}</title></rect>\
             <text x=\"{}\" y=\"{}\">{:.1}% of {}</text>",
            y + 12.0,
            esc(tag),
            t.passed,
            t.cases,
            label_w + bar_w + 6.0,
            y + 12.0,
            t.score() * 100.0,
            t.cases
        );
    }
    page.push_str("</svg>");
}

fn histogram(page: &mut String, title: &str, d: &Distribution, unit: &str) {
    let buckets = d.buckets();
    let (w, h, base) = (420.0, 160.0, 140.0);
    let most = buckets.iter().map(|b| b.2).max().unwrap_or(1).max(1) as f64;
    let bar = w / buckets.len().max(1) as f64;
    let _ = write!(
        page,
        "<figure><figcaption>{}</figcaption><svg role=\"img\" aria-label=\"{}\" width=\"{w}\" height=\"{h}\">",
        esc(title),
        esc(title)
    );
    for (i, (low, high, n)) in buckets.iter().enumerate() {
        let bh = (base - 10.0) * (*n as f64) / most;
        let x = i as f64 * bar;
        let _ = write!(
            page,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#8250df\"><title>{} to {} {unit}: {n}</title></rect>",
            base - bh,
            (bar - 1.0).max(1.0),
            short(*low),
            short(*high)
        );
    }
    if let (Some(first), Some(last)) = (buckets.first(), buckets.last()) {
        let _ = write!(
            page,
            "<text x=\"0\" y=\"{}\">{}</text><text x=\"{w}\" y=\"{}\" text-anchor=\"end\">{} {unit}</text>",
            base + 14.0,
            short(first.0),
            base + 14.0,
            short(last.1)
        );
    }
    page.push_str("</svg></figure>");
}

fn short(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        // Three significant figures: 15.8 ms, 0.00123 $.
        let decimals = (2 - x.abs().log10().floor() as i32).clamp(0, 8) as usize;
        format!("{x:.decimals$}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

fn evaluators(page: &mut String, r: &Report) {
    page.push_str("<h2>Evaluators</h2><table><tr><th>evaluator</th><th class=\"num\">runs</th><th class=\"num\">passed</th><th class=\"num\">score</th></tr>");
    for (name, t) in &r.by_evaluator {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}%</td></tr>",
            esc(name),
            t.cases,
            t.passed,
            t.score() * 100.0
        );
    }
    page.push_str("</table>");
}

fn drill_down(page: &mut String, case: &ItemResult) {
    let passed = case.passed == Some(true);
    let (class, word) = if passed {
        ("pass", "pass")
    } else {
        ("fail", "fail")
    };
    let repeat = case.repeat.map(|k| format!(" #{k}")).unwrap_or_default();
    let _ = write!(
        page,
        "<details><summary><span class=\"{class}\">{word}</span> {}{} <small>{}</small></summary>",
        esc(&case.id),
        repeat,
        esc(&case.tags.join(", "))
    );
    if let Some(input) = &case.input {
        let _ = write!(page, "<b>input</b><pre>{}</pre>", esc(input));
    }
    let answer = match (&case.output, &case.answer) {
        (Some(output), _) => serde_json::to_string_pretty(output).unwrap_or_default(),
        (None, Some(a)) => a.clone(),
        (None, None) => "(no answer)".into(),
    };
    let _ = write!(page, "<b>output</b><pre>{}</pre>", esc(&answer));
    page.push_str(
        "<table><tr><th>evaluator</th><th>verdict</th><th>value</th><th>reason</th></tr>",
    );
    for s in &case.scores {
        let (class, word) = if s.passed {
            ("pass", "pass")
        } else {
            ("fail", "fail")
        };
        let value = s.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"{class}\">{word}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&value),
            esc(&s.reason)
        );
    }
    page.push_str("</table>");
    let _ = writeln!(
        page,
        "<b>trace</b><pre>states: {}",
        esc(&case.path.join(" → "))
    );
    for call in &case.tool_calls {
        let _ = writeln!(
            page,
            "tool call: {}({})",
            esc(&call.name),
            esc(&call.arguments.to_string())
        );
    }
    let _ = write!(
        page,
        "tokens: {} prompt + {} completion, ${:.6}, {:.0} ms",
        case.usage.prompt_tokens, case.usage.completion_tokens, case.usage.cost, case.latency_ms
    );
    if let Some(e) = &case.error {
        let _ = write!(page, "\nerror: {}", esc(e));
    }
    page.push_str("</pre></details>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Score;

    #[test]
    fn the_page_escapes_what_cases_hold_and_fetches_nothing() {
        let mut r: ItemResult = serde_json::from_value(serde_json::json!({"id": "<b>x</b>", "answer": "a < b & c", "path": ["reasoning", "answer"], "usage": {}, "latency_ms": 12.0, "tags": ["math"]})).unwrap();
        r.scores = vec![Score::new("regex", false, "no match for /<script>/")];
        r.passed = Some(false);
        let mut report = Report::default();
        report.add(r);
        report.finish();
        let page = report.html("Eval <1>");
        assert!(page.contains("Eval &lt;1&gt;"));
        assert!(page.contains("a &lt; b &amp; c"));
        assert!(page.contains("no match for /&lt;script&gt;/"));
        assert!(page.contains("reasoning → answer"));
        assert!(
            !page.contains("<script") && !page.contains("http"),
            "self-contained"
        );
        assert_eq!(page.matches("<details>").count(), 1);
    }
}
