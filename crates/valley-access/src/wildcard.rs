//! Glob patterns of IAM policies: `*` matches any run of characters (including none), `?`
//! exactly one character, and — in 2012-10-17 policies — `${key}` is replaced by the request
//! context's value for `key` when the pattern is matched. `${*}`, `${?}` and `${$}` stand for a
//! literal `*`, `?` and `$`, so a policy can name keys that contain them.

/// One piece of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Characters matched as they are (a literal `*` from `${*}` lands here too).
    Literal(String),
    /// `*`: any run of characters.
    AnyRun,
    /// `?`: exactly one character.
    AnyOne,
    /// `${key}` or `${key, 'default'}`: the context value of a (normalised) condition key;
    /// `slot` numbers the pattern's variables, where matching finds their resolved values.
    Variable {
        key: String,
        default: Option<String>,
        slot: usize,
    },
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    segments: Vec<Segment>,
    has_variables: bool,
}

/// How a pattern's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax {
    /// `*` and `?` are wildcards (`StringLike`, resources, actions); otherwise literal
    /// (`StringEquals`).
    pub wildcards: bool,
    /// `${...}` is a policy variable (Version 2012-10-17); otherwise literal text, as AWS reads
    /// 2008-10-17 policies.
    pub variables: bool,
}

impl Pattern {
    pub(crate) fn parse(text: &str, syntax: Syntax) -> Pattern {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut variables = 0;
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if syntax.variables
                && rest.starts_with("${")
                && let Some(end) = rest.find('}')
            {
                let inner = &rest[2..end];
                rest = &rest[end + 1..];
                match inner {
                    "*" | "?" | "$" => literal.push_str(inner),
                    _ => {
                        flush(&mut literal, &mut segments);
                        segments.push(parse_variable(inner, variables));
                        variables += 1;
                    }
                }
                continue;
            }
            rest = &rest[c.len_utf8()..];
            match c {
                '*' if syntax.wildcards => {
                    flush(&mut literal, &mut segments);
                    // Consecutive stars match the same as one; keeping one bounds backtracking.
                    if segments.last() != Some(&Segment::AnyRun) {
                        segments.push(Segment::AnyRun);
                    }
                }
                '?' if syntax.wildcards => {
                    flush(&mut literal, &mut segments);
                    segments.push(Segment::AnyOne);
                }
                _ => literal.push(c),
            }
        }
        flush(&mut literal, &mut segments);
        Pattern {
            segments,
            has_variables: variables > 0,
        }
    }

    /// A plain glob (wildcards, no variables).
    pub(crate) fn glob(text: &str) -> Pattern {
        Pattern::parse(
            text,
            Syntax {
                wildcards: true,
                variables: false,
            },
        )
    }

    pub(crate) fn has_wildcards(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::AnyRun | Segment::AnyOne))
    }

    pub(crate) fn has_variables(&self) -> bool {
        self.has_variables
    }

    /// Whether `text` matches. `resolve` gives a variable's value; a variable with neither a
    /// value nor a default makes the pattern match nothing (AWS: the element does not match).
    /// `fold` compares letters case-insensitively (action names, `...IgnoreCase`).
    pub(crate) fn matches<'v>(&self, text: &str, fold: bool, resolve: &dyn Fn(&str) -> Option<&'v str>) -> bool {
        if !self.has_variables {
            return match_segments(&self.segments, &[], text, fold);
        }
        // Resolved once, before matching, so backtracking does not look keys up again.
        let mut values: Vec<&str> = Vec::new();
        for segment in &self.segments {
            if let Segment::Variable { key, default, .. } = segment {
                match resolve(key).or(default.as_deref()) {
                    Some(value) => values.push(value),
                    None => return false,
                }
            }
        }
        match_segments(&self.segments, &values, text, fold)
    }

    /// Whether `text` matches, for patterns without variables.
    pub(crate) fn matches_plain(&self, text: &str, fold: bool) -> bool {
        self.matches(text, fold, &|_| None)
    }
}

fn flush(literal: &mut String, segments: &mut Vec<Segment>) {
    if !literal.is_empty() {
        segments.push(Segment::Literal(std::mem::take(literal)));
    }
}

/// `aws:username` or `aws:username, 'nobody'`.
fn parse_variable(inner: &str, slot: usize) -> Segment {
    let (key, default) = match inner.split_once(',') {
        Some((key, default)) => {
            let default = default.trim();
            let default = default
                .strip_prefix('\'')
                .and_then(|d| d.strip_suffix('\''))
                .unwrap_or(default);
            (key.trim(), Some(default.to_owned()))
        }
        None => (inner.trim(), None),
    };
    Segment::Variable {
        key: crate::context::normalize_key(key).into_owned(),
        default,
        slot,
    }
}

/// Whether the literal `lit` is a prefix of `text`, returning the rest.
fn strip_literal<'t>(text: &'t str, lit: &str, fold: bool) -> Option<&'t str> {
    if !fold {
        return text.strip_prefix(lit);
    }
    if lit.is_ascii() {
        // The common case (action names): compare bytes. An ASCII byte never sits inside a
        // multi-byte character, so a match ends on a character boundary.
        let n = lit.len();
        return (text.len() >= n && text.as_bytes()[..n].eq_ignore_ascii_case(lit.as_bytes())).then(|| &text[n..]);
    }
    let mut t = text.char_indices();
    for lc in lit.chars() {
        let (_, tc) = t.next()?;
        if !chars_equal_folded(lc, tc) {
            return None;
        }
    }
    Some(t.next().map_or("", |(i, _)| &text[i..]))
}

fn chars_equal_folded(a: char, b: char) -> bool {
    a == b || (a.is_ascii() && b.is_ascii() && a.eq_ignore_ascii_case(&b)) || {
        !a.is_ascii() && a.to_lowercase().eq(b.to_lowercase())
    }
}

