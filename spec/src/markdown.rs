//! The two machine-readable conventions of the spec documents.
//!
//! **Marked fenced blocks.** A fenced block whose info string holds a token
//! `worked-example:NAME` carries a value the tests recompute:
//!
//! ````text
//! ```hex worked-example:canonical-cbor
//! a2          # map(2)
//!   61 6e     #   text(1) "n"
//!   01        #   unsigned 1
//! ```
//! ````
//!
//! In a `hex` block everything from `#` to the end of a line is a comment and all
//! whitespace is ignored; what remains is the hex of the value. In any other block the
//! whole body, with surrounding whitespace trimmed, is the value.
//!
//! **Marked tables.** The rows of a Markdown table between the lines `<!-- begin:NAME -->`
//! and `<!-- end:NAME -->`, without its header and separator rows, are data; a cell
//! written in backticks stands for the text inside them.

use std::ops::Range;

use crate::SpecError;

/// The info-string prefix of a marked block.
pub const WORKED_EXAMPLE: &str = "worked-example:";

/// One fenced code block of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The info string after the opening fence, trimmed.
    pub info: String,
    /// The lines between the fences, each with its newline.
    pub body: String,
    /// The 1-based line number of the opening fence.
    pub line: usize,
    /// Where `body` sits in the document (byte offsets).
    pub body_range: Range<usize>,
}

impl Block {
    /// The language: the first word of the info string.
    pub fn lang(&self) -> &str {
        self.info.split_whitespace().next().unwrap_or_default()
    }

    /// `NAME` when the info string holds `worked-example:NAME`.
    pub fn worked_example(&self) -> Option<&str> {
        self.info
            .split_whitespace()
            .find_map(|t| t.strip_prefix(WORKED_EXAMPLE))
    }

    /// The value the block states: hex bytes for a `hex` block, trimmed text otherwise.
    pub fn value(&self) -> Result<BlockValue, SpecError> {
        if self.lang() == "hex" {
            hex_block_bytes(&self.body)
                .map(BlockValue::Bytes)
                .map_err(|e| SpecError::Markdown {
                    line: self.line,
                    reason: e.to_string(),
                })
        } else {
            Ok(BlockValue::Text(self.body.trim().to_owned()))
        }
    }
}

/// What a marked block states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockValue {
    /// The bytes of a `hex` block.
    Bytes(Vec<u8>),
    /// The trimmed body of any other block.
    Text(String),
}

/// Every fenced block of `doc`, in order. A fence opens with a line that starts with three
/// backticks and closes with a line of exactly three backticks.
pub fn fenced_blocks(doc: &str) -> Result<Vec<Block>, SpecError> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, usize, usize)> = None;
    let mut offset = 0;
    for (index, line) in doc.split_inclusive('\n').enumerate() {
        let text = line.trim_end_matches(['\n', '\r']);
        let next = offset + line.len();
        match open.take() {
            None => {
                if let Some(info) = text.strip_prefix("```") {
                    open = Some((info.trim().to_owned(), index + 1, next));
                }
            }
            Some((info, start_line, body_start)) => {
                if text.trim_end() == "```" {
                    blocks.push(Block {
                        info,
                        body: doc.get(body_start..offset).unwrap_or_default().to_owned(),
                        line: start_line,
                        body_range: body_start..offset,
                    });
                } else {
                    open = Some((info, start_line, body_start));
                }
            }
        }
        offset = next;
    }
    match open {
        Some((_, line, _)) => Err(SpecError::Markdown {
            line,
            reason: "code block is never closed".into(),
        }),
        None => Ok(blocks),
    }
}

/// The bytes of an annotated hex block: comments (`#` to end of line) and whitespace
/// dropped, the rest read as hex.
pub fn hex_block_bytes(body: &str) -> Result<Vec<u8>, SpecError> {
    let digits: String = body
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(str::chars)
        .filter(|c| !c.is_whitespace())
        .collect();
    hex::decode(&digits).map_err(|e| SpecError::Hex(format!("{e} in {digits:.40}…")))
}

