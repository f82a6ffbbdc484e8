//! Test data: deterministic byte streams and random numbers (no extra
//! crates) and chunking-independent stream hashes. The quit rule's reference
//! is in `quit_reference.rs`.

/// A deterministic byte stream (xorshift64*) covering every byte value, so
/// large payloads need no storage: the sender and the checker regenerate it.
#[derive(Clone)]
pub struct Payload(u64);

impl Payload {
    pub fn new(seed: u64) -> Self {
        Payload(seed.max(1))
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.fill(&mut buf);
        buf
    }
}

/// FNV-1a over a stream, plus its length: equal digests of two streams fed
/// in different chunkings mean equal bytes (up to a 64-bit collision).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Digest {
    pub len: u64,
    pub hash: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            len: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl Digest {
    pub fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        for &b in bytes {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn of(bytes: &[u8]) -> Digest {
        let mut d = Digest::default();
        d.update(bytes);
        d
    }
}

/// Deterministic bytes with no line starting with `quit` (there are no
/// newlines at all), different for each `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// SplitMix64: tiny, fast, good enough for test data and schedules.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6a09_e667_f3bc_c909)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Log-uniform in 1..=max: small sizes are as common as large ones.
    pub fn log_size(&mut self, max: u64) -> u64 {
        let bits = 64 - max.leading_zeros() as u64; // 1..=64
        let b = self.range(0, bits - 1);
        let lo = 1u64 << b;
        let hi = ((lo << 1) - 1).min(max);
        self.range(lo, hi)
    }

    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let w = self.next_u64().to_le_bytes();
            let n = rest.len();
            rest.copy_from_slice(&w[..n]);
        }
    }
}

/// Random bytes with every `q` replaced, so the quit rule never triggers.
pub fn qfree_fill(rng: &mut Rng, out: &mut [u8]) {
    rng.fill(out);
    for b in out.iter_mut() {
        if *b == b'q' {
            *b = b'Q';
        }
    }
}

/// Chunking-independent 64-bit stream hash (word-wise, with a tail buffer).
#[derive(Clone)]
pub struct StreamHash {
    h: u64,
    tail: [u8; 8],
    n: usize,
    pub len: u64,
}

impl Default for StreamHash {
    fn default() -> Self {
        StreamHash {
            h: 0xcbf2_9ce4_8422_2325,
            tail: [0; 8],
            n: 0,
            len: 0,
        }
    }
}

impl StreamHash {
    #[inline]
    fn mix(&mut self, w: u64) {
        self.h = (self.h.rotate_left(23) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.n > 0 {
            let take = (8 - self.n).min(data.len());
            self.tail[self.n..self.n + take].copy_from_slice(&data[..take]);
            self.n += take;
            data = &data[take..];
            if self.n < 8 {
                return;
            }
            let w = u64::from_le_bytes(self.tail);
            self.mix(w);
            self.n = 0;
        }
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.n = rest.len();
    }

    pub fn finish(&self) -> u64 {
        let mut c = self.clone();
        let mut t = [0u8; 8];
        t[..c.n].copy_from_slice(&c.tail[..c.n]);
        c.mix(u64::from_le_bytes(t));
        c.mix(c.len);
        c.h ^ (c.h >> 29)
    }
}
