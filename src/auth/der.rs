//! Just enough of an ASN.1 reader for PKCS#12 and PKCS#8: walk tag-length-value elements,
//! read OIDs, integers and octet strings. It accepts BER's indefinite lengths and constructed
//! octet strings, since PFX files exported by Windows and Java use them.
//!
//! Every read is bounds-checked and nesting is limited, so a damaged or hostile file is an error,
//! never a panic or a deep recursion.

use std::borrow::Cow;

/// A file that is not the ASN.1 expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OID: u8 = 0x06;
const CONSTRUCTED: u8 = 0x20;
/// Nesting deeper than this is no PKCS#12 file.
const MAX_DEPTH: usize = 24;

/// One element: its tag byte and its content (without the end-of-contents of an indefinite
/// length).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) body: &'a [u8],
    /// The whole element, header included (what a DER consumer such as ring wants).
    pub(crate) raw: &'a [u8],
}

/// Reads elements one after another from a slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Reader { rest: input }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element, whatever its tag.
    pub(crate) fn any(&mut self) -> Result<Tlv<'a>, Malformed> {
        let (tlv, used) = parse(self.rest, 0)?;
        self.rest = &self.rest[used..];
        Ok(tlv)
    }

    /// The next element, which must have `tag`.
    pub(crate) fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, Malformed> {
        let tlv = self.any()?;
        if tlv.tag == tag {
            Ok(tlv)
        } else {
            Err(Malformed(what))
        }
    }

    /// The next element if it has `tag`; otherwise nothing is consumed.
    pub(crate) fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, Malformed> {
        match self.rest.first() {
            Some(&t) if t == tag => self.any().map(Some),
            _ => Ok(None),
        }
    }

    /// A SEQUENCE, as a reader of its elements.
    pub(crate) fn sequence(&mut self, what: &'static str) -> Result<Reader<'a>, Malformed> {
        self.expect(SEQUENCE, what).map(|t| Reader::new(t.body))
    }

    /// An OBJECT IDENTIFIER's content bytes (compared with the constants of `pkcs12.rs`).
    pub(crate) fn oid(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        self.expect(OID, what).map(|t| t.body)
    }

    /// A non-negative INTEGER that fits in a u64.
    pub(crate) fn integer(&mut self, what: &'static str) -> Result<u64, Malformed> {
        let body = self.expect(INTEGER, what)?.body;
        let digits = match body {
            [0, rest @ ..] => rest,
            [first, ..] if first & 0x80 != 0 => return Err(Malformed(what)),
            all => all,
        };
        if body.is_empty() || digits.len() > 8 {
            return Err(Malformed(what));
        }
        Ok(digits.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
    }

    /// An INTEGER if one comes next (an OPTIONAL or DEFAULT field).
    pub(crate) fn optional_integer(
        &mut self,
        what: &'static str,
    ) -> Result<Option<u64>, Malformed> {
        match self.rest.first() {
            Some(&INTEGER) => self.integer(what).map(Some),
            _ => Ok(None),
        }
    }

    /// An OCTET STRING's value (primitive or constructed).
    pub(crate) fn octets(&mut self, what: &'static str) -> Result<Cow<'a, [u8]>, Malformed> {
        let tlv = self.any()?;
        octets_of(tlv, OCTET_STRING, what)
    }
}

/// The value of an octet string with the primitive tag `tag` (or its constructed form, whose
/// segments are joined).
pub(crate) fn octets_of<'a>(
    tlv: Tlv<'a>,
    tag: u8,
    what: &'static str,
) -> Result<Cow<'a, [u8]>, Malformed> {
    if tlv.tag == tag {
        return Ok(Cow::Borrowed(tlv.body));
    }
    if tlv.tag != tag | CONSTRUCTED {
        return Err(Malformed(what));
    }
    let mut joined = Vec::new();
    let mut segments = Reader::new(tlv.body);
    while !segments.is_empty() {
        let segment = segments.any()?;
        joined.extend_from_slice(&octets_of(segment, OCTET_STRING, what)?);
    }
    Ok(Cow::Owned(joined))
}

