//! The checker's first step ([`super::check`]): a 64-byte block classified into bit masks,
//! one bit per byte, with AVX2 or SSE2 (a portable version for the tests and other
//! processors).

/// Bit i set where byte i of a 64-byte block is: `"`; blank (space, tab, CR, LF); one of
/// `{}[]:,`; a control byte or one over 0x7f (tab, CR and LF included); a backslash.
#[derive(Clone, Copy)]
pub(super) struct Masks {
    pub(super) quote: u64,
    pub(super) blank: u64,
    pub(super) structural: u64,
    pub(super) control: u64,
    pub(super) backslash: u64,
}

// The classifiers are kept out of line: inlined into the token loop, LLVM turned their masks
// into vectors of single bits and took them apart one by one (five times slower).
#[cfg(target_arch = "x86_64")]
#[inline(never)]
pub(super) fn classify_sse2(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    let mut m = [0u64; 5];
    // SAFETY: SSE2 is part of the x86_64 baseline; the loads read 16 bytes inside `block`.
    unsafe {
        for i in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * i).cast::<__m128i>());
            let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            let low = _mm_or_si128(v, _mm_set1_epi8(0x20));
            let control = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)); // signed: bytes > 0x7f too
            let blank = _mm_or_si128(
                _mm_or_si128(eq(b' '), eq(b'\t')),
                _mm_or_si128(eq(b'\n'), eq(b'\r')),
            );
            let structural = _mm_or_si128(
                _mm_or_si128(
                    _mm_cmpeq_epi8(low, _mm_set1_epi8(b'{' as i8)),
                    _mm_cmpeq_epi8(low, _mm_set1_epi8(b'}' as i8)),
                ),
                _mm_or_si128(eq(b':'), eq(b',')),
            );
            let bits = [eq(b'"'), blank, structural, control, eq(b'\\')];
            for (k, b) in bits.into_iter().enumerate() {
                m[k] |= (_mm_movemask_epi8(b) as u16 as u64) << (16 * i);
            }
        }
    }
    Masks {
        quote: m[0],
        blank: m[1],
        structural: m[2],
        control: m[3],
        backslash: m[4],
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
pub(super) unsafe fn classify_avx2(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    let (mut quote, mut blank, mut structural, mut control, mut backslash) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for half in 0..2 {
        // SAFETY: the load reads 32 bytes inside `block`.
        let v = unsafe { _mm256_loadu_si256(block.as_ptr().add(32 * half).cast::<__m256i>()) };
        let low = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
        let q = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8));
        let bs = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
        // Signed: bytes over 0x7f count as control bytes too.
        let ctl = _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), v);
        let bl = _mm256_or_si256(
            _mm256_or_si256(
                _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b' ' as i8)),
                _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\t' as i8)),
            ),
            _mm256_or_si256(
                _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\n' as i8)),
                _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\r' as i8)),
            ),
        );
        let st = _mm256_or_si256(
            _mm256_or_si256(
                _mm256_cmpeq_epi8(low, _mm256_set1_epi8(b'{' as i8)),
                _mm256_cmpeq_epi8(low, _mm256_set1_epi8(b'}' as i8)),
            ),
            _mm256_or_si256(
                _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b':' as i8)),
                _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b',' as i8)),
            ),
        );
        let shift = 32 * half;
        quote |= (_mm256_movemask_epi8(q) as u32 as u64) << shift;
        backslash |= (_mm256_movemask_epi8(bs) as u32 as u64) << shift;
        control |= (_mm256_movemask_epi8(ctl) as u32 as u64) << shift;
        blank |= (_mm256_movemask_epi8(bl) as u32 as u64) << shift;
        structural |= (_mm256_movemask_epi8(st) as u32 as u64) << shift;
    }
    Masks {
        quote,
        blank,
        structural,
        control,
        backslash,
    }
}

#[cfg(any(test, not(target_arch = "x86_64")))]
pub(super) fn classify_portable(block: &[u8; 64]) -> Masks {
    let mut m = Masks {
        quote: 0,
        blank: 0,
        structural: 0,
        control: 0,
        backslash: 0,
    };
    for (i, &b) in block.iter().enumerate() {
        let bit = 1u64 << i;
        match b {
            b'"' => m.quote |= bit,
            b'\\' => m.backslash |= bit,
            b' ' => m.blank |= bit,
            b'\t' | b'\n' | b'\r' => {
                m.blank |= bit;
                m.control |= bit;
            }
            b'{' | b'}' | b'[' | b']' | b':' | b',' => m.structural |= bit,
            _ if !(0x20..=0x7f).contains(&b) => m.control |= bit,
            _ => {}
        }
    }
    m
}
