//! Byte offsets to lines and columns, the way editors count them.

/// Line starts of one text, to turn byte offsets into 1-based line and
/// column (columns in characters, not bytes).
#[derive(Debug, Clone)]
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// 1-based line and column of byte `offset` (clamped to the text).
    pub fn locate(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|s| *s <= offset).max(1) - 1;
        let start = self.starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line as u32 + 1, column as u32 + 1)
    }

    /// The byte offset of 1-based `line` and `column` (in characters),
    /// clamped to the text: the inverse of [`Self::locate`].
    pub fn offset(&self, line: u64, column: u64) -> usize {
        let Some(&start) = usize::try_from(line)
            .ok()
            .and_then(|l| l.checked_sub(1))
            .and_then(|l| self.starts.get(l))
        else {
            return self.text.len();
        };
        let skip = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
        self.text
            .get(start..)
            .and_then(|rest| rest.char_indices().nth(skip).map(|(i, _)| start + i))
            .unwrap_or(self.text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let idx = LineIndex::new("ab\ncé\n\nx");
        assert_eq!(idx.locate(0), (1, 1));
        assert_eq!(idx.locate(1), (1, 2));
        assert_eq!(idx.locate(3), (2, 1));
        // é is two bytes but one column.
        assert_eq!(idx.locate(6), (2, 3));
        assert_eq!(idx.locate(7), (3, 1));
        assert_eq!(idx.locate(8), (4, 1));
        assert_eq!(idx.locate(99), (4, 2));
        for offset in [0, 1, 3, 6, 7, 8] {
            let (line, column) = idx.locate(offset);
            assert_eq!(idx.offset(line.into(), column.into()), offset);
        }
    }
}
