//! The quit rule, as pure code over byte chunks.
//!
//! A *line* is the bytes after the start of the stream or after a `\n`. A line
//! whose first four bytes are `quit` ends the session: every byte before that
//! line is echoed, nothing from it on. TCP may split the stream anywhere, so
//! up to three bytes at a line start that could still become `quit` are held
//! back until the next chunk decides; they are a prefix of `quit`, so the
//! filter only needs to remember how many there are.

const QUIT: &[u8; 4] = b"quit";

/// The filter's position in the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a line start with this many bytes of `quit` matched (and held).
    LineStart(u8),
    /// Past the point where this line could become `quit`.
    MidLine,
    /// A quit line was seen; nothing more is echoed.
    Quit,
}

/// What one chunk turns into.
#[derive(Debug, PartialEq, Eq)]
pub struct Filtered<'a> {
    /// Bytes held back from earlier chunks, now known not to start `quit`.
    /// They go out before `echo`.
    pub released: &'static [u8],
    /// The part of the chunk to echo now.
    pub echo: &'a [u8],
    /// A quit line was seen: close after echoing `released` and `echo`.
    pub quit: bool,
}

/// Applies the quit rule to a stream fed chunk by chunk.
#[derive(Debug, Clone)]
pub struct QuitFilter {
    state: State,
}

impl Default for QuitFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl QuitFilter {
    pub fn new() -> Self {
        QuitFilter {
            state: State::LineStart(0),
        }
    }

