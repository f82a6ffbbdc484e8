//! The `echo-reactor` binary: parses flags, sets up logging, binds, announces
//! the address, and runs the reactor. Exit codes: 0 after a clean shutdown,
//! 1 when the server cannot listen or fails, 2 for bad flags (from clap).
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use echo_reactor::{Config, Reactor};

fn main() -> ExitCode {
    let config = Config::parse();
    echo_reactor::logging::init();

    let server = match Reactor::bind(&config) {
        Ok(server) => server,
        Err(err) => {
            // The error names what failed, e.g. `cannot listen on ADDR: …`.
            eprintln!("echo-reactor: {err}");
            return ExitCode::FAILURE;
        }
    };
    // Scripts and tests read the real port from this line, so it goes to
    // stdout at once, before any client can be served.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {}", server.local_addr());
    let _ = stdout.flush();
    drop(stdout);

    match server.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("poll failed: {err}");
            ExitCode::FAILURE
        }
    }
}
