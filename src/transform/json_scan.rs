//! The fast reader of a JSON object line: its (key, raw value text) pairs, borrowed, for the
//! common case — keys without escapes, string values without `\u` escapes, nesting under
//! [`MAX_DEPTH`]. It answers `None` whenever it is not sure; [`super::raw_object::parse`] then
//! asks serde_json, which decides and explains the error. So this reader never has to be
//! complete, only right about what it accepts — a property test holds it to serde_json.
//!
//! Why: reading the object through serde's visitor machinery was about a quarter of all the
//! instructions `send` spends on an NDJSON row; strings scanned sixteen bytes at a time (SSE2,
//! eight elsewhere) and a plain byte loop for the grammar cost a fraction of that.

/// Nesting this deep goes to serde_json (whose own limit is 128).
const MAX_DEPTH: usize = 64;

/// Hands each member of the object `text` holds to `each`, in order (repeats included), and
/// answers `Some`; or answers `None` (not an object, not valid JSON, or a form this reader
/// leaves to serde_json) — possibly after some members were handed over, which the caller then
/// discards.
pub fn object<'a>(text: &'a str, each: &mut impl FnMut(&'a str, &'a str)) -> Option<()> {
    let mut s = Scan {
        b: text.as_bytes(),
        i: 0,
    };
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            let key = s.key()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            let start = s.i;
            s.value(1)?;
            // Slicing at ASCII delimiters of valid UTF-8 keeps char boundaries.
            each(text.get(key)?, text.get(start..s.i)?);
            s.ws();
            match s.next()? {
                b',' => s.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == s.b.len()).then_some(())
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A key without escapes: the range of its text inside the quotes.
    fn key(&mut self) -> Option<std::ops::Range<usize>> {
        self.eat(b'"')?;
        let start = self.i;
        let end = start + self.plain_run()?;
        if self.b.get(end) != Some(&b'"') {
            return None;
        }
        self.i = end + 1;
        Some(start..end)
    }

    /// Length of the run from `i` up to the next `"` or `\`; `None` if it holds a control
    /// character (invalid in a JSON string) or the text ends first.
    fn plain_run(&self) -> Option<usize> {
        plain_run(self.b.get(self.i..)?)
    }

    /// A string value; short escapes are stepped over, `\u` goes to serde_json.
    fn string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            self.i += self.plain_run()?;
            if self.next()? == b'"' {
                return Some(());
            }
            match self.next()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                _ => return None,
            }
        }
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string(),
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.key()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => self.ws(),
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => self.ws(),
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// A literal; what may follow it is the caller's check (`truex` fails there).
    fn word(&mut self, w: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + w.len())? == w {
            self.i += w.len();
            Some(())
        } else {
            None
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; what may follow is the caller's check
    /// (`01` fails there, as in JSON).
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digit()?;
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digit()?;
            self.digits();
        }
        Some(())
    }

    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then_some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }
}

