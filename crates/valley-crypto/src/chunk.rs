//! An object's bytes sealed in fixed-size chunks with AES-256-GCM.
//!
//! A *segment* is what one write hands over: a single PUT's body, or one part of a multipart
//! upload. It is cut into chunks of [`CHUNK_PLAIN`] bytes (the last may be shorter; an empty
//! segment is one empty chunk, so that even it carries a tag), each sealed on its own and
//! stored as its ciphertext followed by its 16-byte tag. So a range read opens only the chunks
//! it covers.
//!
//! Each chunk is bound, through the AEAD's associated data, to the object it belongs to (the
//! caller's binding: bucket, key and the version's data id), its segment, its position, and
//! whether it is the segment's last. A chunk moved to another position or object, a segment
//! cut short (its new last chunk was not sealed as last) or lengthened, or one byte altered
//! fails to open; it never yields other bytes. Marking the last chunk instead of binding the
//! segment's length lets a writer seal a body whose length it learns only at its end.
//!
//! The nonce is the segment number and chunk index: unique for the data key, which is random
//! per object version and never seals two versions.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, Tag, UnboundKey};

use crate::envelope::DataKey;
use crate::error::{CryptoError, CryptoResult};

/// Plaintext bytes per chunk: large enough that the tag costs 0.02 %, small enough that a
/// 1-byte range read opens at most 128 KiB.
pub const CHUNK_PLAIN: u64 = 64 * 1024;
/// The AES-GCM tag that follows each chunk's ciphertext.
pub const TAG_LEN: u64 = 16;
/// A full chunk as stored.
pub const CHUNK_SEALED: u64 = CHUNK_PLAIN + TAG_LEN;

const AAD_LABEL: &[u8] = b"valley/chunk/v1";

/// Where a segment's chunks lie, in plaintext and as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    plain_len: u64,
}

impl ChunkLayout {
    #[must_use]
    pub fn new(plain_len: u64) -> Self {
        Self { plain_len }
    }

    #[must_use]
    pub fn plain_len(&self) -> u64 {
        self.plain_len
    }

    /// Chunks in the segment: at least one.
    #[must_use]
    pub fn chunk_count(&self) -> u64 {
        self.plain_len.div_ceil(CHUNK_PLAIN).max(1)
    }

    /// The segment's length as stored.
    #[must_use]
    pub fn sealed_len(&self) -> u64 {
        self.plain_len + self.chunk_count() * TAG_LEN
    }

    /// Plaintext bytes in chunk `index` (`None` past the last).
    #[must_use]
    pub fn chunk_plain_len(&self, index: u64) -> Option<u64> {
        (index < self.chunk_count()).then(|| (self.plain_len - index * CHUNK_PLAIN).min(CHUNK_PLAIN))
    }

    /// The chunks a plaintext range `start..end` (within the segment) touches: the first
    /// chunk's index, and the stored byte range holding them.
    #[must_use]
    pub fn sealed_span(&self, start: u64, end: u64) -> (u64, std::ops::Range<u64>) {
        let end = end.min(self.plain_len);
        let first = (start / CHUNK_PLAIN).min(self.chunk_count() - 1);
        let last = if end > start { (end - 1) / CHUNK_PLAIN } else { first };
        let sealed_end =
            (last * CHUNK_SEALED + self.chunk_plain_len(last).unwrap_or(0) + TAG_LEN).min(self.sealed_len());
        (first, first * CHUNK_SEALED..sealed_end)
    }
}

/// Seals and opens the chunks of one segment.
#[derive(Clone)]
pub struct SegmentSealer {
    key: LessSafeKey,
    binding: Vec<u8>,
    segment: u32,
}

impl std::fmt::Debug for SegmentSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentSealer")
            .field("segment", &self.segment)
            .finish_non_exhaustive()
    }
}

