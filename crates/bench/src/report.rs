//! Results: `results.json` (raw samples kept), `report.md`, and the SVGs.

use crate::Ctx;
use crate::stats::{MannWhitney, Summary};
use anyhow::Result;
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write;

/// One of the targets, as measured.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    /// What is compared.
    pub name: String,
    /// The goal, in words.
    pub goal: String,
    /// The measurement, in words.
    pub measured: String,
    /// Met, missed, or not measurable in this run.
    pub met: Option<bool>,
}

/// A plot file.
#[derive(Clone, Debug)]
pub struct Plot {
    /// File name (`*.svg`).
    pub file: String,
    /// The SVG.
    pub svg: String,
    /// One line saying what it shows.
    pub caption: String,
}

/// What one scenario produced.
#[derive(Clone, Debug)]
pub struct Section {
    /// Scenario name.
    pub name: String,
    /// Heading.
    pub title: String,
    /// Completed.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// Wall time.
    pub seconds: f64,
    /// Data, raw samples included.
    pub json: Value,
    /// Report text (tables, notes).
    pub markdown: String,
    /// Plots.
    pub plots: Vec<Plot>,
    /// Targets.
    pub targets: Vec<TargetCheck>,
}

impl Section {
    /// An empty successful section.
    pub fn new(name: &str, title: &str) -> Section {
        Section {
            name: name.into(),
            title: title.into(),
            ok: true,
            error: None,
            seconds: 0.0,
            json: json!({}),
            markdown: String::new(),
            plots: vec![],
            targets: vec![],
        }
    }

    /// A scenario that failed.
    pub fn failed(name: &str, error: &str, seconds: f64) -> Section {
        let mut s = Section::new(name, name);
        s.ok = false;
        s.error = Some(error.into());
        s.seconds = seconds;
        s.markdown = format!("**This scenario failed:** `{}`\n", error.replace('`', "'"));
        s
    }

    /// Append a paragraph.
    pub fn para(&mut self, text: &str) {
        self.markdown.push_str(text);
        self.markdown.push_str("\n\n");
    }

    /// Add a plot and a reference to it in the text.
    pub fn plot(&mut self, file: &str, svg: String, caption: &str) {
        let _ = write!(self.markdown, "![{caption}]({file})\n\n*{caption}*\n\n");
        self.plots.push(Plot {
            file: file.into(),
            svg,
            caption: caption.into(),
        });
    }

    /// Record a target.
    pub fn target(&mut self, name: &str, goal: &str, measured: String, met: Option<bool>) {
        self.targets.push(TargetCheck {
            name: name.into(),
            goal: goal.into(),
            measured,
            met,
        });
    }
}

/// A Markdown table, first column left-aligned, the others right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    table_aligned(headers, rows, false)
}

/// A Markdown table; `left` aligns every column left (text tables).
pub fn table_aligned(headers: &[&str], rows: &[Vec<String>], left: bool) -> String {
    let mut s = format!("| {} |\n|", headers.join(" | "));
    for (i, _) in headers.iter().enumerate() {
        s.push_str(if i == 0 || left { "---|" } else { "---:|" });
    }
    s.push('\n');
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s.push('\n');
    s
}

/// A number with 3 significant digits (or "–" when not finite).
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{v:.4}")
    }
}

/// A p-value for a table, with the α = 0.05 verdict.
pub fn pval(m: &Option<MannWhitney>) -> String {
    match m {
        None => "–".into(),
        Some(m) if m.p < 0.001 => "<0.001 ✱".into(),
        Some(m) if m.p < 0.05 => format!("{:.3} ✱", m.p),
        Some(m) => format!("{:.3}", m.p),
    }
}

