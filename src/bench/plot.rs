//! `myelin bench --plot DIR RESULT...`: SVG charts of saved results
//! (issue 25, point 5), drawn with `plotters` (its SVG backend only, no
//! font files: text is laid out by estimate and left to the viewer's
//! sans-serif).
//!
//! A result file is what `myelin bench` printed (the whole standard output
//! or only its JSON line): the last line that is a `myelin-bench` JSON
//! object is read. Every field is optional, so lines written before the
//! per-second series existed still plot (their CDF is drawn through the
//! percentiles they have: p50, p95, p99, max).
//!
//! For each of the `throughput` and `latency` sections present in any
//! file, two charts, each with one line per file (labelled by its file
//! name without the extension, so `myelin.json` and `synapse.json` make one
//! side-by-side picture):
//!
//! - `SECTION-rate.svg`: sent (top) and delivered (bottom) events per
//!   second against seconds since the first send;
//! - `SECTION-latency-cdf.svg`: the fraction of sends (top) and deliveries
//!   (bottom) at or below each latency, on a logarithmic milliseconds axis.
//!
//! Who may import this: `bench` (the CLI path) and tests.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;

use super::stats::{CdfPoint, LatencySummary};

/// Why charts could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// A result file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no `myelin-bench` JSON line.
    #[error("{0}: no myelin-bench JSON line found")]
    NotAResult(PathBuf),
    /// No file has a `throughput` or `latency` section.
    #[error("none of the files has a throughput or latency result to chart")]
    NothingToPlot,
    /// Drawing failed.
    #[error("drawing {chart}: {message}")]
    Draw {
        /// The chart's file name.
        chart: String,
        /// The backend's error.
        message: String,
    },
    /// The output directory or a chart could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The parts of a result line the charts use (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResultLine {
    tool: String,
    throughput: Option<Traffic>,
    latency: Option<Traffic>,
}

/// A `throughput` or `latency` section (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Traffic {
    sent_per_second: Vec<u64>,
    delivered_per_second: Vec<u64>,
    send_latency: LatencySummary,
    delivery_latency: LatencySummary,
    send_latency_cdf: Vec<CdfPoint>,
    delivery_latency_cdf: Vec<CdfPoint>,
}

/// One result file, labelled.
struct Run {
    label: String,
    line: ResultLine,
}

/// Reads the result in `path`: the last line (or the whole text) that is a
/// JSON object with `"tool": "myelin-bench"`.
fn read(path: &Path) -> Result<ResultLine, PlotError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlotError::Read {
        path: path.to_owned(),
        source,
    })?;
    let whole = std::iter::once(text.as_str());
    whole
        .chain(text.lines().rev())
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str::<ResultLine>(l).ok())
        .find(|r| r.tool == "myelin-bench")
        .ok_or_else(|| PlotError::NotAResult(path.to_owned()))
}

/// The label of `path`: its file name without the extension, made unique
/// among `taken` with a suffix.
fn label(path: &Path, taken: &[Run]) -> String {
    let stem = path
        .file_stem()
        .map_or_else(|| "result".to_owned(), |s| s.to_string_lossy().into_owned());
    let mut label = stem.clone();
    let mut n = 2;
    while taken.iter().any(|r| r.label == label) {
        label = format!("{stem} ({n})");
        n += 1;
    }
    label
}

/// Writes the charts of `results` into `dir` (created if absent) and
/// returns their paths, in order.
///
/// Errors: a file unreadable or without a result line, no traffic section
/// in any file, or a chart that cannot be drawn or written.
pub fn write_charts(dir: &Path, results: &[PathBuf]) -> Result<Vec<PathBuf>, PlotError> {
    let mut runs: Vec<Run> = Vec::with_capacity(results.len());
    for path in results {
        let line = read(path)?;
        let label = label(path, &runs);
        runs.push(Run { label, line });
    }
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Write {
        path: dir.to_owned(),
        source,
    })?;
    type Section = fn(&ResultLine) -> Option<&Traffic>;
    let sections: [(&str, Section); 2] = [
        ("throughput", |r| r.throughput.as_ref()),
        ("latency", |r| r.latency.as_ref()),
    ];
    let mut written = Vec::new();
    for (name, section) in sections {
        let series: Vec<(&str, &Traffic)> = runs
            .iter()
            .filter_map(|r| section(&r.line).map(|t| (r.label.as_str(), t)))
            .collect();
        if series.is_empty() {
            continue;
        }
        let rate = format!("{name}-rate.svg");
        let svg = draw(&rate, |area| rate_chart(area, name, &series))?;
        written.push(save(dir, &rate, &svg)?);
        let cdf = format!("{name}-latency-cdf.svg");
        let svg = draw(&cdf, |area| cdf_chart(area, name, &series))?;
        written.push(save(dir, &cdf, &svg)?);
    }
    if written.is_empty() {
        return Err(PlotError::NothingToPlot);
    }
    Ok(written)
}

