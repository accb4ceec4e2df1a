//! Byte-class tables for the grammars vitals-core checks on every request: one load per byte,
//! where a search through a list of punctuation showed in profiles.

/// A table true for ASCII letters and digits and for each byte of `extra`.
pub(crate) const fn alphanumeric_and(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 128 {
        #[allow(clippy::cast_possible_truncation)] // `b` < 128.
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    #[test]
    fn letters_digits_and_the_extra_bytes_only() {
        let table = super::alphanumeric_and(b"-.");
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
            assert_eq!(table[usize::from(b)], expected, "{b}");
        }
    }
}
