//! Frames a stream of JSON text into records, in bounded memory: each top-level value is a
//! record, except a top-level array, whose elements are. So one array, one object, concatenated
//! objects and NDJSON all read the same. Records are only framed here (brackets and strings
//! tracked); parsing them is the caller's job, so a malformed record costs only itself.

/// One framed record's text.
#[derive(Debug, PartialEq, Eq)]
pub struct JsonRecord<'a> {
    pub bytes: &'a [u8],
    /// 1-based record number in the stream.
    pub number: u64,
    /// Longer than the cap: `bytes` holds only the first `max_record` bytes.
    pub oversize: bool,
    /// The stream ended inside this record.
    pub unterminated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Top,
    Array,
}

#[derive(Debug)]
pub struct JsonFramer {
    max_record: usize,
    ctx: Ctx,
    in_record: bool,
    scalar: bool,
    depth: u32,
    in_string: bool,
    escape: bool,
    buf: Vec<u8>,
    oversize: bool,
    number: u64,
}

impl JsonFramer {
    pub fn new(max_record: usize) -> Self {
        JsonFramer {
            max_record: max_record.max(1),
            ctx: Ctx::Top,
            in_record: false,
            scalar: false,
            depth: 0,
            in_string: false,
            escape: false,
            buf: Vec::new(),
            oversize: false,
            number: 0,
        }
    }

    pub fn feed(&mut self, chunk: &[u8], emit: &mut dyn FnMut(JsonRecord<'_>)) {
        for &b in chunk {
            self.byte(b, emit);
        }
    }

    pub fn finish(&mut self, emit: &mut dyn FnMut(JsonRecord<'_>)) {
        if self.in_record {
            let unterminated = !self.scalar || self.in_string;
            self.end(emit, unterminated);
        }
    }

    /// Records completed so far.
    pub fn records_seen(&self) -> u64 {
        self.number
    }

    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    fn byte(&mut self, b: u8, emit: &mut dyn FnMut(JsonRecord<'_>)) {
        if !self.in_record {
            match (b, self.ctx) {
                (b' ' | b'\t' | b'\r' | b'\n', _) => return,
                (b'[', Ctx::Top) => {
                    self.ctx = Ctx::Array;
                    return;
                }
                (b',', Ctx::Array) => return,
                (b']', Ctx::Array) => {
                    self.ctx = Ctx::Top;
                    return;
                }
                _ => {
                    self.in_record = true;
                    self.scalar = !matches!(b, b'{' | b'[');
                    self.depth = 0;
                }
            }
        }
        if self.in_string {
            self.push(b);
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
                if self.scalar && self.depth == 0 {
                    self.end(emit, false);
                }
            }
            return;
        }
        match b {
            b'"' => {
                self.in_string = true;
                self.push(b);
            }
            b'{' | b'[' => {
                self.depth += 1;
                self.push(b);
            }
            b'}' | b']' if self.depth > 0 => {
                self.depth -= 1;
                self.push(b);
                if self.depth == 0 && !self.scalar {
                    self.end(emit, false);
                }
            }
            b'}' | b']' | b',' | b' ' | b'\t' | b'\r' | b'\n' if self.depth == 0 => {
                // A scalar (or stray closer) ends here; the delimiter belongs to the context.
                if b == b'}' {
                    self.push(b);
                }
                self.end(emit, false);
                if b == b']' && self.ctx == Ctx::Array {
                    self.ctx = Ctx::Top;
                }
            }
            _ => self.push(b),
        }
    }

    fn push(&mut self, b: u8) {
        if self.buf.len() < self.max_record {
            self.buf.push(b);
        } else {
            self.oversize = true;
        }
    }

    fn end(&mut self, emit: &mut dyn FnMut(JsonRecord<'_>), unterminated: bool) {
        self.number += 1;
        emit(JsonRecord {
            bytes: &self.buf,
            number: self.number,
            oversize: self.oversize,
            unterminated,
        });
        self.buf.clear();
        self.oversize = false;
        self.in_record = false;
        self.in_string = false;
        self.escape = false;
        self.depth = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(chunks: &[&[u8]], max: usize) -> Vec<(String, bool, bool)> {
        let mut f = JsonFramer::new(max);
        let mut out = Vec::new();
        let mut emit = |r: JsonRecord<'_>| {
            out.push((
                String::from_utf8_lossy(r.bytes).into_owned(),
                r.oversize,
                r.unterminated,
            ))
        };
        for c in chunks {
            f.feed(c, &mut emit);
        }
        f.finish(&mut emit);
        out
    }

    fn texts(chunks: &[&[u8]]) -> Vec<String> {
        frame(chunks, 1 << 20).into_iter().map(|r| r.0).collect()
    }

    #[test]
    fn arrays_objects_and_ndjson_read_alike() {
        let want = vec![r#"{"a":1}"#.to_string(), r#"{"b":"x]}"}"#.to_string()];
        assert_eq!(texts(&[br#"[{"a":1}, {"b":"x]}"}]"#]), want);
        assert_eq!(texts(&[b"{\"a\":1}\n{\"b\":\"x]}\"}\n"]), want);
        assert_eq!(texts(&[br#"{"a":1}{"b":"x]}"}"#]), want);
        assert_eq!(texts(&[b"[{\"a\"", b":1},\n {\"b\":\"x]", b"}\"}]"]), want);
    }

    #[test]
    fn nested_values_stay_in_their_record() {
        assert_eq!(
            texts(&[br#"[{"a":[1,{"b":[]}],"c":"\"}"}]"#]),
            vec![r#"{"a":[1,{"b":[]}],"c":"\"}"}"#.to_string()]
        );
    }

    #[test]
    fn scalars_and_garbage_become_their_own_records() {
        assert_eq!(
            texts(&[b"[1, \"s\", true] garbage {\"ok\":1}"]),
            vec!["1", "\"s\"", "true", "garbage", "{\"ok\":1}"]
        );
    }

    #[test]
    fn oversize_and_unterminated_records_are_flagged() {
        let got = frame(&[br#"{"a":"0123456789"} {"b":1} {"c":"#], 8);
        assert_eq!(got[0], (r#"{"a":"01"#.to_string(), true, false));
        assert_eq!(got[1], (r#"{"b":1}"#.to_string(), false, false));
        assert_eq!(got[2], (r#"{"c":"#.to_string(), false, true));
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_bounded(data in proptest::collection::vec(any::<u8>(), 0..400), cut in 1usize..40) {
            let mut f = JsonFramer::new(32);
            for c in data.chunks(cut) {
                f.feed(c, &mut |r| assert!(r.bytes.len() <= 32));
                prop_assert!(f.pending_bytes() <= 32);
            }
            f.finish(&mut |_| {});
        }

        #[test]
        fn chunking_does_not_change_records(n in 0usize..20, cut in 1usize..30) {
            let text: String = (0..n).map(|i| format!("{{\"i\":{i},\"s\":\"a,]}}{{\\\"\"}}")).collect::<Vec<_>>().join(",");
            let text = format!("[{text}]");
            let whole = texts(&[text.as_bytes()]);
            prop_assert_eq!(whole.len(), n);
            let chunks: Vec<&[u8]> = text.as_bytes().chunks(cut).collect();
            prop_assert_eq!(texts(&chunks), whole);
        }
    }
}
