//! Gzip files held in memory, inflated in one call by libdeflate (C, built from source by
//! `libdeflate-sys`): on CloudTrail's log files it takes about 60% of the time of zlib-rs, the
//! fastest streaming backend (BENCHMARKS.md). A file libdeflate does not take (damaged, not
//! gzip, larger than the caller's limit) is read again through flate2's streaming decoder,
//! which reads every record before the damage and reports where it stops.

use std::ptr::NonNull;

use libdeflate_sys::{
    libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_free_decompressor,
    libdeflate_gzip_decompress_ex, libdeflate_result_LIBDEFLATE_SUCCESS,
};

/// The gzip header flag for a CRC-16 of the header.
const FHCRC: u8 = 0x02;

/// One thread's decompressor of whole gzip files (the inflate of `trailguard scan`).
pub struct Gunzip {
    d: NonNull<libdeflate_decompressor>,
}

// SAFETY: a decompressor is only used through `&mut self` (one call at a time), and libdeflate
// keeps no thread-local state.
unsafe impl Send for Gunzip {}

impl Gunzip {
    pub fn new() -> Self {
        // SAFETY: no arguments; the result is checked for null.
        let d = unsafe { libdeflate_alloc_decompressor() };
        Gunzip {
            d: NonNull::new(d).expect("libdeflate allocates a decompressor"),
        }
    }

    /// Inflates every gzip member of `gz` into `out` (grown to `limit` bytes, and left
    /// initialized for the next file). Returns how many bytes were written, or `None` when `gz`
    /// is not whole, valid gzip (a bad checksum or size, trailing bytes) or inflates to `limit`
    /// bytes or more.
    pub fn inflate(&mut self, gz: &[u8], out: &mut Vec<u8>, limit: usize) -> Option<usize> {
        // The last member's size (mod 2^32): a file too large is not tried (usually one member).
        let last = u32::from_le_bytes(*gz.last_chunk::<4>()?) as usize;
        if gz.len() < 18 || gz[..2] != [0x1f, 0x8b] || last >= limit {
            return None;
        }
        if out.len() < limit {
            out.resize(limit, 0);
        }
        let (mut read, mut used) = (0, 0);
        while read < gz.len() {
            let (mut consumed, mut written) = (0usize, 0usize);
            let (input, output) = (&gz[read..], &mut out[used..limit]);
            // libdeflate skips a header CRC (FHCRC) without checking it; flate2 checks it. A
            // member that has one is left to the stream, which reports it when it is wrong.
            if input.get(3).is_some_and(|flags| flags & FHCRC != 0) {
                return None;
            }
            // SAFETY: the pointers and lengths describe `input` and `output`, which outlive
            // the call; libdeflate writes at most `output.len()` bytes and sets both counts.
            let result = unsafe {
                libdeflate_gzip_decompress_ex(
                    self.d.as_ptr(),
                    input.as_ptr().cast(),
                    input.len(),
                    output.as_mut_ptr().cast(),
                    output.len(),
                    &mut consumed,
                    &mut written,
                )
            };
            if result != libdeflate_result_LIBDEFLATE_SUCCESS || consumed == 0 {
                return None;
            }
            read += consumed;
            used += written;
        }
        (used < limit).then_some(used)
    }
}