/// Greedy matching with backtracking to the last `*` only: when a later piece fails, the most
/// recent star absorbs one more character. That is enough (an earlier star never needs to
/// change once a later one is placed) and keeps the cost at O(pattern × text) — no exponential
/// blow-up on hostile patterns such as `*a*a*a*a*b`.
/// `values` holds the resolved value of each variable, by slot.
fn match_segments(segments: &[Segment], values: &[&str], text: &str, fold: bool) -> bool {
    let mut si = 0; // next segment
    let mut ti = 0; // byte offset in text
    let mut star: Option<(usize, usize)> = None; // (segment after the star, text offset it took up to)
    loop {
        if si < segments.len() {
            let rest = &text[ti..];
            match &segments[si] {
                Segment::AnyRun => {
                    star = Some((si + 1, ti));
                    si += 1;
                    continue;
                }
                Segment::AnyOne => {
                    if let Some(c) = rest.chars().next() {
                        ti += c.len_utf8();
                        si += 1;
                        continue;
                    }
                }
                Segment::Literal(lit) => {
                    if let Some(after) = strip_literal(rest, lit, fold) {
                        ti = text.len() - after.len();
                        si += 1;
                        continue;
                    }
                }
                Segment::Variable { slot, .. } => {
                    if let Some(after) = strip_literal(rest, values[*slot], fold) {
                        ti = text.len() - after.len();
                        si += 1;
                        continue;
                    }
                }
            }
        } else if ti == text.len() {
            return true;
        }
        // Mismatch: let the last star take one more character, or fail.
        match star {
            Some((after_star, taken)) => match text[taken..].chars().next() {
                Some(c) => {
                    let taken = taken + c.len_utf8();
                    star = Some((after_star, taken));
                    si = after_star;
                    ti = taken;
                }
                None => return false,
            },
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious exponential definition, to check the fast matcher against.
    fn reference(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|i| reference(rest, &text[i..])),
            Some(('?', rest)) => !text.is_empty() && reference(rest, &text[1..]),
            Some((c, rest)) => text.first() == Some(c) && reference(rest, &text[1..]),
        }
    }

    fn glob_matches(p: &str, t: &str) -> bool {
        Pattern::glob(p).matches_plain(t, false)
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(glob_matches("arn:aws:s3:::b/*", "arn:aws:s3:::b/"));
        assert!(glob_matches("arn:aws:s3:::b/*", "arn:aws:s3:::b/x/y"));
        assert!(!glob_matches("arn:aws:s3:::b/*", "arn:aws:s3:::b"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "ac"));
        assert!(glob_matches("a?c", "aéc"), "? is one character, not one byte");
        assert!(glob_matches("*a*b", "xxaxxab"));
        assert!(!glob_matches("*a*b", "xxaxxa"));
        assert!(glob_matches("", ""));
        assert!(!glob_matches("", "x"));
        assert!(glob_matches("*", ""));
    }

    #[test]
    fn folding_is_for_letters_only() {
        let p = Pattern::glob("s3:get*");
        assert!(p.matches_plain("s3:GetObject", true));
        assert!(!p.matches_plain("s3:GetObject", false));
        assert!(!p.matches_plain("s3:PutObject", true));
    }

    #[test]
    fn literal_syntax_keeps_wildcards_as_text() {
        let p = Pattern::parse(
            "a*b",
            Syntax {
                wildcards: false,
                variables: true,
            },
        );
        assert!(p.matches_plain("a*b", false));
        assert!(!p.matches_plain("axxb", false));
    }

    #[test]
    fn variables_and_escapes() {
        let syntax = Syntax {
            wildcards: true,
            variables: true,
        };
        let p = Pattern::parse("home/${aws:username}/*", syntax);
        let alice = |k: &str| (k == "aws:username").then_some("alice");
        assert!(p.matches("home/alice/x", false, &alice));
        assert!(!p.matches("home/bob/x", false, &alice));
        assert!(!p.matches("home/alice/x", false, &|_| None), "unresolved variable");
        let escaped = Pattern::parse("a${*}b${?}${$}", syntax);
        assert!(escaped.matches_plain("a*b?$", false));
        assert!(!escaped.matches_plain("axb?$", false), "${{*}} is a literal star");
        let defaulted = Pattern::parse("${aws:username, 'nobody'}", syntax);
        assert!(defaulted.matches_plain("nobody", false));
        let old = Pattern::parse(
            "${aws:username}",
            Syntax {
                wildcards: true,
                variables: false,
            },
        );
        assert!(
            old.matches_plain("${aws:username}", false),
            "2008-10-17 reads it literally"
        );
        assert!(Pattern::parse("x${aws:UserName}", syntax).has_variables());
    }

    #[test]
    fn hostile_pattern_is_fast() {
        let pattern = "*a".repeat(200) + "b";
        let text = "a".repeat(5000);
        assert!(!glob_matches(&pattern, &text));
    }

    proptest! {
        #[test]
        fn agrees_with_reference(pattern in "[ab*?]{0,10}", text in "[ab]{0,12}") {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(glob_matches(&pattern, &text), reference(&p, &t));
        }

        #[test]
        fn agrees_with_reference_on_wider_alphabet(pattern in "[a-cé/*?]{0,8}", text in "[a-cé/]{0,10}") {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(glob_matches(&pattern, &text), reference(&p, &t));
        }

        #[test]
        fn every_text_matches_itself_escaped(text in "[a-z*?/]{0,12}") {
            let escaped = text.replace('*', "${*}").replace('?', "${?}");
            let p = Pattern::parse(&escaped, Syntax { wildcards: true, variables: true });
            prop_assert!(p.matches_plain(&text, false));
        }
    }
}
