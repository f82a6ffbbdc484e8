//! Property test (many cases) of the quit rule through
//! `echo_reactor::quit::QuitFilter`: for any byte stream and any split of it
//! into chunks, the output (`released ++ echo` of each feed, plus `finish()`
//! when no quit was seen) equals the output of the unsplit stream and equals
//! a plain reference implementation. Also checked: bytes are released as
//! early as the rule allows (at most a `q`/`qu`/`qui` at a line start is held
//! back), and nothing comes out after a quit.
//!
//! Cases: 20000 per property by default; `PROPTEST_CASES=N` overrides.

mod common;

use common::quit_reference;
use echo_reactor::quit::QuitFilter;
use proptest::prelude::*;

/// What may have been echoed once exactly `prefix` has arrived (stream not
/// ended): everything before a quit line; otherwise everything except a
/// trailing `q`, `qu` or `qui` at a line start, which is still undecided.
fn reference_so_far(prefix: &[u8]) -> Vec<u8> {
    let (out, quit) = quit_reference(prefix);
    if quit {
        return out;
    }
    let line_start = prefix
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let tail = &prefix[line_start..];
    if !tail.is_empty() && tail.len() < 4 && b"quit".starts_with(tail) {
        prefix[..line_start].to_vec()
    } else {
        prefix.to_vec()
    }
}

struct Run {
    output: Vec<u8>,
    quit: bool,
}

/// Feed the chunks, checking every step, and return the whole output.
fn run(input: &[u8], cuts: &[usize]) -> Run {
    let mut f = QuitFilter::new();
    let mut output = Vec::new();
    let mut quit = false;
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&input.len())) {
        let chunk = &input[from..to];
        let r = f.feed(chunk);
        if quit {
            assert!(
                r.quit && r.released.is_empty() && r.echo.is_empty(),
                "output after quit: released {:?} echo {:?} quit {}",
                r.released,
                r.echo,
                r.quit
            );
        }
        assert!(
            r.released.len() <= 3 && b"quit".starts_with(r.released),
            "released {:?} is not a held-back prefix of quit",
            r.released
        );
        output.extend_from_slice(r.released);
        output.extend_from_slice(r.echo);
        quit |= r.quit;
        // Eager release: after each feed the output is exactly what the rule
        // allows for the bytes seen so far.
        assert_eq!(
            output,
            reference_so_far(&input[..to]),
            "after feeding up to byte {to} of {input:?} (cuts {cuts:?})"
        );
        from = to;
    }
    if !quit {
        output.extend_from_slice(f.finish());
    }
    Run { output, quit }
}

fn check(input: &[u8], cuts: &[usize]) {
    let (expected, expected_quit) = quit_reference(input);
    let whole = run(input, &[]);
    let split = run(input, cuts);
    assert_eq!(whole.output, expected, "unsplit {input:?}");
    assert_eq!(whole.quit, expected_quit, "unsplit quit flag {input:?}");
    assert_eq!(split.output, whole.output, "split {cuts:?} of {input:?}");
    assert_eq!(
        split.quit, whole.quit,
        "split quit flag {cuts:?} of {input:?}"
    );
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// Bytes biased toward the ones that matter to the rule.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        8 => prop::sample::select(b"quit\n\r x".to_vec()),
        1 => any::<u8>(),
    ]
}

/// Streams built from rule-shaped tokens (partial and whole `quit`, newlines).
fn token_stream() -> impl Strategy<Value = Vec<u8>> {
    let tokens: Vec<&'static [u8]> = vec![
        b"quit", b"qui", b"qu", b"q", b"uit", b"it", b"t", b"\n", b"\r\n", b"x", b"quix", b" ",
        b"\nquit", b"qquit", b"\n\n",
    ];
    prop::collection::vec(prop::sample::select(tokens), 0..40).prop_map(|v| v.concat())
}

/// A stream and sorted cut points (repeats give empty chunks).
fn stream_and_cuts(
    stream: impl Strategy<Value = Vec<u8>>,
) -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    stream.prop_flat_map(|input| {
        let len = input.len();
        let cuts = prop::collection::vec(0..=len, 0..24).prop_map(|mut c| {
            c.sort_unstable();
            c
        });
        (Just(input), cuts)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn any_split_of_biased_bytes_matches(
        (input, cuts) in stream_and_cuts(prop::collection::vec(byte(), 0..300))
    ) {
        check(&input, &cuts);
    }

    #[test]
    fn any_split_of_token_streams_matches(
        (input, cuts) in stream_and_cuts(token_stream())
    ) {
        check(&input, &cuts);
    }

    #[test]
    fn single_byte_chunks_match(input in prop::collection::vec(byte(), 0..80)) {
        let cuts: Vec<usize> = (1..input.len()).collect();
        check(&input, &cuts);
    }
}

/// Exhaustive: every stream over {q,u,i,t,\n,x} up to 5 bytes, every split.
#[test]
fn every_split_of_every_short_stream() {
    let alphabet = b"quit\nx";
    let mut count = 0u64;
    for len in 0..=5u32 {
        for code in 0..alphabet.len().pow(len) {
            let mut c = code;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    let b = alphabet[c % alphabet.len()];
                    c /= alphabet.len();
                    b
                })
                .collect();
            let gaps = len.saturating_sub(1);
            for mask in 0..(1u32 << gaps) {
                let cuts: Vec<usize> = (0..gaps as usize)
                    .filter(|k| mask & (1 << k) != 0)
                    .map(|k| k + 1)
                    .collect();
                check(&input, &cuts);
                count += 1;
            }
        }
    }
    assert!(count > 100_000);
}

#[test]
fn reference_examples() {
    assert_eq!(
        quit_reference(b"hello\nquit\nmore"),
        (b"hello\n".to_vec(), true)
    );
    assert_eq!(quit_reference(b"quit"), (Vec::new(), true));
    assert_eq!(
        quit_reference(b"xquit\nquix"),
        (b"xquit\nquix".to_vec(), false)
    );
    assert_eq!(quit_reference(b"a\nqui"), (b"a\nqui".to_vec(), false));
    assert_eq!(reference_so_far(b"a\nqui"), b"a\n".to_vec());
    assert_eq!(reference_so_far(b"a\nquix"), b"a\nquix".to_vec());
    assert_eq!(reference_so_far(b"\r\nq"), b"\r\n".to_vec());
}