/// Bytes in KiB/MiB.
pub fn bytes(n: f64) -> String {
    if !n.is_finite() {
        "–".into()
    } else if n >= (1u64 << 20) as f64 {
        format!("{:.2} MiB", n / (1u64 << 20) as f64)
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}

/// The summary columns used by latency tables: n, mean, median, p95, p99, SD, CV.
pub fn summary_cells(s: &Summary) -> Vec<String> {
    vec![
        s.n.to_string(),
        num(s.mean),
        num(s.median),
        num(s.p95),
        num(s.p99),
        num(s.sd),
        format!("{:.1}%", s.cv * 100.0),
    ]
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{:?}", std::time::SystemTime::now()))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Write `results.json`, `report.md` and the plots into `ctx.opts.out`.
pub fn write(ctx: &Ctx, sections: &[Section], seconds: f64) -> Result<crate::Written> {
    let out = &ctx.opts.out;
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let meta = json!({
        "date": now_utc(),
        "quick": ctx.opts.quick,
        "wisp_bin": ctx.opts.wisp_bin,
        "build_profile": profile,
        "cores": cores,
        "cpu": cpu_model(),
        "kernel": kernel,
        "seconds": seconds,
    });
    let mut scen = serde_json::Map::new();
    let mut targets = Vec::new();
    for s in sections {
        scen.insert(
            s.name.clone(),
            json!({"title": s.title, "ok": s.ok, "error": s.error, "seconds": s.seconds, "data": s.json,
                   "plots": s.plots.iter().map(|p| p.file.clone()).collect::<Vec<_>>(), "targets": s.targets}),
        );
        targets.extend(s.targets.iter().cloned());
    }
    let doc = json!({"meta": meta, "scenarios": scen, "targets": targets});
    let json_path = out.join("results.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&doc)?)?;

    let mut md = String::new();
    let _ = writeln!(md, "# Wisp benchmark report\n");
    let _ = writeln!(
        md,
        "{} · {} mode · {} cores ({}) · Linux {} · `wisp` {} build · {:.0} s in all. Raw samples: `results.json`.\n",
        meta["date"].as_str().unwrap_or(""),
        if ctx.opts.quick {
            "**quick** (smoke test: few samples, short runs; not for conclusions)"
        } else {
            "full"
        },
        cores,
        meta["cpu"].as_str().unwrap_or(""),
        kernel,
        profile,
        seconds
    );
    if profile == "debug" {
        md.push_str("> The `wisp` binary is a **debug** build: host-side numbers are pessimistic. Use `cargo build --release -p wisp-cli` for real figures.\n\n");
    }
    md.push_str("Statistics: latencies in ms; SD is the sample standard deviation, CV = SD/mean. p-values are from a two-sided Mann–Whitney U test (normal approximation, tie- and continuity-corrected) of Wisp against each baseline; ✱ marks p < 0.05 (α = 0.05).\n\n");
    md.push_str("## Targets\n\n");
    let rows: Vec<Vec<String>> = targets
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.goal.clone(),
                t.measured.clone(),
                match t.met {
                    Some(true) => "met".into(),
                    Some(false) => "**missed**".into(),
                    None => "not measured".into(),
                },
            ]
        })
        .collect();
    md.push_str(&table_aligned(
        &["target", "goal", "measured", "verdict"],
        &rows,
        true,
    ));
    let mut plots = Vec::new();
    for s in sections {
        let _ = writeln!(md, "## {} (`{}`)\n", s.title, s.name);
        if !s.ok {
            let _ = writeln!(
                md,
                "**Failed** after {:.1} s: `{}`\n",
                s.seconds,
                s.error.as_deref().unwrap_or("?").replace('`', "'")
            );
        }
        md.push_str(&s.markdown);
        for p in &s.plots {
            let path = out.join(&p.file);
            std::fs::write(&path, &p.svg)?;
            plots.push(path);
        }
    }
    // PNG copies when librsvg's converter is installed (optional; SVG is the format).
    if std::process::Command::new("rsvg-convert")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        for svg in plots.clone() {
            let png = svg.with_extension("png");
            if std::process::Command::new("rsvg-convert")
                .arg(&svg)
                .arg("-o")
                .arg(&png)
                .status()
                .is_ok_and(|s| s.success())
            {
                plots.push(png);
            } else {
                crate::progress::line(&format!(
                    "rsvg-convert failed on {}: no PNG copy",
                    svg.display()
                ));
            }
        }
    } else {
        crate::progress::line(
            "rsvg-convert not found: plots written as SVG only (apt-get install librsvg2-bin for PNG copies)",
        );
    }
    let md_path = out.join("report.md");
    std::fs::write(&md_path, md)?;
    let failed = sections
        .iter()
        .filter(|s| !s.ok)
        .map(|s| (s.name.clone(), s.error.clone().unwrap_or_default()))
        .collect();
    Ok(crate::Written {
        json: json_path,
        markdown: md_path,
        plots,
        failed,
    })
}
