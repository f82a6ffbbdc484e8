//! Real HAProxy for the tests that put it in front of the server. It must be
//! installed (`make test-deps`): a missing haproxy fails those tests, it
//! does not skip them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use super::Log;

/// `haproxy` from PATH or Debian's /usr/sbin (not in a normal user's PATH).
pub fn haproxy_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("haproxy"))
        .find(|p| p.is_file())
        .expect("haproxy is not installed; this test needs it: `make test-deps` (apt-get install haproxy)")
}

/// Writes `config` to `dir/haproxy.cfg`, has haproxy check it, and starts
/// it in the foreground (`-db`). Returns the process (the caller kills it)
/// and its stderr.
pub fn start_haproxy(dir: &Path, config: &str) -> (Child, Arc<Log>) {
    let bin = haproxy_binary();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, config).unwrap();
    let check = Command::new(&bin).arg("-c").arg("-f").arg(&cfg).output();
    let check = check.unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    assert!(
        check.status.success(),
        "haproxy rejects the config:\n{config}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut child = Command::new(&bin)
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let log = Log::follow(child.stderr.take().unwrap());
    (child, log)
}
