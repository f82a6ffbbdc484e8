//! The headers are written out by hand (not with ppp's builder), so these
//! tests check ppp and the layer above it against the specification.

use super::*;

const V1_TCP4: &[u8] = b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 7007\r\n";
const V1_TCP6: &[u8] = b"PROXY TCP6 2001:db8::9 ::1 65535 7007\r\n";
const V1_UNKNOWN: &[u8] = b"PROXY UNKNOWN\r\n";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header: version 2 and `command`, `family_protocol`, then `payload`
/// (addresses and TLVs) after its big-endian length.
fn v2(command: u8, family_protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x20 | command);
    out.push(family_protocol);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const PROXY: u8 = 1;
const LOCAL: u8 = 0;
const TCP4: u8 = 0x11;
const TCP6: u8 = 0x21;

fn v2_ipv4() -> Vec<u8> {
    // 203.0.113.9:5555 -> 127.0.0.1:7007
    v2(
        PROXY,
        TCP4,
        &[203, 0, 113, 9, 127, 0, 0, 1, 0x15, 0xb3, 0x1b, 0x5f],
    )
}

fn v2_ipv6() -> Vec<u8> {
    // [2001:db8::9]:5555 -> [::1]:7007
    let mut payload = vec![0x20, 0x01, 0x0d, 0xb8];
    payload.extend([0; 11]);
    payload.push(9);
    payload.extend([0; 15]);
    payload.push(1);
    payload.extend([0x15, 0xb3, 0x1b, 0x5f]);
    v2(PROXY, TCP6, &payload)
}

fn v2_local() -> Vec<u8> {
    v2(LOCAL, 0x00, &[])
}

/// IPv4 addresses, then an ALPN TLV (`h2`) and a NOOP TLV of 3 bytes.
fn v2_with_tlvs() -> Vec<u8> {
    let mut payload = vec![203, 0, 113, 9, 127, 0, 0, 1, 0x15, 0xb3, 0x1b, 0x5f];
    payload.extend([0x01, 0, 2, b'h', b'2']);
    payload.extend([0x04, 0, 3, 0, 0, 0]);
    v2(PROXY, TCP4, &payload)
}

fn proxied(source: &str, destination: &str) -> Addresses {
    Addresses::Proxied {
        source: source.parse().unwrap(),
        destination: destination.parse().unwrap(),
    }
}

fn complete(bytes: &[u8]) -> Header {
    match parse(bytes) {
        Parsed::Complete(header) => header,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

fn assert_invalid(bytes: &[u8]) -> String {
    match parse(bytes) {
        Parsed::Invalid(reason) => reason,
        other => panic!("{:?} should be invalid: {other:?}", bytes),
    }
}

/// Every valid header the tests use, with what it must parse to.
fn valid_headers() -> Vec<(&'static str, Vec<u8>, u8, Addresses)> {
    vec![
        (
            "v1 TCP4",
            V1_TCP4.to_vec(),
            1,
            proxied("192.0.2.1:5555", "127.0.0.1:7007"),
        ),
        (
            "v1 TCP6",
            V1_TCP6.to_vec(),
            1,
            proxied("[2001:db8::9]:65535", "[::1]:7007"),
        ),
        ("v1 UNKNOWN", V1_UNKNOWN.to_vec(), 1, Addresses::Unknown),
        (
            "v2 IPv4",
            v2_ipv4(),
            2,
            proxied("203.0.113.9:5555", "127.0.0.1:7007"),
        ),
        (
            "v2 IPv6",
            v2_ipv6(),
            2,
            proxied("[2001:db8::9]:5555", "[::1]:7007"),
        ),
        ("v2 LOCAL", v2_local(), 2, Addresses::Local),
        (
            "v2 with TLVs",
            v2_with_tlvs(),
            2,
            proxied("203.0.113.9:5555", "127.0.0.1:7007"),
        ),
    ]
}

#[test]
fn valid_headers_parse_to_their_length_version_and_addresses() {
    for (name, bytes, version, addresses) in valid_headers() {
        let expected = Header {
            len: bytes.len(),
            version,
            addresses,
        };
        assert_eq!(parse(&bytes), Parsed::Complete(expected), "{name}");
    }
}

#[test]
fn bytes_after_the_header_are_not_part_of_it() {
    for (name, bytes, _, _) in valid_headers() {
        for tail in [
            &b"hello\n"[..],
            b"\r\n",
            b"PROXY TCP4 ",
            V2_SIGNATURE,
            &[0, 0xff],
        ] {
            let mut stream = bytes.clone();
            stream.extend_from_slice(tail);
            assert_eq!(complete(&stream).len, bytes.len(), "{name} then {tail:?}");
        }
    }
}

#[test]
fn every_prefix_of_a_valid_header_is_incomplete() {
    for (name, bytes, _, _) in valid_headers() {
        for cut in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..cut]),
                Parsed::Incomplete,
                "{name} cut after {cut} bytes: {:?}",
                String::from_utf8_lossy(&bytes[..cut])
            );
        }
    }
}

