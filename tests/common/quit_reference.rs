//! The quit rule written plainly, as the reference the server's echo is
//! checked against: everything before the first line that starts with
//! `quit`. The one copy for every test: the integration tests have it
//! through `common`, the libFuzzer target (`tests/fuzz`) includes this file,
//! so it needs nothing but std.

/// Expected echo of a whole client stream under the quit rule:
/// (bytes echoed, whether the stream held a quit line). When there is no
/// quit line the held-back prefix is echoed at end of stream, so the echo is
/// the whole input.
pub fn quit_reference(input: &[u8]) -> (Vec<u8>, bool) {
    let mut start = 0;
    loop {
        if input[start..].starts_with(b"quit") {
            return (input[..start].to_vec(), true);
        }
        match input[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start += i + 1,
            None => return (input.to_vec(), false),
        }
    }
}

/// Whether `bytes` (a whole stream) has a line starting with `quit`; such a
/// payload would end the session under the quit rule.
pub fn has_quit_line(bytes: &[u8]) -> bool {
    bytes.starts_with(b"quit") || bytes.windows(5).any(|w| w == b"\nquit")
}
