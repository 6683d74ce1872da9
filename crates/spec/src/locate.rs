//! Finds where a field path (`nodes[1].addresses[0]`) stands in a TOML source.

use crate::diagnostic::Location;

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Splits `a.b[2]."c/d"` into segments. Keys may be quoted when they hold `.`, `[` or `"`.
fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    let mut key = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                for inner in chars.by_ref() {
                    if inner == '"' {
                        break;
                    }
                    key.push(inner);
                }
            }
            '.' => {
                if !key.is_empty() {
                    out.push(Segment::Key(std::mem::take(&mut key)));
                }
            }
            '[' => {
                if !key.is_empty() {
                    out.push(Segment::Key(std::mem::take(&mut key)));
                }
                let mut digits = String::new();
                for inner in chars.by_ref() {
                    if inner == ']' {
                        break;
                    }
                    digits.push(inner);
                }
                if let Ok(index) = digits.parse() {
                    out.push(Segment::Index(index));
                }
            }
            _ => key.push(c),
        }
    }
    if !key.is_empty() {
        out.push(Segment::Key(key));
    }
    out
}

/// Quotes a map key for use in a field path when it is not a bare word.
pub(crate) fn key_segment(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        format!("\"{key}\"")
    }
}

/// A parsed document and the line starts of its source, for turning field paths into locations.
pub(crate) struct Locator<'a> {
    source: &'a str,
    document: Option<toml_edit::Document<&'a str>>,
    line_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(index, _)| index + 1))
            .collect();
        Locator {
            source,
            document: toml_edit::Document::parse(source).ok(),
            line_starts,
        }
    }

    /// The location of the deepest part of `path` that exists in the file.
    pub(crate) fn field(&self, path: &str) -> Option<Location> {
        let document = self.document.as_ref()?;
        let mut item = document.as_item();
        let mut best = None;
        for segment in segments(path) {
            let next = match &segment {
                Segment::Key(key) => {
                    let key_span = item
                        .as_table_like()
                        .and_then(|table| table.get_key_value(key))
                        .and_then(|(key, _)| key.span());
                    if key_span.is_some() {
                        best = key_span;
                    }
                    item.get(key.as_str())
                }
                Segment::Index(index) => item.get(*index),
            };
            let Some(next) = next else { break };
            if let Some(span) = next.span() {
                best = Some(span);
            }
            item = next;
        }
        best.map(|span| self.offset(span.start))
    }

    /// The 1-based line and character column of a byte offset.
    pub(crate) fn offset(&self, offset: usize) -> Location {
        let line = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .max(1);
        let start = self.line_starts[line - 1];
        let column = self
            .source
            .get(start..offset)
            .map_or(1, |text| text.chars().count() + 1);
        Location { line, column }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths() {
        assert_eq!(
            segments(r#"nodes[1].addresses[0]"#),
            vec![
                Segment::Key("nodes".into()),
                Segment::Index(1),
                Segment::Key("addresses".into()),
                Segment::Index(0)
            ]
        );
        assert_eq!(
            segments(r#"pki.generations."kubelet-serving/n1""#),
            vec![
                Segment::Key("pki".into()),
                Segment::Key("generations".into()),
                Segment::Key("kubelet-serving/n1".into())
            ]
        );
    }

    #[test]
    fn finds_values_and_falls_back_to_tables() {
        let source = "[cluster]\nname = \"x\"\n\n[[nodes]]\nname = \"a\"\n\n[[nodes]]\nname = \"b\"\naddresses = [\"10.0.0.1/24\", \"10.0.0.2/24\"]\n";
        let locator = Locator::new(source);
        assert_eq!(
            locator.field("cluster.name"),
            Some(Location { line: 2, column: 8 })
        );
        assert_eq!(
            locator.field("nodes[1].addresses[1]"),
            Some(Location {
                line: 9,
                column: 29
            })
        );
        // A missing field points at the last part that exists: here the key `name` of node 1.
        assert_eq!(
            locator.field("nodes[1].name.nope"),
            Some(Location { line: 8, column: 8 })
        );
    }
}