/// `doc` with the body of every block for which `replace` returns `Some` replaced by that
/// text (which should end with a newline).
pub fn replace_blocks(
    doc: &str,
    mut replace: impl FnMut(&Block) -> Result<Option<String>, SpecError>,
) -> Result<String, SpecError> {
    let mut out = String::with_capacity(doc.len());
    let mut copied = 0;
    for block in fenced_blocks(doc)? {
        if let Some(body) = replace(&block)? {
            out.push_str(doc.get(copied..block.body_range.start).unwrap_or_default());
            out.push_str(&body);
            copied = block.body_range.end;
        }
    }
    out.push_str(doc.get(copied..).unwrap_or_default());
    Ok(out)
}

/// The data rows of the table marked `name`, each a list of cells.
pub fn table_rows(doc: &str, name: &str) -> Result<Vec<Vec<String>>, SpecError> {
    let begin = format!("<!-- begin:{name} -->");
    let end = format!("<!-- end:{name} -->");
    let mut inside = None;
    let mut rows = Vec::new();
    for (index, line) in doc.lines().enumerate() {
        let text = line.trim();
        if text == begin {
            inside = Some(index + 1);
            continue;
        }
        if text == end {
            // Drop the header and the separator row.
            return Ok(rows.into_iter().skip(2).collect());
        }
        if inside.is_some() && text.starts_with('|') {
            rows.push(split_row(text));
        }
    }
    Err(SpecError::Markdown {
        line: inside.unwrap_or(0),
        reason: format!("table {name:?} is not marked with {begin} and {end}"),
    })
}

fn split_row(line: &str) -> Vec<String> {
    let inner = line.strip_prefix('|').unwrap_or(line);
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    inner
        .split('|')
        .map(|cell| {
            let cell = cell.trim();
            cell.strip_prefix('`')
                .and_then(|c| c.strip_suffix('`'))
                .unwrap_or(cell)
                .to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "intro\n```hex worked-example:a\n01 02 # one, two\n  03\n```\n\n```text worked-example:b\n  sha256:00\n```\n```rust\nfn x() {}\n```\n<!-- begin:t -->\n| name | value |\n|---|---|\n| `x` | 1 |\n| y | `2` |\n<!-- end:t -->\n";

    #[test]
    fn blocks_labels_and_values() {
        let blocks = fenced_blocks(DOC).unwrap();
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0].worked_example(), Some("a"));
        assert_eq!(blocks[0].line, 2);
        assert_eq!(blocks[0].value().unwrap(), BlockValue::Bytes(vec![1, 2, 3]));
        assert_eq!(
            blocks[1].value().unwrap(),
            BlockValue::Text("sha256:00".into())
        );
        assert_eq!(blocks[2].worked_example(), None);
        assert_eq!(blocks[2].lang(), "rust");
    }

    #[test]
    fn unclosed_block_is_an_error() {
        assert!(fenced_blocks("```hex\n00\n").is_err());
    }

    #[test]
    fn replace_only_touches_chosen_bodies() {
        let out = replace_blocks(DOC, |b| {
            Ok((b.worked_example() == Some("a")).then(|| "ff\n".to_owned()))
        })
        .unwrap();
        assert!(out.contains("```hex worked-example:a\nff\n```\n"));
        assert_eq!(out.len(), DOC.len() - "01 02 # one, two\n  03\n".len() + 3);
    }

    #[test]
    fn tables() {
        assert_eq!(
            table_rows(DOC, "t").unwrap(),
            vec![
                vec!["x".to_owned(), "1".into()],
                vec!["y".into(), "2".into()]
            ]
        );
        assert!(table_rows(DOC, "missing").is_err());
    }

    #[test]
    fn bad_hex_is_an_error() {
        assert!(hex_block_bytes("0g").is_err());
        assert!(hex_block_bytes("012").is_err());
    }
}
