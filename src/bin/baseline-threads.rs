//! Baseline for the benchmark: the naive shape of the seed. A blocking
//! `accept` loop and one OS thread per connection (std::net only).
//! Same startup contract as echo-reactor: `--listen ADDR`, then one line
//! `listening on ADDR` on stdout.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use clap::Parser;

#[derive(Parser)]
#[command(about = "thread-per-connection echo server (benchmark baseline)")]
struct Args {
    /// Address to listen on (port 0 = kernel picks).
    #[arg(long, default_value = "127.0.0.1:7007")]
    listen: SocketAddr,
}

fn serve(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = match TcpListener::bind(args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot bind {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout();
    writeln!(out, "listening on {}", listener.local_addr()?)?;
    out.flush()?;
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                if let Err(e) = thread::Builder::new().spawn(move || serve(s)) {
                    eprintln!("spawn: {e}");
                }
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    Ok(())
}
