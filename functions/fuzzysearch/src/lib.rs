//! The word-level fuzzy search shared by `fuzzysearch` (command module) and
//! `fuzzysearch-http` (wasi:http component), so both count the same way.
//!
//! Words are runs of alphanumeric characters, compared case-insensitively; a
//! word matches when its normalized Levenshtein similarity
//! `1 - distance / max(len)` is at least the threshold.

/// What a search found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Lines in the text.
    pub lines: usize,
    /// Words in the text.
    pub words: usize,
    /// Words within the threshold.
    pub matches: usize,
    /// Words equal to the pattern.
    pub exact: usize,
    /// Lines with at least one match.
    pub matching_lines: usize,
    /// 1-based numbers of the first `limit` matching lines.
    pub first_lines: Vec<usize>,
}

/// Search `text` for words similar to `pattern` (lower-case chars).
pub fn search_text(text: &str, pattern: &[char], threshold: f64, limit: usize) -> Counts {
    let mut c = Counts::default();
    let mut word: Vec<char> = Vec::with_capacity(64);
    let mut row = Vec::with_capacity(64);
    for (n, line) in text.lines().enumerate() {
        c.lines += 1;
        let mut line_matched = false;
        let mut chars = line.chars().flat_map(char::to_lowercase).peekable();
        while chars.peek().is_some() {
            word.clear();
            for ch in chars.by_ref() {
                if ch.is_alphanumeric() {
                    word.push(ch);
                } else {
                    break;
                }
            }
            if word.is_empty() {
                continue;
            }
            c.words += 1;
            let longest = word.len().max(pattern.len());
            // Cheap length filter before the O(n·m) distance.
            let diff = word.len().abs_diff(pattern.len());
            if 1.0 - (diff as f64 / longest as f64) < threshold {
                continue;
            }
            let d = levenshtein(&word, pattern, &mut row);
            if 1.0 - (d as f64 / longest as f64) >= threshold {
                c.matches += 1;
                c.exact += usize::from(d == 0);
                line_matched = true;
            }
        }
        if line_matched {
            c.matching_lines += 1;
            if c.first_lines.len() < limit {
                c.first_lines.push(n + 1);
            }
        }
    }
    c
}

/// Levenshtein distance between two char slices, `row` is scratch space.
fn levenshtein(a: &[char], b: &[char], row: &mut Vec<usize>) -> usize {
    row.clear();
    row.extend(0..=b.len());
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if ca == cb { diag } else { 1 + diag.min(up).min(row[j]) };
            diag = up;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let p: Vec<char> = "hamlet".chars().collect();
        let c = search_text("Hamlet, prince.\nHamlett and HAMLET\nnothing\nhamlets2 Camlet", &p, 0.8, 10);
        assert_eq!(
            c,
            Counts { lines: 4, words: 8, matches: 4, exact: 2, matching_lines: 3, first_lines: vec![1, 2, 4] }
        );
    }
}
