//! CSV (RFC 4180) records on top of lines: the first record is the header, naming the columns;
//! a quoted field may hold commas, doubled quotes and newlines. A record with more or fewer
//! fields than the header is refused with a reason, not guessed at.

/// Splitting one logical record failed or needs more input.
#[derive(Debug, PartialEq, Eq)]
pub enum CsvSplit {
    Fields(Vec<String>),
    /// A quoted field is still open: the record continues on the next line.
    Incomplete,
    Invalid(String),
}

/// Splits one record's text into fields.
pub fn split_record(s: &str) -> CsvSplit {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = s.chars().peekable();
    let mut at_field_start = true;
    loop {
        match chars.next() {
            None => {
                fields.push(field);
                return CsvSplit::Fields(fields);
            }
            Some('"') if at_field_start => {
                // quoted field
                loop {
                    match chars.next() {
                        None => return CsvSplit::Incomplete,
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => field.push(c),
                    }
                }
                match chars.next() {
                    None => {
                        fields.push(field);
                        return CsvSplit::Fields(fields);
                    }
                    Some(',') => {
                        fields.push(std::mem::take(&mut field));
                        at_field_start = true;
                    }
                    Some(c) => {
                        return CsvSplit::Invalid(format!(
                            "unexpected {c:?} after a closing quote (field {})",
                            fields.len() + 1
                        ))
                    }
                }
            }
            Some(',') => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            Some(c) => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
}

/// Header names: blanks become `Column<N>`, surrounding spaces are trimmed.
pub fn header_names(fields: Vec<String>) -> Vec<String> {
    fields
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let t = f.trim();
            if t.is_empty() {
                format!("Column{}", i + 1)
            } else {
                t.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: &[&str]) -> CsvSplit {
        CsvSplit::Fields(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn splits_rfc4180_records() {
        let cases = [
            ("a,b,c", fields(&["a", "b", "c"])),
            ("", fields(&[""])),
            ("a,,", fields(&["a", "", ""])),
            (
                r#""x, y","say ""hi""",z"#,
                fields(&["x, y", "say \"hi\"", "z"]),
            ),
            ("\"multi\nline\",2", fields(&["multi\nline", "2"])),
            ("\"open", CsvSplit::Incomplete),
            ("a,\"still open\nstill", CsvSplit::Incomplete),
            ("caf\u{e9},\u{1f600}", fields(&["caf\u{e9}", "\u{1f600}"])),
        ];
        for (input, want) in cases {
            assert_eq!(split_record(input), want, "{input:?}");
        }
        assert!(matches!(split_record(r#""a"b,c"#), CsvSplit::Invalid(_)));
    }

    #[test]
    fn blank_header_names_get_a_column_number() {
        assert_eq!(
            header_names(vec![" a ".into(), "".into(), "c".into()]),
            vec!["a", "Column2", "c"]
        );
    }
}
