//! results.svg: requests per server CPU-second (each load), time to the
//! last echo in each burst, and the fairness probe's p99 echo time alone and
//! beside a bulk client; one group of bars per server. SVG backend only.

use std::path::Path;

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

pub fn draw(path: &Path, bars: &[Bar], loads: &[String], bursts: &[usize]) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| format!("chart: {e}");
    let root = SVGBackend::new(path, (1800, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (left, rest) = root.split_horizontally(600);
    let (right, fair) = rest.split_horizontally(600);
    let n = bars.len().max(1) as f64;
    let names: Vec<String> = bars.iter().map(|b| b.server.clone()).collect();
    let label = |x: &f64| {
        let i = x.floor();
        if (x - i - 0.5).abs() < 1e-6 && i >= 0.0 {
            names.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };

    // Left: requests per CPU-second.
    let ymax = bars
        .iter()
        .flat_map(|b| b.rpcpu.iter().flatten())
        .copied()
        .fold(1.0, f64::max)
        * 1.35;
    let mut c = ChartBuilder::on(&left)
        .caption(
            "Requests per server CPU-second (higher is better)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, 0.0..ymax)
        .map_err(|x| e(&x))?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * bars.len() + 1)
        .x_label_formatter(&label)
        .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
        .draw()
        .map_err(|x| e(&x))?;
    let width = 0.8 / loads.len().max(1) as f64;
    for (k, load) in loads.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        c.draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
            let v = (*b.rpcpu.get(k)?)?;
            let x0 = i as f64 + 0.1 + width * k as f64;
            Some(Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.95, v)],
                color.filled(),
            ))
        }))
        .map_err(|x| e(&x))?
        .label(load.to_string())
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;

    // Right: time to last echo per burst (log scale).
    let bmax = bars
        .iter()
        .flat_map(|b| b.burst.iter().flatten())
        .copied()
        .fold(1.0, f64::max)
        * 2.0;
    let mut c = ChartBuilder::on(&right)
        .caption(
            "Burst: ms to the last echo (lower is better, log)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, (0.1..bmax).log_scale())
        .map_err(|x| e(&x))?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * bars.len() + 1)
        .x_label_formatter(&label)
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(|x| e(&x))?;
    // A bar's left edge; its "failed" mark below must sit over it.
    let bw = 0.84 / bursts.len().max(1) as f64;
    let burst_x0 = |i: usize, k: usize| i as f64 + 0.08 + bw * k as f64;
    for (k, size) in bursts.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        c.draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
            let v = (*b.burst.get(k)?)?;
            let x0 = burst_x0(i, k);
            Some(Rectangle::new(
                [(x0, 0.1), (x0 + bw * 0.93, v.max(0.1))],
                color.filled(),
            ))
        }))
        .map_err(|x| e(&x))?
        .label(format!("{size} clients"))
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
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
        .map_err(|x| e(&x))?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;

    // Third: the fairness probe's p99, alone and beside a bulk client (log).
    let pmax = bars
        .iter()
        .flat_map(|b| b.probe_p99.iter().flatten())
        .copied()
        .fold(1.0, f64::max)
        * 2.0;
    let mut c = ChartBuilder::on(&fair)
        .caption(
            "Fairness: probe p99 echo ms (lower is better, log)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, (0.01..pmax).log_scale())
        .map_err(|x| e(&x))?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * bars.len() + 1)
        .x_label_formatter(&label)
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(|x| e(&x))?;
    for (k, what) in ["probe alone", "beside a bulk client"].iter().enumerate() {
        let color = COLORS[k];
        c.draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
            let v = b.probe_p99[k]?;
            let x0 = i as f64 + 0.1 + 0.4 * k as f64;
            Some(Rectangle::new(
                [(x0, 0.01), (x0 + 0.38, v.max(0.01))],
                color.filled(),
            ))
        }))
        .map_err(|x| e(&x))?
        .label(what.to_string())
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
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
