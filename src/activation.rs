//! Socket activation: the sockets systemd (or any socket activator) passed
//! in `LISTEN_FDS`, checked before any is used.
//!
//! The protocol (sd_listen_fds(3)): `LISTEN_PID` is the pid the sockets are
//! for, `LISTEN_FDS` how many there are, from fd 3 on, and the optional
//! `LISTEN_FDNAMES` names them, colon-separated, in the same order. The
//! decision is [`plan`], pure code over the variables' values; [`inherited`]
//! reads the environment, applies the plan and turns the fds into sockets.

use std::os::fd::RawFd;

use log::warn;
use socket2::{Protocol, Socket, Type};

use crate::endpoint::SocketKind;

/// The first descriptor passed: 0, 1 and 2 are stdio.
const FIRST_FD: RawFd = 3;

/// The name (systemd `FileDescriptorName=proxy`) that makes a TCP listening
/// socket a PROXY protocol listener.
const PROXY_NAME: &str = "proxy";

/// What the environment says about passed sockets.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// No sockets passed: `LISTEN_FDS` unset or 0.
    Absent,
    /// Sockets passed to some other process; the warning says why they are
    /// not ours.
    NotOurs(String),
    /// Ours: each fd in order, with its name from `LISTEN_FDNAMES`.
    Sockets(Vec<(RawFd, Option<String>)>),
}

