//! `*` wildcards for originator IDs (`acor`) and target paths (`sbpt`, `scope`).
//!
//! TS-0001 §9.6.2.1 lets an `accessControlOriginators` entry name a set of originators; the
//! Palisade design narrows the wildcard form to `*` = "any run of characters except `/`", so a
//! pattern can never reach into another CSE's or AE's namespace by crossing a path separator
//! (SER-008: nothing is granted that the policy did not name).
//!
//! Why no regular expressions: an originator such as `C.app+(1)` must match only literally, and
//! compiling operator-supplied text into a regex would turn every metacharacter into a hazard.
//! A pattern is therefore split at `/` once, when the configuration is loaded, and each segment
//! is either a literal or a list of literal pieces between `*`s. Matching walks the text's
//! segments in step with the pattern's and never allocates.

/// One `/`-separated segment of a pattern.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    /// No `*`: the text segment must be exactly this.
    Literal(Box<str>),
    /// `pieces[0]*pieces[1]*...*pieces[n-1]` with n >= 2; pieces may be empty.
    Glob(Box<[Box<str>]>),
}

impl Segment {
    fn parse(text: &str) -> Segment {
        if text.contains('*') {
            // `a**b` is the same as `a*b`: empty middle pieces are dropped, prefix and suffix kept.
            let all: Vec<&str> = text.split('*').collect();
            let last = all.len() - 1;
            let pieces = all
                .iter()
                .enumerate()
                .filter(|(i, piece)| *i == 0 || *i == last || !piece.is_empty())
                .map(|(_, piece)| Box::<str>::from(*piece))
                .collect();
            Segment::Glob(pieces)
        } else {
            Segment::Literal(text.into())
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Segment::Literal(literal) => &**literal == text,
            Segment::Glob(pieces) => glob_matches(pieces, text),
        }
    }
}

