//! `make install` puts the binary, its man page, bash, zsh and fish
//! completions, the systemd units, the per-core script and the docs where a
//! packager expects them, under PREFIX and DESTDIR; the man page and the
//! completions name every flag the binary has (they are generated from the
//! same definition); `make uninstall` takes it all away; and the installed
//! units pass `systemd-analyze verify` where systemd is installed.
//!
//! The tests run the Makefile's real recipe with `-o build` (the binary
//! cargo built for the tests stands in for the release build).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::CommandFactory;
use common::*;

const UNITS: [&str; 4] = [
    "echo-reactor.service",
    "echo-reactor.socket",
    "echo-reactor-proxy.socket",
    "echo-reactor@.service",
];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `make TARGET VARS...` in the source tree, with the test binary as the
/// release build; panics with make's output on failure.
fn make(target: &str, vars: &[String]) -> Output {
    let out = Command::new("make")
        .current_dir(manifest_dir())
        .args(["--no-print-directory", "-o", "build", target])
        .arg(format!("RELEASE={BIN}"))
        .args(vars)
        // Whatever make started `cargo test` is not this make's business.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .env_remove("DESTDIR")
        .env_remove("PREFIX")
        .stdin(Stdio::null())
        .output()
        .expect("run make");
    assert!(
        out.status.success(),
        "make {target} {vars:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap();
                found.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

/// The long flags the binary accepts, `--help` and `--version` included.
fn flags() -> Vec<String> {
    let mut command = echo_reactor::Config::command();
    command.build();
    let flags: Vec<String> = command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .filter_map(|arg| arg.get_long().map(str::to_string))
        .collect();
    assert!(flags.len() >= 12, "{flags:?}");
    flags
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 == 0o111)
}

#[test]
fn make_install_honours_destdir_and_prefix() {
    let dir = TempDir::new("install");
    let destdir = format!("DESTDIR={}", dir.0.display());
    make("install", &[destdir.clone(), "PREFIX=/usr/local".into()]);
    let root = dir.0.join("usr/local");
    let mut expected: Vec<String> = [
        "bin/echo-reactor",
        "bin/echo-reactor-per-core",
        "share/man/man1/echo-reactor.1",
        "share/bash-completion/completions/echo-reactor",
        "share/zsh/site-functions/_echo-reactor",
        "share/fish/vendor_completions.d/echo-reactor.fish",
        "share/doc/echo-reactor/LICENSE",
        "share/doc/echo-reactor/haproxy.cfg",
    ]
    .map(String::from)
    .into_iter()
    .chain(UNITS.map(|u| format!("lib/systemd/system/{u}")))
    .collect();
    expected.sort();
    assert_eq!(
        files_under(&dir.0),
        expected
            .iter()
            .map(|f| format!("usr/local/{f}"))
            .collect::<Vec<_>>()
    );
    for exe in ["bin/echo-reactor", "bin/echo-reactor-per-core"] {
        assert!(is_executable(&root.join(exe)), "{exe} is not executable");
    }
    let version = Command::new(root.join("bin/echo-reactor"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("echo-reactor "));

    // Generated from the flags' definition: each names every flag.
    let man = read(&root.join("share/man/man1/echo-reactor.1"));
    let bash = read(&root.join("share/bash-completion/completions/echo-reactor"));
    let zsh = read(&root.join("share/zsh/site-functions/_echo-reactor"));
    let fish = read(&root.join("share/fish/vendor_completions.d/echo-reactor.fish"));
    assert!(
        man.starts_with(".ie") && man.contains(".TH echo-reactor 1"),
        "{man}"
    );
    for flag in flags() {
        // roff writes a dash as `\-`.
        let in_man = format!("\\fB\\-\\-{}\\fR", flag.replace('-', "\\-"));
        assert!(man.contains(&in_man), "the man page lacks --{flag}");
        assert!(bash.contains(&format!("--{flag}")), "bash lacks --{flag}");
        // A repeatable flag is `'*--flag` in zsh.
        let in_zsh = [format!("'--{flag}"), format!("'*--{flag}")];
        assert!(in_zsh.iter().any(|f| zsh.contains(f)), "zsh lacks --{flag}");
        assert!(fish.contains(&format!("-l {flag}")), "fish lacks --{flag}");
    }
    for section in ["SIGUSR1", "RUST_LOG", "LISTEN_FDS", "quit"] {
        assert!(
            man.contains(section),
            "the man page never mentions {section}"
        );
    }
    // Units and docs are the shipped files; with PREFIX=/usr/local the
    // units name the binary where the shipped ones do.
    for unit in UNITS {
        let installed = read(&root.join("lib/systemd/system").join(unit));
        assert_eq!(
            installed,
            read(&manifest_dir().join("contrib").join(unit)),
            "{unit}"
        );
    }
    let license = read(&root.join("share/doc/echo-reactor/LICENSE"));
    assert!(license.starts_with("MIT License"), "{license}");

    make("uninstall", &[destdir, "PREFIX=/usr/local".into()]);
    assert_eq!(
        files_under(&dir.0),
        Vec::<String>::new(),
        "left after uninstall"
    );
}

#[test]
fn units_installed_under_another_prefix_name_its_binary() {
    let dir = TempDir::new("install-usr");
    make(
        "install",
        &[format!("DESTDIR={}", dir.0.display()), "PREFIX=/usr".into()],
    );
    for unit in UNITS {
        let text = read(&dir.0.join("usr/lib/systemd/system").join(unit));
        assert!(!text.contains("/usr/local"), "{unit}:\n{text}");
        if unit.ends_with(".service") {
            assert!(
                text.contains("ExecStart=/usr/bin/echo-reactor "),
                "{unit}:\n{text}"
            );
        }
    }
}

/// `systemd-analyze verify` on the units as installed: their ExecStart
/// names the installed binary, and their Documentation= the installed man
/// page (MANPATH points at it). Warnings fail the test too.
#[test]
fn installed_units_pass_systemd_analyze_verify() {
    // A missing tool fails the test rather than passing it unchecked, as
    // for haproxy: `make test-deps` installs it.
    let analyze = which("systemd-analyze").unwrap_or_else(|| {
        panic!(
            "systemd-analyze is not installed, so the units cannot be verified \
             (apt-get install systemd; `make test-deps` does)"
        )
    });
    let dir = TempDir::new("install-units");
    let prefix = dir.0.join("usr/local");
    make("install", &[format!("PREFIX={}", prefix.display())]);
    let units = prefix.join("lib/systemd/system");
    // What is verified is what is shipped, the binary's path aside.
    let bin = prefix.join("bin/echo-reactor");
    for unit in UNITS {
        let shipped = read(&manifest_dir().join("contrib").join(unit));
        let expected = shipped.replace("/usr/local/bin/echo-reactor", &bin.to_string_lossy());
        assert_eq!(read(&units.join(unit)), expected, "{unit}");
    }
    let out = Command::new(analyze)
        .current_dir(&units)
        .args(["verify", "echo-reactor.socket", "echo-reactor.service"])
        .arg("echo-reactor-proxy.socket")
        .args(["echo-reactor@0.service", "echo-reactor@1.service"])
        .env("MANPATH", prefix.join("share/man"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
