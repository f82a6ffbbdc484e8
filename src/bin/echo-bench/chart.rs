//! results.svg: requests per server CPU-second (each load), time to the
//! last echo in each burst, and the fairness probe's p99 echo time alone and
//! beside a bulk client; one group of bars per server. SVG backend only.

use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

pub struct Bar {
    pub server: String,
    /// Requests per CPU-second, per load.
    pub rpcpu: Vec<Option<f64>>,
    /// Last-echo milliseconds, per burst size.
    pub burst: Vec<Option<f64>>,
    /// Clients that got no echo, per burst size (worst round).
    pub burst_failed: Vec<Option<f64>>,
    /// The probe's p99 echo milliseconds: alone, beside a bulk client.
    pub probe_p99: [Option<f64>; 2],
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type Chart<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

fn err(e: impl std::fmt::Display) -> String {
    format!("chart: {e}")
}

pub fn draw(path: &Path, bars: &[Bar], loads: &[String], bursts: &[usize]) -> Result<(), String> {
    let root = SVGBackend::new(path, (1800, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, rest) = root.split_horizontally(600);
    let (right, fair) = rest.split_horizontally(600);
    let names: Vec<String> = bars.iter().map(|b| b.server.clone()).collect();
    // One group of bars per server, its name under the group's middle.
    let server_label = |x: &f64| {
        let i = x.floor();
        if (x - i - 0.5).abs() < 1e-6 && i >= 0.0 {
            names.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let axes = Axes {
        servers: bars.len(),
        server_label: &server_label,
    };

    // Left: requests per CPU-second.
    let ymax = top(bars.iter().flat_map(|b| b.rpcpu.iter().flatten())) * 1.35;
    let mut c = axes.panel(
        &left,
        "Requests per server CPU-second (higher is better)",
        0.0..ymax,
        &|y| format!("{:.0}k", y / 1000.0),
    )?;
    let width = 0.8 / loads.len().max(1) as f64;
    for (k, load) in loads.iter().enumerate() {
        let rects = bars.iter().enumerate().filter_map(|(i, b)| {
            let x0 = i as f64 + 0.1 + width * k as f64;
            Some(((x0, 0.0), (x0 + width * 0.95, (*b.rpcpu.get(k)?)?)))
        });
        bar_series(&mut c, rects, COLORS[k % COLORS.len()], load)?;
    }
    legend(&mut c, SeriesLabelPosition::UpperRight)?;

    // Middle: time to last echo per burst (log scale).
    let bmax = top(bars.iter().flat_map(|b| b.burst.iter().flatten())) * 2.0;
    let mut c = axes.panel(
        &right,
        "Burst: ms to the last echo (lower is better, log)",
        (0.1..bmax).log_scale(),
        &|y| format!("{y}"),
    )?;
    // A bar's left edge; its "failed" mark below must sit over it.
    let bw = 0.84 / bursts.len().max(1) as f64;
    let burst_x0 = |i: usize, k: usize| i as f64 + 0.08 + bw * k as f64;
    for (k, size) in bursts.iter().enumerate() {
        let rects = bars.iter().enumerate().filter_map(|(i, b)| {
            let x0 = burst_x0(i, k);
            Some(((x0, 0.1), (x0 + bw * 0.93, (*b.burst.get(k)?)?.max(0.1))))
        });
        let label = format!("{size} clients");
        bar_series(&mut c, rects, COLORS[k % COLORS.len()], &label)?;
    }
    // Mark bars whose burst had clients without an echo.
    for (k, _) in bursts.iter().enumerate() {
        c.draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
            let failed = (*b.burst_failed.get(k)?).filter(|&f| f > 0.0)?;
            let v = (*b.burst.get(k)?)?.max(0.1);
            let x0 = burst_x0(i, k);
            Some(Text::new(
                format!("{failed:.0} failed"),
                (x0, v * 1.25),
                ("sans-serif", 12).into_font().color(&RED),
            ))
        }))
        .map_err(err)?;
    }
    legend(&mut c, SeriesLabelPosition::UpperLeft)?;

    // Right: the fairness probe's p99, alone and beside a bulk client (log).
    let pmax = top(bars.iter().flat_map(|b| b.probe_p99.iter().flatten())) * 2.0;
    let mut c = axes.panel(
        &fair,
        "Fairness: probe p99 echo ms (lower is better, log)",
        (0.01..pmax).log_scale(),
        &|y| format!("{y}"),
    )?;
    for (k, what) in ["probe alone", "beside a bulk client"].iter().enumerate() {
        let rects = bars.iter().enumerate().filter_map(|(i, b)| {
            let x0 = i as f64 + 0.1 + 0.4 * k as f64;
            Some(((x0, 0.01), (x0 + 0.38, b.probe_p99[k]?.max(0.01))))
        });
        bar_series(&mut c, rects, COLORS[k], what)?;
    }
    legend(&mut c, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(err)?;
    Ok(())
}

/// The x axis every panel shares: one slot per server.
struct Axes<'l> {
    servers: usize,
    server_label: &'l dyn Fn(&f64) -> String,
}

impl Axes<'_> {
    /// A panel titled `caption`, servers along x, `y` up.
    fn panel<'a, 'b, Y: AsRangedCoord<Value = f64>>(
        &self,
        area: &'a Area<'b>,
        caption: &str,
        y: Y,
        y_label: &dyn Fn(&f64) -> String,
    ) -> Result<Chart<'a, 'b, Y::CoordDescType>, String>
    where
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..self.servers.max(1) as f64, y)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(2 * self.servers + 1)
            .x_label_formatter(self.server_label)
            .y_label_formatter(y_label)
            .draw()
            .map_err(err)?;
        Ok(chart)
    }
}

/// One bar per server (corners given), in `color`, named `label` in the
/// legend.
fn bar_series<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    corners: impl Iterator<Item = ((f64, f64), (f64, f64))>,
    color: RGBColor,
    label: &str,
) -> Result<(), String> {
    chart
        .draw_series(corners.map(|(low, high)| Rectangle::new([low, high], color.filled())))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    Ok(())
}

fn legend<'b: 'a, 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'a, 'b, Y>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// The largest of `values`, at least 1.
fn top<'v>(values: impl Iterator<Item = &'v f64>) -> f64 {
    values.copied().fold(1.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg() {
        let path =
            std::env::temp_dir().join(format!("echo-bench-chart-{}.svg", std::process::id()));
        let bars = vec![
            Bar {
                server: "a".into(),
                rpcpu: vec![Some(300000.0), Some(280000.0)],
                burst: vec![Some(45.0), Some(250.0), Some(600.0)],
                burst_failed: vec![Some(0.0), Some(0.0), Some(0.0)],
                probe_p99: [Some(0.1), Some(0.3)],
            },
            Bar {
                server: "b".into(),
                rpcpu: vec![Some(170000.0), None],
                burst: vec![Some(0.9), Some(9000.0), None],
                burst_failed: vec![None, Some(1600.0), None],
                probe_p99: [None, Some(12.0)],
            },
        ];
        let loads = ["50 x 512 B".to_string(), "1000 x 64 B".to_string()];
        draw(&path, &bars, &loads, &[2000, 10000, 19000]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("1600 failed"));
    }
}
