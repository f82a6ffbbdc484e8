//! For any byte stream cut into any chunks, the quit rule echoes what it
//! echoes for the unsplit stream, and that is what the rule says: everything
//! before the first line that starts with `quit`.
#![no_main]
#![forbid(unsafe_code)]

use echo_reactor::quit::QuitFilter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte says how many cut lengths follow; the rest is the stream.
    let Some((&cut_count, rest)) = data.split_first() else {
        return;
    };
    let (cut_lengths, stream) = rest.split_at(rest.len().min(usize::from(cut_count % 16)));
    let mut chunks = Vec::new();
    let mut tail = stream;
    for &length in cut_lengths {
        let (chunk, after) = tail.split_at(tail.len().min(usize::from(length)));
        chunks.push(chunk);
        tail = after;
    }
    chunks.push(tail);

    let split = echo(&chunks);
    assert_eq!(
        split,
        echo(&[stream]),
        "output depends on how the stream was cut"
    );
    assert_eq!(split, reference(stream));
});

/// What the filter echoes for the stream fed as `chunks`, and whether it quit.
fn echo(chunks: &[&[u8]]) -> (Vec<u8>, bool) {
    let mut filter = QuitFilter::new();
    let mut out = Vec::new();
    for chunk in chunks {
        let filtered = filter.feed(chunk);
        out.extend_from_slice(filtered.released);
        out.extend_from_slice(filtered.echo);
        if filtered.quit {
            return (out, true);
        }
    }
    out.extend_from_slice(filter.finish());
    (out, false)
}

/// The rule stated directly: echo up to the first line starting with `quit`.
fn reference(stream: &[u8]) -> (Vec<u8>, bool) {
    let mut line_start = 0;
    loop {
        if stream[line_start..].starts_with(b"quit") {
            return (stream[..line_start].to_vec(), true);
        }
        match stream[line_start..].iter().position(|&b| b == b'\n') {
            Some(newline) => line_start += newline + 1,
            None => return (stream.to_vec(), false),
        }
    }
}
