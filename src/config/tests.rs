use super::*;

#[test]
fn seconds_accept_fractions_and_reject_garbage() {
    assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
    assert!(parse_seconds("-1").is_err());
    assert!(parse_seconds("soon").is_err());
    assert!(parse_seconds("inf").is_err());
    assert_eq!(
        parse_seconds("31536000"),
        Ok(Duration::from_secs(31_536_000))
    );
    assert!(parse_seconds("31536001").is_err());
    assert!(parse_seconds("1e19").is_err());
}

#[test]
fn listen_takes_addresses_and_every_address_of_a_name() {
    let v6 = parse_addresses("[::1]:7007").unwrap();
    assert_eq!(v6.addrs, ["[::1]:7007".parse().unwrap()]);
    let local = parse_addresses("localhost:7007").unwrap();
    let mut expected: Vec<SocketAddr> = Vec::new();
    for addr in ("localhost", 7007).to_socket_addrs().unwrap() {
        if !expected.contains(&addr) {
            expected.push(addr);
        }
    }
    assert_eq!(local.addrs, expected);
    assert!(local.addrs.iter().all(|a| a.ip().is_loopback()));
    for bad in ["7007", "localhost", "127.0.0.1:99999"] {
        let err = parse_addresses(bad).unwrap_err();
        assert!(
            err.contains("expected IP:PORT or HOST:PORT"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn an_address_given_twice_for_one_protocol_is_refused() {
    let twice = |args: &[&str]| {
        let args = std::iter::once("echo-reactor").chain(args.iter().copied());
        Config::try_from_args(args)
            .map(|_| ())
            .map_err(|err| err.to_string())
    };
    let err = twice(&[
        "--listen",
        "127.0.0.1:7007",
        "--proxy-listen",
        "127.0.0.1:7007",
    ]);
    assert!(err.unwrap_err().contains("127.0.0.1:7007 is given twice"));
    assert!(twice(&["--listen", "127.0.0.1:7007", "--listen", "127.0.0.1:7007"]).is_err());
    // TCP and UDP may share a port; port 0 is a new port each time.
    assert_eq!(
        twice(&["--listen", "127.0.0.1:7007", "--udp", "127.0.0.1:7007"]),
        Ok(())
    );
    assert_eq!(
        twice(&["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"]),
        Ok(())
    );
}

#[test]
fn group_addresses_are_refused() {
    for bad in [
        "224.0.0.1:0",
        "239.1.1.1:7",
        "255.255.255.255:0",
        "[ff02::1]:0",
    ] {
        let err = parse_addresses(bad).unwrap_err();
        assert!(err.contains("multicast or broadcast"), "{bad}: {err}");
    }
}

#[test]
fn socket_flags_keep_their_command_line_order() {
    let config = Config::try_from_args([
        "echo-reactor",
        "--udp",
        "127.0.0.1:1",
        "--listen",
        "127.0.0.1:2",
        "--proxy-listen",
        "127.0.0.1:3",
        "--listen=127.0.0.1:4",
    ])
    .unwrap();
    let order: Vec<(SocketKind, String)> = config
        .endpoints()
        .into_iter()
        .map(|e| (e.kind, e.addresses.text))
        .collect();
    let expected = [
        (SocketKind::Udp, "127.0.0.1:1"),
        (SocketKind::Tcp, "127.0.0.1:2"),
        (SocketKind::Proxy, "127.0.0.1:3"),
        (SocketKind::Tcp, "127.0.0.1:4"),
    ];
    let expected: Vec<(SocketKind, String)> =
        expected.iter().map(|(k, t)| (*k, t.to_string())).collect();
    assert_eq!(order, expected);
}

#[test]
fn negative_values_are_rejected_naming_the_flag() {
    for (flag, value) in [("--max-buffer", "-5"), ("--idle-timeout", "-1")] {
        let err = Config::try_parse_from(["echo-reactor", flag, value]).unwrap_err();
        assert!(err.to_string().contains(flag), "{err}");
    }
}

#[test]
fn byte_counts_take_suffixes_in_powers_of_1024() {
    assert_eq!(parse_bytes("65536"), Ok(65536));
    assert_eq!(parse_bytes("64K"), Ok(65536));
    assert_eq!(parse_bytes("64k"), Ok(65536));
    assert_eq!(parse_bytes("64KiB"), Ok(65536));
    assert_eq!(parse_bytes("32M"), Ok(32 << 20));
    assert_eq!(parse_bytes("1G"), Ok(1 << 30));
    for bad in [
        "",
        "K",
        "0",
        "0K",
        "-1",
        "1.5M",
        "12T",
        "lots",
        "99999999999G",
    ] {
        assert!(parse_bytes(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn defaults_match_the_documentation() {
    let config = Config::parse_from(["echo-reactor"]);
    let endpoints = config.endpoints();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].kind, SocketKind::Tcp);
    assert_eq!(
        endpoints[0].addresses.addrs,
        ["127.0.0.1:7007".parse().unwrap()]
    );
    assert_eq!(config.keepalive, 300);
    assert!(config.proxy_trust.is_empty());
    assert_eq!(config.max_buffer, 65536);
    assert_eq!(config.max_memory, 256 << 20);
    assert_eq!(config.backlog, 4096);
    assert_eq!(config.max_connections, 10000);
    assert_eq!(config.idle_timeout, Duration::from_secs(300));
    assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
    assert!(!config.no_quit && !config.reuse_port);
}
