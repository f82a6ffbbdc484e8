//! Baseline for the benchmark: the echo server a Rust user would write with
//! tokio on a `current_thread` runtime (the shape of tokio's own echo example).
//! Same startup contract as echo-reactor: `--listen ADDR`, then one line
//! `listening on ADDR` on stdout.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(about = "tokio current_thread echo server (benchmark baseline)")]
struct Args {
    /// Address to listen on (port 0 = kernel picks).
    #[arg(long, default_value = "127.0.0.1:7007")]
    listen: SocketAddr,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    // Equivalent to `#[tokio::main(flavor = "current_thread")]`.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let listener = match TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot bind {}: {e}", args.listen);
                std::process::exit(1);
            }
        };
        let mut out = std::io::stdout();
        writeln!(out, "listening on {}", listener.local_addr()?)?;
        out.flush()?;
        loop {
            let (mut socket, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1024];
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if socket.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}
