//! The stable 64-bit hash behind hash-based balancing: request keys (client
//! IP, header, cookie, path) and Maglev backend identities both go through
//! it. It is XXH64 (xxHash's 64-bit algorithm, by Yann Collet), written out
//! here so that its output is pinned by this crate's tests rather than by a
//! dependency's version.

const PRIME_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME_3: u64 = 0x1656_67B1_9E37_79F9;
const PRIME_4: u64 = 0x85EB_CA77_C2B2_AE63;
const PRIME_5: u64 = 0x27D4_EB2F_1656_67C5;

/// Hashes `bytes` to a well-mixed 64-bit value, identical in every process,
/// on every platform and in every version of halb (it is XXH64 with seed 0;
/// tests pin it to the reference vectors). Use it for every hash key handed
/// to [`Balancer::pick`](crate::Balancer::pick): peers and restarted
/// processes must send the same key to the same backend. Never use it where
/// an attacker's keys could be chosen to collide on purpose and that would
/// matter: it is not a keyed hash.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    hash_bytes_with_seed(bytes, 0)
}

/// [`hash_bytes`] with a seed: XXH64 with that seed. Different seeds give
/// independent hashes of the same bytes, which is what Maglev needs for a
/// backend's table offset and skip. Stable like [`hash_bytes`].
pub fn hash_bytes_with_seed(bytes: &[u8], seed: u64) -> u64 {
    let mut rest = bytes;
    let mut hash = if rest.len() >= 32 {
        let mut lanes = [
            seed.wrapping_add(PRIME_1).wrapping_add(PRIME_2),
            seed.wrapping_add(PRIME_2),
            seed,
            seed.wrapping_sub(PRIME_1),
        ];
        while rest.len() >= 32 {
            for (lane, word) in lanes.iter_mut().zip(rest.chunks_exact(8)) {
                *lane = round(*lane, read_u64(word));
            }
            rest = &rest[32..];
        }
        let mut hash = lanes[0]
            .rotate_left(1)
            .wrapping_add(lanes[1].rotate_left(7))
            .wrapping_add(lanes[2].rotate_left(12))
            .wrapping_add(lanes[3].rotate_left(18));
        for lane in lanes {
            hash = (hash ^ round(0, lane))
                .wrapping_mul(PRIME_1)
                .wrapping_add(PRIME_4);
        }
        hash
    } else {
        seed.wrapping_add(PRIME_5)
    };
    hash = hash.wrapping_add(bytes.len() as u64);

    let mut words = rest.chunks_exact(8);
    for word in &mut words {
        hash = (hash ^ round(0, read_u64(word)))
            .rotate_left(27)
            .wrapping_mul(PRIME_1)
            .wrapping_add(PRIME_4);
    }
    rest = words.remainder();
    if rest.len() >= 4 {
        let word = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        hash = (hash ^ u64::from(word).wrapping_mul(PRIME_1))
            .rotate_left(23)
            .wrapping_mul(PRIME_2)
            .wrapping_add(PRIME_3);
        rest = &rest[4..];
    }
    for &byte in rest {
        hash = (hash ^ u64::from(byte).wrapping_mul(PRIME_5))
            .rotate_left(11)
            .wrapping_mul(PRIME_1);
    }

    hash ^= hash >> 33;
    hash = hash.wrapping_mul(PRIME_2);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(PRIME_3);
    hash ^ (hash >> 32)
}

#[inline]
fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(PRIME_2))
        .rotate_left(31)
        .wrapping_mul(PRIME_1)
}

#[inline]
fn read_u64(word: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&word[..8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference XXH64 outputs (from xxHash's own and other implementations'
    /// published vectors): if one of these changes, every Maglev table and
    /// every sticky key in every deployed node changes with it.
    #[test]
    fn matches_reference_xxh64() {
        assert_eq!(hash_bytes(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(hash_bytes(b"a"), 15_154_266_338_359_012_955);
        assert_eq!(hash_bytes(b"ab"), 7_347_350_983_217_793_633);
        assert_eq!(hash_bytes(b"abc"), 0x44BC_2CF5_AD77_0999);
        assert_eq!(hash_bytes(b"ABC"), 0xE66A_E735_4FCF_EE98);
        assert_eq!(hash_bytes(b"xxhash"), 0x32DD_3895_2C4B_C720);
        assert_eq!(hash_bytes(b"0123"), 0x4C33_072B_4564_7DCB);
        assert_eq!(hash_bytes(b"\x01"), 9_962_287_286_179_718_960);
        assert_eq!(hash_bytes(b"\x03\0\0\0"), 13_361_037_350_151_369_407);
        assert_eq!(
            hash_bytes_with_seed(b"", 0x1234_5678_90AB_CDEF),
            0xA2F5_C44D_0F46_C872
        );
        // 71 bytes: exercises the four-lane path for inputs of 32 bytes and more.
        assert_eq!(
            hash_bytes_with_seed(
                b"This code is derived from software contributed to The DragonFly Project",
                0x4D61_7474_446C_6C6E
            ),
            0x103C_241E_EDDC_8D32
        );
        assert_eq!(
            hash_bytes_with_seed(b"hammer2", 0x4D61_7474_446C_6C6E),
            0xA041_BE26_8B56_74E5
        );
    }

    #[test]
    fn seeds_give_different_hashes() {
        let id = b"127.0.0.1:9001";
        assert_ne!(hash_bytes(id), hash_bytes_with_seed(id, 1));
        assert_eq!(hash_bytes(id), hash_bytes_with_seed(id, 0));
    }

    /// Flipping any one input bit flips about half the output bits: the
    /// low bits Maglev reduces modulo its table size are as good as the rest.
    #[test]
    fn avalanches() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut flipped = 0u64;
        let mut trials = 0u64;
        for len in [4usize, 15, 16, 40] {
            for _ in 0..200 {
                let mut input: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
                let before = hash_bytes(&input);
                let bit = rng.usize(..len * 8);
                input[bit / 8] ^= 1 << (bit % 8);
                flipped += u64::from((before ^ hash_bytes(&input)).count_ones());
                trials += 1;
            }
        }
        let mean = flipped as f64 / trials as f64;
        assert!((30.0..34.0).contains(&mean), "mean flipped bits {mean}");
    }
}
