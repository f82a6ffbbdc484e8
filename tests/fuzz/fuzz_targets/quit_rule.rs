//! For any byte stream cut into any chunks, the quit rule echoes what it
//! echoes for the unsplit stream, and that is what the rule says: everything
//! before the first line that starts with `quit`.
#![no_main]
#![forbid(unsafe_code)]

use echo_reactor::quit::QuitFilter;
use libfuzzer_sys::fuzz_target;

// The integration tests' reference of the rule: one statement of it for
// every test.
#[path = "../../common/quit_reference.rs"]
mod quit_reference;

use quit_reference::{has_quit_line, quit_reference};

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
    assert_eq!(split, quit_reference(stream));
    assert_eq!(split.1, has_quit_line(stream), "quit flag vs has_quit_line");
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