/// Parses one element at the start of `input`: it and the bytes it took.
fn parse(input: &[u8], depth: usize) -> Result<(Tlv<'_>, usize), Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed("nested too deeply"));
    }
    let (&tag, after_tag) = input.split_first().ok_or(Malformed("ends early"))?;
    if tag & 0x1f == 0x1f {
        return Err(Malformed("uses a multi-byte tag"));
    }
    let (&first, after_len) = after_tag.split_first().ok_or(Malformed("ends early"))?;
    let header = 2;
    if first == 0x80 {
        // Indefinite length: constructed only; the elements run to an end-of-contents (00 00).
        if tag & CONSTRUCTED == 0 {
            return Err(Malformed("has an indefinite length on a primitive element"));
        }
        let mut at = 0;
        loop {
            let rest = &after_len[at..];
            if rest.starts_with(&[0, 0]) {
                let tlv = Tlv {
                    tag,
                    body: &after_len[..at],
                    raw: &input[..header + at + 2],
                };
                return Ok((tlv, header + at + 2));
            }
            let (_, used) = parse(rest, depth + 1)?;
            at += used;
        }
    }
    let (len, len_bytes) = if first & 0x80 == 0 {
        (usize::from(first), 0)
    } else {
        let n = usize::from(first & 0x7f);
        if n > 4 || after_len.len() < n {
            return Err(Malformed("has a bad length"));
        }
        let len = after_len[..n]
            .iter()
            .fold(0usize, |l, b| (l << 8) | usize::from(*b));
        (len, n)
    };
    let start = len_bytes;
    let end = start
        .checked_add(len)
        .filter(|&e| e <= after_len.len())
        .ok_or(Malformed("ends early"))?;
    Ok((
        Tlv {
            tag,
            body: &after_len[start..end],
            raw: &input[..header + end],
        },
        header + end,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definite_indefinite_and_constructed() {
        // SEQUENCE { INTEGER 5, OCTET STRING "ab" }
        let der = [0x30, 0x07, 0x02, 0x01, 0x05, 0x04, 0x02, b'a', b'b'];
        let mut seq = Reader::new(&der).sequence("seq").unwrap();
        assert_eq!(seq.integer("n").unwrap(), 5);
        assert_eq!(&*seq.octets("o").unwrap(), b"ab");
        assert!(seq.is_empty());

        // The same with an indefinite length and a constructed octet string "ab" + "c".
        let ber = [
            0x30, 0x80, 0x02, 0x01, 0x05, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c',
            0x00, 0x00, 0x00, 0x00,
        ];
        let mut outer = Reader::new(&ber);
        let mut seq = outer.sequence("seq").unwrap();
        assert!(outer.is_empty());
        assert_eq!(seq.integer("n").unwrap(), 5);
        assert_eq!(&*seq.octets("o").unwrap(), b"abc");

        // Long-form length.
        let mut long = vec![0x04, 0x81, 200];
        long.extend([7u8; 200]);
        assert_eq!(Reader::new(&long).octets("o").unwrap().len(), 200);
    }

    #[test]
    fn damaged_input_is_an_error_never_a_panic() {
        let cases: [&[u8]; 9] = [
            &[],
            &[0x30],
            &[0x30, 0x05, 0x02],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x04, 0x80, 0x00, 0x00],
            &[0x30, 0x80, 0x02, 0x01],
            &[0x1f, 0x01, 0x00],
            &[0x02, 0x00],
            &[0x02, 0x01, 0x80],
        ];
        for bytes in cases {
            let mut r = Reader::new(bytes);
            let got = r.any().and_then(|t| {
                if t.tag == INTEGER {
                    Reader::new(bytes).integer("n").map(drop)
                } else {
                    Ok(())
                }
            });
            assert!(got.is_err(), "{bytes:?}");
        }
        // Deep nesting of indefinite lengths stops at the limit.
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep.extend([0x30, 0x80]);
        }
        assert!(Reader::new(&deep).any().is_err());
    }
}
