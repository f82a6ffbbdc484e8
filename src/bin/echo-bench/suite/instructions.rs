//! User-space instructions per request, counted by callgrind (deterministic,
//! whatever else the machine is doing). Each server runs under valgrind
//! twice, with the same 50 x 512 B load for two lengths; the difference of
//! the two counts over the difference of the requests is the cost of one
//! request, without start-up, connects and exit. The same difference per
//! function (callgrind_annotate) shows where the instructions go.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use super::measure::Ctx;
use super::plan::{Contender, Load};
use super::servers::{self, Placement};
use crate::throughput::ThroughputReport;

pub const LOAD: Load = Load {
    clients: 50,
    bytes: 512,
};

/// One callgrind run.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub seconds: f64,
    pub requests: u64,
    pub instructions: u64,
}

/// A function's instructions per request.
#[derive(Clone, Debug, Serialize)]
pub struct FnCost {
    pub function: String,
    /// The object it lives in (binary or library file name).
    pub object: String,
    pub per_request: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct InstrReport {
    pub short: Point,
    pub long: Point,
    pub per_request: f64,
    /// What the runs cost besides their requests (start-up, connects, exit).
    pub fixed: f64,
    /// Functions by instructions per request, most first.
    pub functions: Vec<FnCost>,
}

/// Whether valgrind (with callgrind_annotate) is installed.
pub fn available() -> bool {
    // callgrind_annotate 3.19 exits 255 after `--version`: that it runs is enough.
    let runs = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    runs("valgrind").is_ok_and(|s| s.success()) && runs("callgrind_annotate").is_ok()
}

/// Counts `s` under callgrind at the two lengths of `secs`.
pub fn measure(
    ctx: &Ctx,
    s: &Contender,
    secs: (f64, f64),
    dir: &Path,
) -> Result<InstrReport, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut points = Vec::new();
    let mut profiles = Vec::new();
    for (label, t) in [("short", secs.0), ("long", secs.1)] {
        let file = dir.join(format!("{}-{label}.out", s.name));
        let _ = fs::remove_file(&file);
        let (requests, instructions) = one_run(ctx, s, t, &file)?;
        points.push(Point {
            seconds: t,
            requests,
            instructions,
        });
        profiles.push(by_function(&file)?);
    }
    let (short, long) = (points.remove(0), points.remove(0));
    let dreq = long.requests as f64 - short.requests as f64;
    if dreq < 1000.0 {
        return Err(format!(
            "too few requests under callgrind to tell the lengths apart ({} and {})",
            short.requests, long.requests
        ));
    }
    let per_request = (long.instructions as f64 - short.instructions as f64) / dreq;
    let fixed = short.instructions as f64 - per_request * short.requests as f64;
    let (a, b) = (&profiles[0], &profiles[1]);
    let mut functions: Vec<FnCost> = b
        .iter()
        .map(|(function, (ir, object))| FnCost {
            function: function.clone(),
            object: object.clone(),
            per_request: (*ir as f64 - a.get(function).map_or(0, |x| x.0) as f64) / dreq,
        })
        .filter(|f| f.per_request >= 0.5)
        .collect();
    functions.sort_by(|x, y| y.per_request.total_cmp(&x.per_request));
    Ok(InstrReport {
        short,
        long,
        per_request,
        fixed,
        functions,
    })
}

/// One run under callgrind: requests served and instructions counted.
fn one_run(ctx: &Ctx, s: &Contender, secs: f64, file: &Path) -> Result<(u64, u64), String> {
    let ns = ctx.netns()?;
    let at = Placement {
        netns: ns.as_ref(),
        pin: ctx.pin,
        logs: &ctx.logs,
    };
    let wrapper = vec![
        "valgrind".to_string(),
        "--tool=callgrind".to_string(),
        format!("--callgrind-out-file={}", file.display()),
    ];
    let server = servers::start(s, &[], &wrapper, &at, Duration::from_secs(60))?;
    let args: Vec<String> = [
        "throughput",
        "-a",
        &server.addr,
        "-c",
        &LOAD.clients.to_string(),
        "-l",
        &LOAD.bytes.to_string(),
        "-t",
        &secs.to_string(),
        "--warmup",
        "0",
    ]
    .iter()
    .map(|w| w.to_string())
    .collect();
    let res: Result<ThroughputReport, String> = servers::load(&ctx.exe, &at, &args);
    // callgrind writes its counts when the server exits.
    let exited = server.terminate(Duration::from_secs(60));
    let report = res?;
    if report.errors + report.mismatches > 0 {
        return Err(format!(
            "echo errors under callgrind: {:?}",
            report.first_error
        ));
    }
    if !exited {
        return Err(format!(
            "{} did not exit under callgrind after SIGTERM",
            s.name
        ));
    }
    let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{}: no instruction total", file.display()))?;
    Ok((report.requests, total))
}

/// Instructions and object by function, from `callgrind_annotate`.
fn by_function(file: &Path) -> Result<BTreeMap<String, (u64, String)>, String> {
    let out = Command::new("callgrind_annotate")
        .args(["--threshold=100", "--auto=no"])
        .arg(file)
        .output()
        .map_err(|e| format!("callgrind_annotate: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "callgrind_annotate: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(parse_annotate(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses lines such as `1,234 (5.6%)  file.rs:crate::f [/path/bin]` (the
/// percentage is absent in older valgrind) into instructions by function.
/// With line tables a function's own lines and those inlined into it from
/// other files are separate lines, the object named only on some: they
/// are added up under the function.
fn parse_annotate(text: &str) -> BTreeMap<String, (u64, String)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        let Some((count, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let Ok(ir) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        let mut rest = rest.trim_start();
        if rest.starts_with('(') {
            rest = rest.split_once(')').map_or("", |(_, r)| r).trim_start();
        }
        if rest.is_empty() || rest.starts_with("PROGRAM TOTALS") || rest.starts_with("events") {
            continue;
        }
        let (place, object) = match rest.rsplit_once(" [") {
            Some((p, o)) => (p, o.trim_end_matches(']')),
            None => (rest, ""),
        };
        // `file:function`: file names hold no colon, Rust paths do.
        let function = place.split_once(':').map_or(place, |(_, f)| f);
        let object = Path::new(object)
            .file_name()
            .map_or(String::new(), |f| f.to_string_lossy().into_owned());
        let entry = out
            .entry(function.to_string())
            .or_insert((0, String::new()));
        entry.0 += ir;
        if entry.1.is_empty() {
            entry.1 = object;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_annotate_lines() {
        let text = "\
--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
12,000 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                file:function
--------------------------------------------------------------------------------
5,000 (41.67%)  ???:epoll_wait [/usr/lib/x86_64-linux-gnu/libc.so.6]
4,000 (33.33%)  src/connection.rs:echo_reactor::connection::Connection::advance [/t/release/echo-reactor]
1,000  src/other.rs:echo_reactor::connection::Connection::advance
";
        let m = parse_annotate(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m["epoll_wait"], (5000, "libc.so.6".to_string()));
        assert_eq!(
            m["echo_reactor::connection::Connection::advance"],
            (5000, "echo-reactor".to_string())
        );
    }
}
