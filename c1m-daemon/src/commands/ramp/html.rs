//! `ramp --report FILE.html`: one self-contained page to keep. The ramp's
//! JSON is inline (`<script type="application/json">`), and so are the
//! page's script and style (`web/ramp-report.{js,css}`) and the dashboard's
//! chart library (`web/vendor/uplot`): it opens from disk in any browser
//! and makes no network request.

use super::result::RampResult;

const UPLOT_JS: &str = include_str!("../../../../web/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../../../web/vendor/uplot/uPlot.min.css");
const REPORT_JS: &str = include_str!("../../../../web/ramp-report.js");
const REPORT_CSS: &str = include_str!("../../../../web/ramp-report.css");

/// Text safe inside a `<script>` element: no `</` can close it early (in
/// JSON and JavaScript strings `<\/` reads the same).
fn script_safe(text: &str) -> String {
    text.replace("</", "<\\/")
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render(result: &RampResult) -> anyhow::Result<String> {
    let data = script_safe(&serde_json::to_string(result)?);
    let title = html_escape(&format!(
        "c1m ramp of {} ({})",
        result.target.addr, result.started_at
    ));
    Ok(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>{title}</title>
<style>{UPLOT_CSS}</style>
<style>{REPORT_CSS}</style>
</head>
<body>
<header><div class="brand">c1m</div><div class="target">{title}</div></header>
<main id="report"><noscript>This report draws its tables and charts with JavaScript; the data is in the page source (script#ramp-data).</noscript></main>
<script type="application/json" id="ramp-data">{data}</script>
<script>{uplot}</script>
<script>{report_js}</script>
</body>
</html>
"#,
        uplot = script_safe(UPLOT_JS),
        report_js = script_safe(REPORT_JS),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_script_can_be_closed_by_the_data() {
        assert_eq!(script_safe(r#"{"a":"</script>"}"#), r#"{"a":"<\/script>"}"#);
        let parsed: serde_json::Value =
            serde_json::from_str(&script_safe(r#"{"a":"</b>"}"#)).unwrap();
        assert_eq!(parsed["a"], "</b>");
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for asset in [UPLOT_JS, REPORT_JS, REPORT_CSS] {
            assert!(!asset.contains("http://") && !asset.contains("https://") || asset == UPLOT_JS);
        }
        assert!(!REPORT_JS.contains("fetch("));
    }
}