#[test]
fn the_first_bytes_of_either_signature_are_incomplete() {
    for prefix in [
        &b""[..],
        b"P",
        b"PROX",
        b"PROXY",
        b"PROXY ",
        b"PROXY T",
        b"PROXY UNK",
    ] {
        assert_eq!(parse(prefix), Parsed::Incomplete, "{prefix:?}");
    }
    for cut in 1..=V2_SIGNATURE.len() {
        assert_eq!(parse(&V2_SIGNATURE[..cut]), Parsed::Incomplete, "{cut}");
    }
}

#[test]
fn what_no_header_starts_with_is_invalid_at_once() {
    for garbage in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"hello\n",
        b"X",
        b"G",
        b"h",
        b"\n",
        b"\0",
        b"\r\r",
        b"\r\nX",
        b"\r\n\r\n\0\r\nQUIT!",
        b"PROXYX",
        b"PROXY TCP5",
        b"PROXY  TCP4",
        b"proxy TCP4",
    ] {
        assert_invalid(garbage);
    }
}

#[test]
fn v2_with_another_version_or_command_is_invalid() {
    let mut wrong_version = v2_ipv4();
    wrong_version[12] = 0x11;
    assert!(assert_invalid(&wrong_version[..16]).contains("v2"));
    let mut wrong_command = v2_ipv4();
    wrong_command[12] = 0x22;
    assert_invalid(&wrong_command[..16]);
    let mut wrong_family = v2_ipv4();
    wrong_family[13] = 0x41;
    assert_invalid(&wrong_family[..16]);
}

#[test]
fn v2_too_short_for_its_addresses_is_invalid() {
    assert_invalid(&v2(PROXY, TCP4, &[127, 0, 0, 1]));
    assert_invalid(&v2(PROXY, TCP6, &[0; 12]));
}