impl SegmentSealer {
    /// The sealer of segment `segment` (0 for a single PUT, the part number for a part) of the
    /// object `binding` names.
    #[must_use]
    pub fn new(key: &DataKey, binding: &[u8], segment: u32) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, key.expose()).expect("a data key is 32 bytes");
        Self {
            key: LessSafeKey::new(unbound),
            binding: binding.to_vec(),
            segment,
        }
    }

    /// The sealer of another segment of the same object: the key as expanded already.
    #[must_use]
    pub fn for_segment(&self, segment: u32) -> SegmentSealer {
        SegmentSealer {
            segment,
            ..self.clone()
        }
    }

    fn nonce(&self, index: u64) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        n[..4].copy_from_slice(&self.segment.to_be_bytes());
        n[4..].copy_from_slice(&index.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }

    fn aad(&self, index: u64, last: bool) -> Vec<u8> {
        let mut aad = Vec::with_capacity(AAD_LABEL.len() + 17 + self.binding.len());
        aad.extend_from_slice(AAD_LABEL);
        aad.extend_from_slice(&u32::try_from(self.binding.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(&self.binding);
        aad.extend_from_slice(&self.segment.to_be_bytes());
        aad.extend_from_slice(&index.to_be_bytes());
        aad.push(u8::from(last));
        aad
    }

    /// Seals chunk `index` in place: `buf` holds its plaintext (a full chunk, or at most one
    /// when `last`) and gets the tag appended.
    pub fn seal(&self, index: u64, last: bool, buf: &mut Vec<u8>) -> CryptoResult<()> {
        let tag = self.seal_detached(index, last, buf)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// [`SegmentSealer::seal`] in place, the tag apart (stored right after the chunk): saves
    /// copying the chunk into a buffer with room for its tag.
    pub fn seal_detached(&self, index: u64, last: bool, buf: &mut [u8]) -> CryptoResult<[u8; TAG_LEN as usize]> {
        let len = buf.len() as u64;
        if len > CHUNK_PLAIN || (!last && len != CHUNK_PLAIN) {
            return Err(CryptoError::Malformed {
                what: "chunk to seal",
                detail: format!("{len} bytes in a {} chunk", if last { "last" } else { "full" }),
            });
        }
        let tag: Tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(index), Aad::from(self.aad(index, last)), buf)
            .map_err(|_| CryptoError::Integrity { what: "a chunk" })?;
        let mut out = [0u8; TAG_LEN as usize];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens chunk `index` of a segment laid out as `layout` in place (`buf` as stored:
    /// ciphertext then tag) and returns its plaintext, a prefix of `buf`.
    pub fn open<'b>(&self, layout: ChunkLayout, index: u64, buf: &'b mut [u8]) -> CryptoResult<&'b mut [u8]> {
        let expected = layout.chunk_plain_len(index).map(|n| n + TAG_LEN);
        if expected != Some(buf.len() as u64) {
            return Err(CryptoError::Integrity { what: "a chunk" });
        }
        let last = index + 1 == layout.chunk_count();
        self.key
            .open_in_place(self.nonce(index), Aad::from(self.aad(index, last)), buf)
            .map_err(|_| CryptoError::Integrity { what: "a chunk" })
    }

    /// Seals a whole segment held in memory (tests and small objects).
    #[must_use]
    pub fn seal_all(&self, plain: &[u8]) -> Vec<u8> {
        let layout = ChunkLayout::new(plain.len() as u64);
        let mut out = Vec::with_capacity(usize::try_from(layout.sealed_len()).unwrap_or(0));
        for index in 0..layout.chunk_count() {
            let start = usize::try_from(index * CHUNK_PLAIN).unwrap_or(usize::MAX);
            let end = plain.len().min(start.saturating_add(CHUNK_PLAIN as usize));
            let mut buf = plain[start..end].to_vec();
            self.seal(index, index + 1 == layout.chunk_count(), &mut buf)
                .expect("chunks cut to size");
            out.extend_from_slice(&buf);
        }
        out
    }

    /// Opens a whole stored segment of `plain_len` bytes held in memory.
    pub fn open_all(&self, plain_len: u64, sealed: &[u8]) -> CryptoResult<Vec<u8>> {
        let layout = ChunkLayout::new(plain_len);
        if sealed.len() as u64 != layout.sealed_len() {
            return Err(CryptoError::Integrity { what: "a segment" });
        }
        let mut out = Vec::with_capacity(usize::try_from(plain_len).unwrap_or(0));
        for (index, chunk) in (0u64..).zip(sealed.chunks(CHUNK_SEALED as usize)) {
            let mut buf = chunk.to_vec();
            out.extend_from_slice(self.open(layout, index, &mut buf)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sealer(binding: &[u8], segment: u32) -> (DataKey, SegmentSealer) {
        let key = DataKey::from_bytes([7; 32]);
        let s = SegmentSealer::new(&key, binding, segment);
        (key, s)
    }

    #[test]
    fn layout_counts_chunks_and_tags() {
        assert_eq!(ChunkLayout::new(0).chunk_count(), 1);
        assert_eq!(ChunkLayout::new(0).sealed_len(), TAG_LEN);
        assert_eq!(ChunkLayout::new(CHUNK_PLAIN).chunk_count(), 1);
        assert_eq!(ChunkLayout::new(CHUNK_PLAIN + 1).chunk_count(), 2);
        assert_eq!(
            ChunkLayout::new(CHUNK_PLAIN + 1).sealed_len(),
            CHUNK_PLAIN + 1 + 2 * TAG_LEN
        );
        assert_eq!(ChunkLayout::new(CHUNK_PLAIN + 1).chunk_plain_len(1), Some(1));
        assert_eq!(ChunkLayout::new(CHUNK_PLAIN + 1).chunk_plain_len(2), None);
    }

    #[test]
    fn sealed_bytes_are_not_the_plaintext_and_open_back() {
        let plain = b"personal information of a citizen".repeat(5000);
        let (_, s) = sealer(b"bucket/key/id", 0);
        let sealed = s.seal_all(&plain);
        assert_eq!(sealed.len() as u64, ChunkLayout::new(plain.len() as u64).sealed_len());
        assert!(!sealed.windows(16).any(|w| w == &plain[..16]));
        assert_eq!(s.open_all(plain.len() as u64, &sealed).unwrap(), plain);
    }

    #[test]
    fn a_chunk_moved_swapped_truncated_or_rebound_is_refused() {
        let plain = vec![42u8; (CHUNK_PLAIN * 2 + 10) as usize];
        let n = plain.len() as u64;
        let (key, s) = sealer(b"b/k/1", 0);
        let sealed = s.seal_all(&plain);
        let c = CHUNK_SEALED as usize;
        // Swapped: chunk 1 where chunk 0 was (same plaintext, so only the position differs).
        let mut swapped = sealed.clone();
        swapped.copy_within(c..2 * c, 0);
        assert!(s.open_all(n, &swapped).is_err());
        // Truncated to two full chunks and read as a two-chunk segment: the new last chunk
        // was not sealed as the last.
        assert!(s.open_all(CHUNK_PLAIN * 2, &sealed[..2 * c]).is_err());
        // Another object, another segment.
        assert!(SegmentSealer::new(&key, b"b/k/2", 0).open_all(n, &sealed).is_err());
        assert!(SegmentSealer::new(&key, b"b/k/1", 1).open_all(n, &sealed).is_err());
        // Another key.
        let other = SegmentSealer::new(&DataKey::from_bytes([8; 32]), b"b/k/1", 0);
        assert!(other.open_all(n, &sealed).is_err());
        // Chunks of the wrong size are not sealed.
        assert!(s.seal(0, false, &mut vec![0; 10]).is_err());
        assert!(s.seal(0, true, &mut vec![0; CHUNK_PLAIN as usize + 1]).is_err());
    }

    proptest! {
        #[test]
        fn any_flipped_bit_is_refused(len in 0usize..200_000, at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (_, s) = sealer(b"b/k/v", 3);
            let mut sealed = s.seal_all(&plain);
            prop_assert_eq!(s.open_all(len as u64, &sealed).unwrap(), plain);
            let i = at.index(sealed.len());
            sealed[i] ^= 1 << bit;
            prop_assert!(s.open_all(len as u64, &sealed).is_err());
        }

        #[test]
        fn a_range_opens_from_its_span_alone(len in 1u64..300_000, a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
            let plain: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let (_, s) = sealer(b"b/k/v", 0);
            let layout = ChunkLayout::new(len);
            let sealed = s.seal_all(&plain);
            let (x, y) = (a.index(len as usize) as u64, b.index(len as usize) as u64);
            let (start, end) = (x.min(y), x.max(y) + 1);
            let (first, span) = layout.sealed_span(start, end);
            let mut got = Vec::new();
            let bytes = &sealed[span.start as usize..span.end as usize];
            for (i, chunk) in (first..).zip(bytes.chunks(CHUNK_SEALED as usize)) {
                let mut buf = chunk.to_vec();
                got.extend_from_slice(s.open(layout, i, &mut buf).unwrap());
            }
            let skip = (start - first * CHUNK_PLAIN) as usize;
            prop_assert_eq!(&got[skip..skip + (end - start) as usize], &plain[start as usize..end as usize]);
        }
    }
}