/// What ends a run of plain string bytes: `"`, `\`, or a control character (below 0x20).
fn special(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// The length of `rest`'s run of plain string bytes, if a `"` or `\` ends it; `None` if a
/// control character does, or `rest` ends first. Sixteen bytes at a time where SSE2 is (every
/// x86-64), eight elsewhere: log strings are short, where a call into `memchr` costs more than
/// it saves.
fn plain_run(rest: &[u8]) -> Option<usize> {
    let mut at = 0;
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    for b in rest.as_chunks::<16>().0 {
        let hit = special_16(b);
        if hit != 0 {
            return run_ends_at(rest, at + hit.trailing_zeros() as usize);
        }
        at += 16;
    }
    let (words, tail) = rest[at..].as_chunks::<8>();
    for w in words {
        let hit = special_8(w);
        if hit != 0 {
            return run_ends_at(rest, at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let n = tail.iter().position(|&c| special(c))?;
    run_ends_at(rest, at + n)
}

/// The run ends at the [`special`] byte `rest[n]`: `Some(n)` for a quote or backslash, `None`
/// for a control character (invalid in a JSON string).
fn run_ends_at(rest: &[u8], n: usize) -> Option<usize> {
    (rest[n] >= 0x20).then_some(n)
}

/// The high bit of each of the eight bytes of `w` that is [`special`] (exact for the lowest).
fn special_8(w: &[u8; 8]) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // High bit set in each byte that is zero (exact for the lowest such byte).
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let v = u64::from_le_bytes(*w);
    // quote, backslash, or below 0x20 (a byte under 0x20 has its top three bits zero)
    zero(v ^ (ONES * u64::from(b'"')))
        | zero(v ^ (ONES * u64::from(b'\\')))
        | zero(v & (ONES * 0xe0))
}

/// Bit `i` set for each byte `i` of `b` that is [`special`].
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn special_16(b: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: the build enables SSE2 (the cfg above; every x86-64 has it), and the unaligned
    // load reads the 16 bytes of `b`.
    unsafe {
        let v = _mm_loadu_si128(b.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned v <= 0x1f: max(v, 0x1f) is 0x1f.
        let low = _mm_set1_epi8(0x1f);
        let control = _mm_cmpeq_epi8(_mm_max_epu8(v, low), low);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;

    /// serde_json's reading of the same text, members in order, repeats included.
    fn serde_members(text: &str) -> Option<Vec<(String, String)>> {
        struct Members(Vec<(String, String)>);
        impl<'de> serde::Deserialize<'de> for Members {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Members;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut m: A,
                    ) -> Result<Members, A::Error> {
                        let mut out = Vec::new();
                        while let Some((k, v)) = m.next_entry::<String, &'de RawValue>()? {
                            out.push((k, v.get().to_string()));
                        }
                        Ok(Members(out))
                    }
                }
                d.deserialize_map(V)
            }
        }
        serde_json::from_str::<Members>(text).ok().map(|m| m.0)
    }

    fn fast(text: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        object(text, &mut |k, v| out.push((k.to_string(), v.to_string())))?;
        Some(out)
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{}"#,
            r#" { } "#,
            r#"{"a":1}"#,
            "{\"a\" :\t\"x y\" ,\n\"b\":[1, {\"c\":null}], \"d\":{}}\r\n",
            r#"{"n":-0.5e+10,"m":0,"o":12.25E-3,"t":true,"f":false,"z":null}"#,
            r#"{"s":"esc \" \\ \/ \b \f \n \r \t end","a":[],"a":[[]]}"#,
            r#"{"ü":"ünïcode ✓","k":"🙂"}"#,
            r#"{"a":1e400,"b":-1E-0,"c":0e0,"d":123456789012345678901234567890}"#,
            "{\"\":\"\",\"e\":\"\u{7f} \\/\",\"f\":[1,[2,{\"g\":[]}]]}",
        ] {
            let got = fast(text);
            assert!(got.is_some(), "{text}");
            assert_eq!(got, serde_members(text), "{text}");
        }
    }

    #[test]
    fn leaves_to_serde_json_what_it_is_not_sure_of() {
        for text in [
            // not objects, or not JSON
            "",
            "[1]",
            "5",
            "{",
            r#"{"a":1"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":truex}"#,
            r#"{"a":nul}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":"tab	raw"}"#,
            r#"{"a":"\x"}"#,
            r#"{a:1}"#,
            r#"{"a" 1}"#,
            // valid, but left to serde_json
            r#"{"k\"ey":1}"#,
            r#"{"a":"\u00e9"}"#,
        ] {
            assert_eq!(fast(text), None, "{text}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(70), "]".repeat(70));
        assert_eq!(fast(&deep), None);
        assert!(serde_members(&deep).is_some(), "serde_json reads it");
    }

    /// Text built from JSON's own pieces, so that most cases are objects or near misses.
    fn jsonish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just("\"".to_string()),
            Just("\"k\":".to_string()),
            Just("\"k\\\"\":".to_string()),
            Just(" ".to_string()),
            Just("\n".to_string()),
            Just("\\".to_string()),
            Just("\\u00e9".to_string()),
            Just("\\n".to_string()),
            Just("true".to_string()),
            Just("nul".to_string()),
            Just("null".to_string()),
            Just("-".to_string()),
            Just(".".to_string()),
            Just("e+".to_string()),
            "[0-9]{1,3}".prop_map(|s| s),
            "[a-zé\u{1}\t]{1,4}".prop_map(|s| s),
            "\"[a-z ]{0,5}\"".prop_map(|s| s),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    /// Valid objects of random shape.
    fn object_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| f.to_string()),
            "[ -~é\t\n\"\\\\]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        ];
        let value = leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[ {} ]", v.join(" ,"))),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..4).prop_map(
                    |m: BTreeMap<String, String>| {
                        let body: Vec<String> =
                            m.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
                        format!("{{{}}}", body.join(","))
                    }
                ),
            ]
        });
        prop::collection::vec(("[a-d]{1,2}", value), 0..6).prop_map(|members| {
            let body: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect();
            format!("{{{}}}", body.join(", "))
        })
    }

    /// Byte by byte: what [`plain_run`] answers.
    fn plain_run_slowly(rest: &[u8]) -> Option<usize> {
        let n = rest.iter().position(|&c| special(c))?;
        (rest[n] >= 0x20).then_some(n)
    }

    #[test]
    fn a_plain_run_ends_at_the_first_special_byte_wherever_it_stands() {
        // Every length across the 16- and 8-byte blocks and the tail, every ender, at every
        // place, behind plain ASCII and bytes of multi-byte characters.
        for len in 0..40 {
            for filler in [b'a', 0x80, 0xff, 0x7f, b' '] {
                for ender in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    for at in 0..=len {
                        let mut v = vec![filler; len];
                        if at < len {
                            v[at] = ender;
                        }
                        assert_eq!(plain_run(&v), plain_run_slowly(&v), "{v:?}");
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn a_plain_run_agrees_with_a_byte_loop(v in proptest::collection::vec(
            prop_oneof![8 => 0x20u8..=0xff, 1 => Just(b'"'), 1 => Just(b'\\'), 1 => 0u8..0x20],
            0..80,
        )) {
            prop_assert_eq!(plain_run(&v), plain_run_slowly(&v));
        }

        #[test]
        fn what_it_accepts_serde_json_reads_the_same(text in jsonish()) {
            if let Some(got) = fast(&text) {
                prop_assert_eq!(Some(got), serde_members(&text), "{}", text);
            }
        }

        #[test]
        fn valid_objects_agree_with_serde_json(text in object_text()) {
            let serde = serde_members(&text);
            prop_assert!(serde.is_some(), "generated text is valid: {}", text);
            match fast(&text) {
                Some(got) => prop_assert_eq!(Some(got), serde),
                // only \u escapes (none generated here) or escaped keys may go the slow way
                None => prop_assert!(false, "fast path refused valid {}", text),
            }
        }
    }
}