/// Match `text` (which holds no `/`) against `prefix*mid*...*suffix`. Greedy leftmost placement
/// of each middle piece is optimal for a single kind of wildcard, so this is linear-ish and
/// needs no backtracking.
fn glob_matches(pieces: &[Box<str>], text: &str) -> bool {
    let (prefix, rest) = (&pieces[0], &pieces[1..]);
    let (suffix, middle) = (&rest[rest.len() - 1], &rest[..rest.len() - 1]);
    if text.len() < prefix.len() + suffix.len()
        || !text.starts_with(&**prefix)
        || !text.ends_with(&**suffix)
    {
        return false;
    }
    let mut window = &text[prefix.len()..text.len() - suffix.len()];
    for piece in middle {
        match window.find(&**piece) {
            Some(at) => window = &window[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// A compiled `/`-aware wildcard pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    segments: Box<[Segment]>,
    /// Also match any number (zero included) of further segments: the pattern ended in `/**`
    /// (a path subtree) or the pattern is used as a prefix (`scope`).
    subtree: bool,
}

impl Pattern {
    /// An originator pattern (`acor`): `*` never crosses `/`; `**` has no special meaning
    /// beyond `*`.
    pub fn originator(text: &str) -> Pattern {
        Pattern {
            segments: text.split('/').map(Segment::parse).collect(),
            subtree: false,
        }
    }

    /// A resource path pattern (`sbpt`): like an originator pattern, and a trailing `/**`
    /// stands for the path itself and everything below it.
    pub fn path(text: &str) -> Result<Pattern, String> {
        let (body, subtree) = match text.strip_suffix("/**") {
            Some(body) => (body, true),
            None => (text, false),
        };
        if body.contains("**") {
            return Err(format!(
                "`**` is only allowed as a final `/**` segment in path pattern {text:?}"
            ));
        }
        if body.is_empty() && !subtree {
            return Err("a path pattern must not be empty".into());
        }
        // `/**` leaves an empty body, whose single empty segment is the root every absolute
        // path starts with.
        let segments = body.split('/').map(Segment::parse).collect();
        Ok(Pattern { segments, subtree })
    }

    /// A path prefix (`scope`): the pattern's path and every path below it, on segment
    /// boundaries (`/cse-in/app1` covers `/cse-in/app1/c1` but not `/cse-in/app10`).
    pub fn prefix(text: &str) -> Result<Pattern, String> {
        let body = text.strip_suffix('/').unwrap_or(text);
        if body.is_empty() && !text.is_empty() {
            return Pattern::path("/**");
        }
        let mut pattern = Pattern::path(body)?;
        pattern.subtree = true;
        Ok(pattern)
    }

    pub fn matches(&self, text: &str) -> bool {
        // A hand-rolled split: IDs and paths are short, and `str::split` costs more to set
        // up than the whole comparison.
        let mut rest = Some(text);
        for segment in self.segments.iter() {
            let Some(current) = rest else { return false };
            let (part, tail) = match current.bytes().position(|b| b == b'/') {
                Some(at) => (&current[..at], Some(&current[at + 1..])),
                None => (current, None),
            };
            if !segment.matches(part) {
                return false;
            }
            rest = tail;
        }
        self.subtree || rest.is_none()
    }

    /// Whether the pattern holds a `*` at all; literal patterns are stored as plain strings.
    pub fn has_wildcard(text: &str) -> bool {
        text.contains('*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(pattern: &str, text: &str) -> bool {
        Pattern::originator(pattern).matches(text)
    }

    #[test]
    fn star_matches_any_run_but_not_slash() {
        assert!(o("C*", "CAE1"));
        assert!(o("C*", "C"));
        assert!(!o("C*", "XAE1"));
        assert!(!o("C*", "C/AE1"));
        assert!(o("*", "anything"));
        assert!(!o("*", "/cse-in/CAE1"));
        assert!(o("/cse-in/*", "/cse-in/CAE1"));
        assert!(!o("/cse-in/*", "/cse-in/CAE1/sub"));
        assert!(!o("/cse-*", "/cse-in/CAE1"));
        assert!(o("/*/C*", "/cse-in/CAE1"));
    }

    #[test]
    fn middle_and_suffix_pieces() {
        assert!(o("C*-*-prod", "CAE-1-prod"));
        assert!(o("C*-*-prod", "C--prod"));
        assert!(!o("C*-*-prod", "C-prod"));
        assert!(o("a*a", "aa"));
        assert!(!o("a*a", "a"));
        assert!(o("a*b*c", "abbbc"));
        assert!(o("a**b", "axxb"));
        assert!(!o("*x*", "abc"));
    }

    #[test]
    fn metacharacters_are_literal() {
        assert!(o("C.app+(1)$^[x]\\", "C.app+(1)$^[x]\\"));
        assert!(!o("C.app", "CXapp"));
        assert!(o("C.*", "C.x"));
        assert!(!o("C.*", "Cx"));
        assert!(!o("C+", "CC"));
        assert!(o("^C$*", "^C$1"));
        assert!(!o("[ab]*", "a1"));
    }

    #[test]
    fn paths_and_subtrees() {
        let p = Pattern::path("/cse-in/app1/**").unwrap();
        assert!(p.matches("/cse-in/app1"));
        assert!(p.matches("/cse-in/app1/c1/cin"));
        assert!(!p.matches("/cse-in/app10"));
        let p = Pattern::path("/cse-in/*/c1").unwrap();
        assert!(p.matches("/cse-in/app1/c1"));
        assert!(!p.matches("/cse-in/a/b/c1"));
        assert!(Pattern::path("/a/**/b").is_err());
        assert!(Pattern::path("").is_err());
        let p = Pattern::prefix("/cse-in/app1/").unwrap();
        assert!(p.matches("/cse-in/app1"));
        assert!(p.matches("/cse-in/app1/x"));
        assert!(!p.matches("/cse-in/app10"));
        assert!(!p.matches("/cse-in"));
        let root = Pattern::prefix("/").unwrap();
        assert!(root.matches("/cse-in/x"));
        assert!(!root.matches("cse-in/x"));
        assert!(Pattern::path("/**").unwrap().matches("/a/b"));
    }
}