impl Default for Gunzip {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Gunzip {
    fn drop(&mut self) {
        // SAFETY: allocated by `libdeflate_alloc_decompressor`, freed once.
        unsafe { libdeflate_free_decompressor(self.d.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn gzip(parts: &[&[u8]]) -> Vec<u8> {
        let mut gz = Vec::new();
        for p in parts {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(p).unwrap();
            gz.extend(e.finish().unwrap());
        }
        gz
    }

    fn streamed(gz: &[u8]) -> Result<Vec<u8>, std::io::Error> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut out)
            .map(|_| out)
    }

    #[test]
    fn whole_files_inflate_as_the_streaming_decoder_reads_them() {
        let mut g = Gunzip::new();
        let mut out = Vec::new();
        let record = br#"{"Records":[{"eventName":"DisableKey","eventSource":"kms.amazonaws.com"}]}"#;
        let big: Vec<u8> = record.iter().copied().cycle().take(300_000).collect();
        for parts in [
            vec![&record[..]],
            vec![&record[..], &big[..]],
            vec![&b""[..]],
            vec![&big[..], &b""[..], &record[..]],
        ] {
            let gz = gzip(&parts);
            let n = g.inflate(&gz, &mut out, 1 << 20).expect("inflates");
            assert_eq!(out[..n], streamed(&gz).unwrap()[..], "{} members", parts.len());
        }
        // Too large for the limit, by the size in its trailer or by its members together.
        assert_eq!(g.inflate(&gzip(&[&big]), &mut out, 300_000), None);
        assert_eq!(g.inflate(&gzip(&[&big, &big]), &mut out, 400_000), None);
        assert!(g.inflate(&gzip(&[&big]), &mut out, 300_001).is_some());
    }

    /// Where libdeflate is more lenient than zlib: a dynamic Huffman block whose only code is
    /// end-of-block, written as bit 1 (zlib: "invalid literal/length code"; libdeflate decodes
    /// either bit as that one code). Only a crafted file has it; its records are read by the
    /// parallel path, and the single-threaded path reports the file (BENCHMARKS.md).
    #[test]
    fn a_single_code_huffman_block_is_read_where_zlib_refuses_it() {
        let head = "1f8b08000000000000ff04c0810800000000207feb1b";
        let mut gz: Vec<u8> = (0..head.len() / 2)
            .map(|i| u8::from_str_radix(&head[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let text = b"{\"Records\":[{\"eventName\":\"DisableKey\"}]}";
        let n = text.len() as u16;
        gz.extend(n.to_le_bytes());
        gz.extend((!n).to_le_bytes());
        gz.extend(text);
        let mut crc = flate2::Crc::new();
        crc.update(text);
        gz.extend(crc.sum().to_le_bytes());
        gz.extend((text.len() as u32).to_le_bytes());
        assert!(streamed(&gz).is_err(), "zlib refuses it");
        let mut out = Vec::new();
        let got = Gunzip::new().inflate(&gz, &mut out, 1 << 20);
        assert_eq!(got.map(|n| &out[..n]), Some(&text[..]));
    }

    #[test]
    fn damaged_files_are_left_to_the_streaming_decoder() {
        let mut g = Gunzip::new();
        let mut out = Vec::new();
        let gz = gzip(&[b"{\"Records\":[{\"a\":1},{\"b\":2}]}"]);
        let n = gz.len();
        let mut checksum = gz.clone();
        checksum[n - 5] ^= 1; // the CRC-32
        let mut size = gz.clone();
        size[n - 1] ^= 1; // the size
        let mut body = gz.clone();
        body[n / 2] ^= 0xff;
        let trailing = [gz.clone(), b"garbage".to_vec()].concat();
        let padded = [gz.clone(), vec![0; 16]].concat();
        // A header CRC, wrong (libdeflate would not check it), in the first or a later member.
        let mut header_crc = gz[..10].to_vec();
        header_crc[3] |= FHCRC;
        let header_crc = [&header_crc[..], &[0, 0], &gz[10..]].concat();
        let second_crc = [gz.clone(), header_crc.clone()].concat();
        for (what, bad) in [
            ("checksum", checksum),
            ("size", size),
            ("body", body),
            ("trailing bytes", trailing),
            ("zero padding", padded),
            ("header CRC", header_crc),
            ("second member's header CRC", second_crc),
            ("truncated", gz[..n - 3].to_vec()),
            ("not gzip", b"{\"Records\":[]}".to_vec()),
            ("empty", Vec::new()),
        ] {
            assert_eq!(g.inflate(&bad, &mut out, 1 << 20), None, "{what}");
        }
    }
}