    /// Filters the next chunk of the stream. Output for it is
    /// `released` followed by `echo`.
    pub fn feed<'a>(&mut self, chunk: &'a [u8]) -> Filtered<'a> {
        let held_before = match self.state {
            State::LineStart(n) => n as usize,
            State::MidLine => 0,
            State::Quit => {
                return Filtered {
                    released: b"",
                    echo: b"",
                    quit: true,
                }
            }
        };
        let mut released: &'static [u8] = b"";
        // Where the current line starts in this chunk; 0 when it began in an
        // earlier chunk (its held bytes are then accounted for by `released`).
        let mut line_start = 0;
        let mut pos = 0;
        while pos < chunk.len() {
            match self.state {
                State::LineStart(matched) => {
                    let matched = matched as usize;
                    if chunk[pos] == QUIT[matched] {
                        pos += 1;
                        if matched + 1 == QUIT.len() {
                            self.state = State::Quit;
                            return Filtered {
                                released,
                                echo: &chunk[..line_start],
                                quit: true,
                            };
                        }
                        self.state = State::LineStart(matched as u8 + 1);
                    } else {
                        if line_start == 0 && held_before > 0 {
                            released = &QUIT[..held_before];
                        }
                        self.state = State::MidLine;
                    }
                }
                State::MidLine => match memchr::memchr(b'\n', &chunk[pos..]) {
                    Some(offset) => {
                        pos += offset + 1;
                        line_start = pos;
                        self.state = State::LineStart(0);
                    }
                    None => pos = chunk.len(),
                },
                State::Quit => unreachable!("returned when the quit line completed"),
            }
        }
        // The chunk ends inside a line start that may still become `quit`:
        // hold those bytes back.
        let echo_end = match self.state {
            State::LineStart(n) if n > 0 => line_start,
            _ => chunk.len(),
        };
        Filtered {
            released,
            echo: &chunk[..echo_end],
            quit: false,
        }
    }

    /// The stream ended: returns the bytes still held back, which never
    /// became `quit` and so are echoed.
    pub fn finish(&mut self) -> &'static [u8] {
        match std::mem::replace(&mut self.state, State::MidLine) {
            State::LineStart(n) => &QUIT[..n as usize],
            State::MidLine | State::Quit => b"",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rule stated directly over the whole stream: echo up to the first
    /// line that starts with `quit`.
    fn reference(stream: &[u8]) -> (Vec<u8>, bool) {
        let mut start = 0;
        loop {
            if stream[start..].starts_with(QUIT) {
                return (stream[..start].to_vec(), true);
            }
            match stream[start..].iter().position(|&b| b == b'\n') {
                Some(i) => start += i + 1,
                None => return (stream.to_vec(), false),
            }
        }
    }

    /// Runs the filter over `chunks` and returns everything it echoed
    /// (including held bytes at end of stream) and whether it quit.
    fn run(chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut filter = QuitFilter::new();
        let mut out = Vec::new();
        for chunk in chunks {
            let f = filter.feed(chunk);
            out.extend_from_slice(f.released);
            out.extend_from_slice(f.echo);
            if f.quit {
                return (out, true);
            }
        }
        out.extend_from_slice(filter.finish());
        (out, false)
    }

    /// Every way to cut `stream` into two and into three pieces.
    fn assert_all_splits(stream: &[u8]) {
        let expected = reference(stream);
        assert_eq!(run(&[stream]), expected, "unsplit {:?}", stream);
        for i in 0..=stream.len() {
            let (a, b) = stream.split_at(i);
            assert_eq!(run(&[a, b]), expected, "split {i} of {:?}", stream);
            for j in i..=stream.len() {
                let (b, c) = stream[i..].split_at(j - i);
                assert_eq!(run(&[a, b, c]), expected, "split {i},{j} of {:?}", stream);
            }
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&bytes), expected, "byte by byte {:?}", stream);
    }

    const CASES: &[&[u8]] = &[
        b"",
        b"hello\n",
        b"quit\n",
        b"quit",
        b"quit it\n",
        b"hello \nlofa\nquit it\n",
        b"hey there\r\nquit doing that!\r\n",
        b"xquit\n",
        b" quit\n",
        b"QUIT\n",
        b"quiet\n",
        b"qui",
        b"qu",
        b"q",
        b"q\nqu\nqui\nquiz\nquit",
        b"qqquit\nquit",
        b"\n\nquit",
        b"line one\nqui\nline three\nquit\nafter quit\n",
        b"\0\xff\x00quit\n\xffquit\n",
        b"quitquit",
        b"no newline at all quit",
    ];

    #[test]
    fn every_split_of_every_case_matches_the_reference() {
        for case in CASES {
            assert_all_splits(case);
        }
    }

    #[test]
    fn seed_session_echoes_until_quit() {
        assert_eq!(
            run(&[b"hello \n", b"lofa\n", b"quit it\n"]),
            (b"hello \nlofa\n".to_vec(), true)
        );
    }

    #[test]
    fn telnet_crlf_echoes_first_line_and_quits() {
        assert_eq!(
            run(&[b"hey there\r\nquit doing that!\r\n"]),
            (b"hey there\r\n".to_vec(), true)
        );
    }

    #[test]
    fn quit_split_across_segments_quits() {
        assert_eq!(run(&[b"qu", b"it\n"]), (Vec::new(), true));
        assert_eq!(run(&[b"q", b"u", b"i", b"t"]), (Vec::new(), true));
    }

    #[test]
    fn words_that_are_not_quit_are_echoed() {
        for line in [&b"xquit\n"[..], b" quit\n", b"QUIT\n", b"quiet\n"] {
            assert_eq!(run(&[line]), (line.to_vec(), false));
        }
    }

    #[test]
    fn held_prefix_is_not_echoed_until_decided() {
        let mut filter = QuitFilter::new();
        let f = filter.feed(b"ab\nqu");
        assert_eq!(
            (f.released, f.echo, f.quit),
            (&b""[..], &b"ab\n"[..], false)
        );
        let f = filter.feed(b"ack\n");
        assert_eq!(
            (f.released, f.echo, f.quit),
            (&b"qu"[..], &b"ack\n"[..], false)
        );
    }

    #[test]
    fn held_prefix_is_echoed_at_end_of_stream() {
        let mut filter = QuitFilter::new();
        assert_eq!(filter.feed(b"qui").echo, b"");
        assert_eq!(filter.finish(), b"qui");
        assert_eq!(filter.finish(), b"", "finish releases held bytes once");
    }

    #[test]
    fn nothing_is_echoed_after_quit() {
        let mut filter = QuitFilter::new();
        assert!(filter.feed(b"quit\n").quit);
        let f = filter.feed(b"more\n");
        assert_eq!((f.released, f.echo, f.quit), (&b""[..], &b""[..], true));
        assert_eq!(filter.finish(), b"");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_split_gives_the_reference_output(
            stream in proptest::collection::vec(
                prop_oneof![
                    Just(b'q'), Just(b'u'), Just(b'i'), Just(b't'),
                    Just(b'\n'), Just(b'\r'), Just(b' '), any::<u8>(),
                ],
                0..64,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for cut in cuts {
                chunks.push(&stream[prev..cut]);
                prev = cut;
            }
            chunks.push(&stream[prev..]);
            prop_assert_eq!(run(&chunks), reference(&stream));
        }
    }
}