#[test]
fn v1_with_bad_ports_or_addresses_is_invalid() {
    for bad in [
        &b"PROXY TCP4 192.0.2.1 127.0.0.1 99999 7007\r\n"[..],
        b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 70000\r\n",
        b"PROXY TCP4 192.0.2.1 127.0.0.1 05555 7007\r\n",
        b"PROXY TCP4 192.0.2.1 127.0.0.1 -1 7007\r\n",
        b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 \r\n",
        b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 7007 \r\n",
        b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 7007\rX",
        b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 7007\n",
        b"PROXY TCP4 192.0.2.256 127.0.0.1 5555 7007\r\n",
        b"PROXY TCP4 ::1 127.0.0.1 5555 7007\r\n",
        b"PROXY TCP6 192.0.2.1 ::1 5555 7007\r\n",
    ] {
        assert_invalid(bad);
    }
    // The port cannot be good once it is too big, whatever follows.
    assert_invalid(b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 70000");
}

#[test]
fn v1_longer_than_its_limit_is_invalid() {
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(120, b'a');
    assert_invalid(&long);
}

#[test]
fn v2_declaring_more_than_max_header_is_invalid_from_the_fixed_part() {
    let mut fixed = V2_SIGNATURE.to_vec();
    fixed.extend([0x21, TCP4]);
    fixed.extend(((MAX_HEADER - V2_FIXED + 1) as u16).to_be_bytes());
    assert!(assert_invalid(&fixed).starts_with("too long"));
}

#[test]
fn v2_of_exactly_max_header_is_accepted() {
    let mut payload = vec![203, 0, 113, 9, 127, 0, 0, 1, 0x15, 0xb3, 0x1b, 0x5f];
    let noop = MAX_HEADER - V2_FIXED - payload.len() - 3;
    payload.extend([0x04]);
    payload.extend((noop as u16).to_be_bytes());
    payload.resize(MAX_HEADER - V2_FIXED, 0);
    let header = v2(PROXY, TCP4, &payload);
    assert_eq!(header.len(), MAX_HEADER);
    assert_eq!(parse(&header[..MAX_HEADER - 1]), Parsed::Incomplete);
    assert_eq!(complete(&header).len, MAX_HEADER);
}

#[test]
fn incomplete_after_max_header_bytes_is_too_long() {
    // Neither version of ppp's parser gets here (v1 stops at 107 bytes, v2
    // declares its length), so the bound is checked on its own.
    let too_long = Parsed::Invalid("too long".to_string());
    assert_eq!(bounded(Parsed::Incomplete, MAX_HEADER), too_long);
    assert_eq!(
        bounded(Parsed::Incomplete, MAX_HEADER - 1),
        Parsed::Incomplete
    );
}

#[test]
fn v2_without_ip_addresses_is_unknown() {
    let unspecified = v2(PROXY, 0x00, &[]);
    assert_eq!(complete(&unspecified).addresses, Addresses::Unknown);
    let unix = v2(PROXY, 0x31, &[0; 216]);
    assert_eq!(complete(&unix).addresses, Addresses::Unknown);
    // LOCAL is LOCAL even when it carries addresses.
    let local_with_addresses = v2(LOCAL, TCP4, &[127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2]);
    assert_eq!(complete(&local_with_addresses).addresses, Addresses::Local);
}

#[test]
fn v1_unknown_may_carry_addresses() {
    let header = b"PROXY UNKNOWN ffff:f::1 ffff:f::2 65535 65535\r\nhello";
    let parsed = complete(header);
    assert_eq!(parsed.addresses, Addresses::Unknown);
    assert_eq!(parsed.len, header.len() - 5);
}

// ---------------------------------------------------------------------------
// --proxy-trust

fn cidr(text: &str) -> Cidr {
    text.parse()
        .unwrap_or_else(|e| panic!("{text} should parse: {e}"))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn cidr_networks_contain_their_addresses() {
    let loopback = cidr("127.0.0.0/8");
    assert!(loopback.contains(ip("127.0.0.1")));
    assert!(loopback.contains(ip("127.255.255.255")));
    assert!(!loopback.contains(ip("128.0.0.0")));
    assert!(!loopback.contains(ip("10.0.0.1")));
    let ten = cidr("10.0.0.0/8");
    assert!(!ten.contains(ip("127.0.0.1")));
    assert!(ten.contains(ip("10.200.0.1")));
    let v6 = cidr("2001:db8::/32");
    assert!(v6.contains(ip("2001:db8:ffff::1")));
    assert!(!v6.contains(ip("2001:db9::1")));
    assert!(cidr("::1/128").contains(ip("::1")));
    assert!(!cidr("::1/128").contains(ip("::2")));
}

#[test]
fn a_bare_address_is_one_host() {
    let host = cidr("10.1.2.3");
    assert_eq!(host, cidr("10.1.2.3/32"));
    assert!(host.contains(ip("10.1.2.3")));
    assert!(!host.contains(ip("10.1.2.4")));
    assert_eq!(cidr("::1"), cidr("::1/128"));
}

#[test]
fn prefix_zero_contains_its_whole_family() {
    assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
    assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
    assert!(cidr("::/0").contains(ip("2001:db8::1")));
    assert!(!cidr("::/0").contains(ip("203.0.113.9")));
}

#[test]
fn ipv4_mapped_peers_match_ipv4_networks() {
    assert!(cidr("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
    assert!(!cidr("10.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
    // A mapped entry is the IPv4 network it maps.
    assert_eq!(cidr("::ffff:127.0.0.0/104"), cidr("127.0.0.0/8"));
    assert!(cidr("::ffff:10.1.2.3").contains(ip("10.1.2.3")));
}

#[test]
fn bad_cidrs_are_refused_saying_what_is_expected() {
    for bad in [
        "",
        "abc",
        "127.0.0.0/",
        "127.0.0.0/33",
        "::1/129",
        "127.0.0.0/+8",
        "127.0.0.0/8/8",
        "127.0.0/8",
        "[::1]/128",
        "localhost",
    ] {
        let error = bad.parse::<Cidr>().unwrap_err();
        assert!(
            error.contains("127.0.0.0/8") && error.contains(&format!("`{bad}`")),
            "{bad}: {error}"
        );
    }
    let error = "127.0.0.1/8".parse::<Cidr>().unwrap_err();
    assert!(error.contains("127.0.0.0/8"), "{error}");
}

#[test]
fn cidrs_display_as_written() {
    for text in ["127.0.0.0/8", "::1/128", "10.1.2.3/32", "0.0.0.0/0"] {
        assert_eq!(cidr(text).to_string(), text);
    }
}