/// Chart size in pixels.
const SIZE: (u32, u32) = (960, 720);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error + 'static>>;

/// Draws one chart into an SVG string.
fn draw(chart: &str, f: impl FnOnce(&Area<'_>) -> DrawResult) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let drawn = area
            .fill(&WHITE)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
            .and_then(|()| f(&area))
            .and_then(|()| area.present().map_err(|e| Box::new(e) as _));
        drawn.map_err(|e| PlotError::Draw {
            chart: chart.to_owned(),
            message: e.to_string(),
        })?;
    }
    Ok(svg)
}

fn save(dir: &Path, name: &str, svg: &str) -> Result<PathBuf, PlotError> {
    let path = dir.join(name);
    std::fs::write(&path, svg).map_err(|source| PlotError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The CDF of a section's latency: its points, or its percentiles when the
/// line predates the points. Empty without samples.
fn cdf_points(points: &[CdfPoint], summary: &LatencySummary) -> Vec<(f64, f64)> {
    if !points.is_empty() {
        return points.iter().map(|p| (p.ms, p.fraction)).collect();
    }
    if summary.count == 0 {
        return Vec::new();
    }
    vec![
        (summary.p50_ms, 0.50),
        (summary.p95_ms, 0.95),
        (summary.p99_ms, 0.99),
        (summary.max_ms, 1.0),
    ]
}

/// Events per second over time: sent on top, delivered below.
fn rate_chart(area: &Area<'_>, name: &str, series: &[(&str, &Traffic)]) -> DrawResult {
    let (top, bottom) = area.split_vertically(SIZE.1 / 2);
    let sent: Vec<(&str, &[u64])> = series
        .iter()
        .map(|(l, t)| (*l, t.sent_per_second.as_slice()))
        .collect();
    let delivered: Vec<(&str, &[u64])> = series
        .iter()
        .map(|(l, t)| (*l, t.delivered_per_second.as_slice()))
        .collect();
    rate_panel(&top, &format!("{name}: events sent per second"), &sent)?;
    rate_panel(
        &bottom,
        &format!("{name}: events delivered per second"),
        &delivered,
    )
}

fn rate_panel(area: &Area<'_>, caption: &str, lines: &[(&str, &[u64])]) -> DrawResult {
    let seconds = lines.iter().map(|(_, s)| s.len()).max().unwrap_or(0).max(1);
    let top = lines
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..seconds as f64, 0f64..top * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first send")
        .y_desc("events/s")
        .draw()?;
    for (i, (label, counts)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let label = if counts.is_empty() {
            format!("{label} (no per-second series)")
        } else {
            (*label).to_owned()
        };
        // Each second's count drawn at the second's middle.
        let points = counts
            .iter()
            .enumerate()
            .map(|(s, &n)| (s as f64 + 0.5, n as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    legend(&mut chart)
}

/// Latency CDFs: sends on top, deliveries below.
fn cdf_chart(area: &Area<'_>, name: &str, series: &[(&str, &Traffic)]) -> DrawResult {
    let (top, bottom) = area.split_vertically(SIZE.1 / 2);
    let sends: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(l, t)| (*l, cdf_points(&t.send_latency_cdf, &t.send_latency)))
        .collect();
    let deliveries: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(l, t)| (*l, cdf_points(&t.delivery_latency_cdf, &t.delivery_latency)))
        .collect();
    cdf_panel(&top, &format!("{name}: send latency CDF"), &sends)?;
    cdf_panel(
        &bottom,
        &format!("{name}: delivery latency CDF"),
        &deliveries,
    )
}

fn cdf_panel(area: &Area<'_>, caption: &str, lines: &[(&str, Vec<(f64, f64)>)]) -> DrawResult {
    // The smallest latency an HdrHistogram of microseconds reports.
    const FLOOR_MS: f64 = 0.001;
    let all = || lines.iter().flat_map(|(_, p)| p.iter().map(|&(ms, _)| ms));
    let lo = all().fold(f64::INFINITY, f64::min).max(FLOOR_MS);
    let hi = all().fold(0.0, f64::max).max(lo * 10.0);
    let lo = if lo.is_finite() { lo } else { FLOOR_MS };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d((lo * 0.8..hi * 1.25).log_scale(), 0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency, ms (log scale)")
        .y_desc("fraction at or below")
        .draw()?;
    for (i, (label, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let label = if points.is_empty() {
            format!("{label} (no samples)")
        } else if points.len() == 4 {
            format!("{label} (percentiles only)")
        } else {
            (*label).to_owned()
        };
        let points = points.iter().map(|&(ms, f)| (ms.max(FLOOR_MS), f));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    legend(&mut chart)
}

fn legend<'a, X, Y>(chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>) -> DrawResult
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as `myelin bench` writes it now, with series and CDFs.
    const NEW: &str = r#"{"tool":"myelin-bench","format":1,"scenario":"throughput","throughput":{"sent":6,"send_latency":{"count":6,"mean_ms":2.0,"p50_ms":2.0,"p95_ms":3.0,"p99_ms":3.0,"max_ms":3.0},"delivery_latency":{"count":6,"mean_ms":4.0,"p50_ms":4.0,"p95_ms":6.0,"p99_ms":6.0,"max_ms":6.0},"series_start_unix_s":100,"sent_per_second":[1,3,2],"delivered_per_second":[0,4,2],"send_latency_cdf":[{"ms":1.0,"fraction":0.5},{"ms":3.0,"fraction":1.0}],"delivery_latency_cdf":[{"ms":2.0,"fraction":0.5},{"ms":6.0,"fraction":1.0}]}}"#;
    /// A line from before the series (2026-12-04), after the human table.
    const OLD: &str = "myelin bench · throughput · http://127.0.0.1:8008 · run abc\n{\"tool\":\"myelin-bench\",\"format\":1,\"scenario\":\"throughput\",\"throughput\":{\"sent\":33,\"send_latency\":{\"count\":33,\"mean_ms\":480.0,\"p50_ms\":479.0,\"p95_ms\":700.0,\"p99_ms\":800.0,\"max_ms\":900.0},\"delivery_latency\":{\"count\":0,\"mean_ms\":0.0,\"p50_ms\":0.0,\"p95_ms\":0.0,\"p99_ms\":0.0,\"max_ms\":0.0}}}\n";

    /// Parses `svg` as XML; returns its root element's name and how many
    /// `polyline` elements it has.
    fn parse_svg(svg: &str) -> (String, usize) {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(svg);
        let (mut root, mut polylines, mut depth) = (None, 0, 0i32);
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) => {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    root.get_or_insert(name.clone());
                    polylines += usize::from(name == "polyline");
                    depth += 1;
                }
                Event::Empty(e) => {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    root.get_or_insert(name.clone());
                    polylines += usize::from(name == "polyline");
                }
                Event::End(_) => depth -= 1,
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(depth, 0, "every element closed");
        (root.expect("a root element"), polylines)
    }

    #[test]
    fn writes_valid_svgs_with_one_line_per_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (new, old) = (
            dir.path().join("myelin.json"),
            dir.path().join("synapse.txt"),
        );
        std::fs::write(&new, NEW).expect("write");
        std::fs::write(&old, OLD).expect("write");
        let out = dir.path().join("charts");
        let written = write_charts(&out, &[new, old]).expect("charts");
        assert_eq!(
            written,
            vec![
                out.join("throughput-rate.svg"),
                out.join("throughput-latency-cdf.svg")
            ]
        );
        for chart in &written {
            let svg = std::fs::read_to_string(chart).expect("read");
            let (root, polylines) = parse_svg(&svg);
            assert_eq!(root, "svg", "{}", chart.display());
            // Two panels, one line per file each, plus one legend sample
            // per line: at least the 4 data lines.
            assert!(polylines >= 4, "{}: {polylines} polylines", chart.display());
            assert!(svg.contains("myelin") && svg.contains("synapse"), "labels");
        }
        let cdf = std::fs::read_to_string(&written[1]).expect("read");
        assert!(cdf.contains("synapse (percentiles only)"), "old line's CDF");
        let rate = std::fs::read_to_string(&written[0]).expect("read");
        assert!(rate.contains("synapse (no per-second series)"));
    }

    #[test]
    fn refuses_files_without_a_result_or_a_traffic_section() {
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.json");
        std::fs::write(&junk, "{\"tool\":\"other\"}\nnot json\n").expect("write");
        assert!(matches!(
            write_charts(dir.path(), &[junk]),
            Err(PlotError::NotAResult(_))
        ));
        let game = dir.path().join("game.json");
        std::fs::write(&game, r#"{"tool":"myelin-bench","trades":{}}"#).expect("write");
        assert!(matches!(
            write_charts(dir.path(), &[game]),
            Err(PlotError::NothingToPlot)
        ));
        assert!(matches!(
            write_charts(dir.path(), &[dir.path().join("absent.json")]),
            Err(PlotError::Read { .. })
        ));
    }

    #[test]
    fn labels_are_file_stems_made_unique() {
        let runs = vec![Run {
            label: "myelin".into(),
            line: ResultLine::default(),
        }];
        assert_eq!(label(Path::new("/x/synapse.json"), &runs), "synapse");
        assert_eq!(label(Path::new("/y/myelin.json"), &runs), "myelin (2)");
    }

    #[test]
    fn old_lines_fall_back_to_percentiles() {
        let summary = LatencySummary {
            count: 3,
            p50_ms: 1.0,
            p95_ms: 2.0,
            p99_ms: 3.0,
            max_ms: 4.0,
            mean_ms: 1.5,
        };
        assert_eq!(
            cdf_points(&[], &summary),
            vec![(1.0, 0.5), (2.0, 0.95), (3.0, 0.99), (4.0, 1.0)]
        );
        assert!(cdf_points(&[], &LatencySummary::default()).is_empty());
    }
}