/// The sockets systemd (or any socket activator) passed in, when they are
/// for this process.
///
/// `Ok(None)`: no `LISTEN_FDS` for us (unset, 0, or `LISTEN_PID` not this
/// process: the latter logs a warning naming it).
/// `Err`: a message for the operator (exit 1): a count that is not a number
/// or exceeds the descriptor limit, or a socket of another kind, naming its
/// fd.
/// The variables are removed from the environment either way.
pub fn inherited() -> Result<Option<Vec<(SocketKind, Socket)>>, String> {
    let var = |name| std::env::var(name).ok();
    let (pid, fds, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
    let nofile = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map_err(|err| format!("cannot read RLIMIT_NOFILE: {err}"))?
        .0;
    let plan = plan(
        pid.as_deref(),
        fds.as_deref(),
        names.as_deref(),
        std::process::id(),
        nofile,
    );
    let passed = match plan {
        Ok(Plan::Sockets(passed)) => passed,
        Ok(Plan::NotOurs(why)) => {
            warn!("{why}");
            unset(ACTIVATION_VARS);
            return Ok(None);
        }
        Ok(Plan::Absent) => {
            unset(ACTIVATION_VARS);
            return Ok(None);
        }
        Err(message) => {
            unset(ACTIVATION_VARS);
            return Err(message);
        }
    };
    // listenfd starts at LISTEN_FDS_FIRST_FD when that is set; the protocol
    // always starts at 3, and so do the fd numbers in our messages.
    unset(&["LISTEN_FDS_FIRST_FD"]);
    // The count is checked, so the table listenfd allocates is bounded; it
    // reads LISTEN_PID and LISTEN_FDS again (both checked) and removes them.
    let mut table = listenfd::ListenFd::from_env();
    unset(ACTIVATION_VARS);
    if table.len() != passed.len() {
        return Err(format!(
            "LISTEN_FDS: expected {} sockets, the socket library found {}",
            passed.len(),
            table.len()
        ));
    }
    let mut sockets = Vec::with_capacity(passed.len());
    for (index, (fd, name)) in passed.into_iter().enumerate() {
        sockets.push(take(&mut table, index, fd, name.as_deref())?);
    }
    Ok(Some(sockets))
}

/// The variables sd_listen_fds removes when asked to (`unset`), so a child
/// process never takes them for its own.
const ACTIVATION_VARS: &[&str] = &["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

fn unset(names: &[&str]) {
    // `remove_var` is only sound while no other thread reads the
    // environment: this runs at start, while the process is still
    // single-threaded (the server never starts another thread).
    for name in names {
        std::env::remove_var(name);
    }
}

/// Fd `fd`, at `index` in the table, as a socket of a kind the server
/// serves, or a message naming the fd.
fn take(
    table: &mut listenfd::ListenFd,
    index: usize,
    fd: RawFd,
    name: Option<&str>,
) -> Result<(SocketKind, Socket), String> {
    // Each take leaves the fd in place when it is of another kind.
    let socket = match table.take_tcp_listener(index) {
        Ok(Some(listener)) => Socket::from(listener),
        _ => match table.take_udp_socket(index) {
            Ok(Some(udp)) => Socket::from(udp),
            _ => return Err(not_served(fd)),
        },
    };
    Ok((kind_of(&socket, fd, name)?, socket))
}

/// What the server does with a passed inet socket, by its type, protocol
/// and state, and its name.
fn kind_of(socket: &Socket, fd: RawFd, name: Option<&str>) -> Result<SocketKind, String> {
    let named_proxy = name == Some(PROXY_NAME);
    let protocol = socket.protocol().ok().flatten();
    match socket.r#type() {
        // accept on a socket that is not listening fails every time.
        Ok(Type::STREAM)
            if protocol == Some(Protocol::TCP) && socket.is_listener().unwrap_or(false) =>
        {
            Ok(if named_proxy {
                SocketKind::Proxy
            } else {
                SocketKind::Tcp
            })
        }
        // The protocol check keeps out ICMP (ping) sockets, also datagram.
        Ok(Type::DGRAM) if protocol == Some(Protocol::UDP) => match named_proxy {
            true => Err(format!(
                "fd {fd} passed in LISTEN_FDS is a UDP socket named `{PROXY_NAME}` in \
                 LISTEN_FDNAMES: PROXY is TCP only"
            )),
            false => Ok(SocketKind::Udp),
        },
        _ => Err(not_served(fd)),
    }
}

fn not_served(fd: RawFd) -> String {
    format!("fd {fd} passed in LISTEN_FDS is not a TCP listening socket or a UDP socket")
}

/// What to do, from the values of `LISTEN_PID`, `LISTEN_FDS` and
/// `LISTEN_FDNAMES`, this process's pid and its descriptor limit.
///
/// The pid is checked first, as sd_listen_fds does: variables for another
/// process (or with no `LISTEN_PID` at all) are not ours whatever they say.
/// The count is checked before anything is allocated for it: fds `3..3+N`
/// must all be below the descriptor limit.
pub fn plan(
    pid_var: Option<&str>,
    fds_var: Option<&str>,
    names_var: Option<&str>,
    our_pid: u32,
    nofile: u64,
) -> Result<Plan, String> {
    let Some(fds_var) = fds_var else {
        return Ok(Plan::Absent);
    };
    let not_ours = |why: String| {
        Ok(Plan::NotOurs(format!(
            "ignoring LISTEN_FDS={fds_var}: {why}; serving the sockets the flags name"
        )))
    };
    match pid_var {
        None => return not_ours("LISTEN_PID is not set".into()),
        Some(pid) if pid.parse::<u32>() != Ok(our_pid) => {
            return not_ours(format!(
                "LISTEN_PID={pid} is not this process (pid {our_pid})"
            ))
        }
        Some(_) => {}
    }
    let count: u64 = fds_var.parse().map_err(|_| {
        format!("LISTEN_FDS={fds_var:?} is not a number of sockets (a count such as 1)")
    })?;
    if count == 0 {
        return Ok(Plan::Absent);
    }
    // Descriptors are ints, whatever the limit says.
    let nofile = nofile.min(RawFd::MAX as u64);
    let fits = nofile.saturating_sub(FIRST_FD as u64);
    if count > fits {
        return Err(format!(
            "LISTEN_FDS={count} exceeds the descriptor limit: RLIMIT_NOFILE is {nofile}, \
             so at most {fits} sockets (fds 3 to {}) can have been passed",
            nofile.saturating_sub(1)
        ));
    }
    let mut names = names_var.unwrap_or_default().split(':');
    let passed = (0..count)
        .map(|i| {
            let name = names.next().filter(|_| names_var.is_some());
            (FIRST_FD + i as RawFd, name.map(str::to_string))
        })
        .collect();
    Ok(Plan::Sockets(passed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u32 = 4242;
    const NOFILE: u64 = 1024;

    fn plan_of(pid: Option<&str>, fds: Option<&str>, names: Option<&str>) -> Result<Plan, String> {
        plan(pid, fds, names, US, NOFILE)
    }

    fn fds(list: &[(RawFd, Option<&str>)]) -> Plan {
        Plan::Sockets(
            list.iter()
                .map(|(fd, name)| (*fd, name.map(str::to_string)))
                .collect(),
        )
    }

    #[test]
    fn no_count_or_zero_is_no_sockets() {
        assert_eq!(plan_of(None, None, None), Ok(Plan::Absent));
        assert_eq!(plan_of(Some("4242"), None, Some("a")), Ok(Plan::Absent));
        assert_eq!(plan_of(Some("4242"), Some("0"), None), Ok(Plan::Absent));
    }

    #[test]
    fn sockets_for_another_process_or_no_pid_are_not_ours() {
        let Ok(Plan::NotOurs(why)) = plan_of(None, Some("2"), None) else {
            panic!("an unset LISTEN_PID must not be accepted");
        };
        assert!(why.contains("LISTEN_PID is not set"), "{why}");
        let Ok(Plan::NotOurs(why)) = plan_of(Some("77"), Some("2"), None) else {
            panic!("another pid must not be accepted");
        };
        assert!(
            why.contains("LISTEN_PID=77") && why.contains("4242"),
            "{why}"
        );
        for junk in ["", "abc", "-4242", "4242x"] {
            let plan = plan_of(Some(junk), Some("1"), None);
            assert!(matches!(plan, Ok(Plan::NotOurs(_))), "{junk:?}: {plan:?}");
        }
        // Not ours even when the count is nonsense: it is not for us to judge.
        let plan = plan_of(Some("1"), Some("abc"), None);
        assert!(matches!(plan, Ok(Plan::NotOurs(_))), "{plan:?}");
    }

    #[test]
    fn a_count_that_is_not_a_number_is_refused() {
        for junk in ["abc", "", "-1", "1.5", " 1", "99999999999999999999999"] {
            let err = plan_of(Some("4242"), Some(junk), None).unwrap_err();
            assert!(err.contains("LISTEN_FDS"), "{junk:?}: {err}");
        }
    }

    #[test]
    fn a_count_beyond_the_descriptor_limit_is_refused_without_allocating() {
        let err = plan_of(Some("4242"), Some("2147483647"), None).unwrap_err();
        assert!(err.contains("LISTEN_FDS=2147483647"), "{err}");
        assert!(err.contains("1024"), "{err}");
        // fds 3..=1023 fit under a limit of 1024: 1021 of them.
        assert!(
            matches!(plan_of(Some("4242"), Some("1021"), None), Ok(Plan::Sockets(v)) if v.len() == 1021)
        );
        assert!(plan_of(Some("4242"), Some("1022"), None).is_err());
        assert!(plan(Some("1"), Some("1"), None, 1, 3).is_err());
    }

    #[test]
    fn sockets_are_numbered_from_3_and_named_in_order() {
        assert_eq!(
            plan_of(Some("4242"), Some("3"), None),
            Ok(fds(&[(3, None), (4, None), (5, None)]))
        );
        assert_eq!(
            plan_of(Some("4242"), Some("3"), Some("web:proxy:dns")),
            Ok(fds(&[
                (3, Some("web")),
                (4, Some("proxy")),
                (5, Some("dns"))
            ]))
        );
        // Fewer names than sockets: the rest are unnamed; extra names are
        // ignored.
        assert_eq!(
            plan_of(Some("4242"), Some("2"), Some("proxy")),
            Ok(fds(&[(3, Some("proxy")), (4, None)]))
        );
        assert_eq!(
            plan_of(Some("4242"), Some("1"), Some("a:proxy")),
            Ok(fds(&[(3, Some("a"))]))
        );
        assert_eq!(
            plan_of(Some("4242"), Some("2"), Some(":proxy")),
            Ok(fds(&[(3, Some("")), (4, Some("proxy"))]))
        );
    }

    /// The checks after listenfd's, on sockets the test makes.
    #[test]
    fn each_kind_of_socket_is_served_or_refused_naming_its_fd() {
        use socket2::Domain;
        let new = |domain, ty, protocol| Socket::new(domain, ty, protocol).unwrap();
        let listening = new(Domain::IPV6, Type::STREAM, None);
        listening
            .bind(&"[::1]:0".parse::<std::net::SocketAddr>().unwrap().into())
            .unwrap();
        listening.listen(8).unwrap();
        assert_eq!(kind_of(&listening, 3, None), Ok(SocketKind::Tcp));
        assert_eq!(kind_of(&listening, 3, Some("web")), Ok(SocketKind::Tcp));
        assert_eq!(kind_of(&listening, 3, Some("proxy")), Ok(SocketKind::Proxy));
        let udp = new(Domain::IPV4, Type::DGRAM, None);
        assert_eq!(kind_of(&udp, 4, None), Ok(SocketKind::Udp));
        let err = kind_of(&udp, 4, Some("proxy")).unwrap_err();
        assert!(
            err.starts_with("fd 4 passed in LISTEN_FDS ") && err.contains("TCP only"),
            "{err}"
        );
        let expected = "fd 5 passed in LISTEN_FDS is not a TCP listening socket or a UDP socket";
        let not_listening = new(Domain::IPV4, Type::STREAM, None);
        assert_eq!(kind_of(&not_listening, 5, None), Err(expected.to_string()));
        let unix = new(Domain::UNIX, Type::STREAM, None);
        assert_eq!(kind_of(&unix, 5, None), Err(expected.to_string()));
    }
}
