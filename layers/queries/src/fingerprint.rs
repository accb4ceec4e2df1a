//! SQL fingerprints: the shape of a statement, with every value taken out.
//!
//! Two statements that differ only in their literals, placeholders, comments, whitespace or
//! keyword case share one fingerprint, so "the same query, 240 times" is visible:
//!
//! ```
//! use vitals_queries::fingerprint::fingerprint;
//!
//! assert_eq!(
//!     fingerprint("select id, name FROM customers\n WHERE id = $1 -- by id"),
//!     fingerprint("SELECT id, name FROM customers WHERE id = 42"),
//! );
//! assert_eq!(
//!     fingerprint("SELECT * FROM t WHERE id IN (1, 2, 3) AND name = 'x'"),
//!     "SELECT * FROM t WHERE id IN (?) AND name = ?",
//! );
//! ```
//!
//! The tokenizer is small on purpose (no SQL parser): string literals (with `''` escapes and
//! PostgreSQL's `E'…'` and `$tag$…$tag$` forms), numbers, and placeholders (`?`, `?1`, `$1`,
//! `:name`, `@name`) become `?`; `IN (…)` and `VALUES (…), (…)` lists of values collapse to one
//! `(?)`; `--` and `/* */` comments go; whitespace folds; SQL keywords are upper-cased and other
//! unquoted words lower-cased; quoted identifiers are kept as written; a trailing `;` goes.

/// The fingerprint of `sql`. Total: any input gives an answer, never a panic.
pub fn fingerprint(sql: &str) -> String {
    let tokens = collapse_lists(&tokenize(sql));
    render(&tokens)
}

/// A 64-bit hash of a fingerprint (FNV-1a), to group statements without comparing strings.
pub fn fingerprint_hash(fingerprint: &str) -> u64 {
    fingerprint
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// A value: literal, number or placeholder.
    Value,
    /// A keyword (upper-cased) or identifier (lower-cased, or quoted as written).
    Word(String),
    /// Any other character: operators and punctuation.
    Symbol(char),
    /// PostgreSQL's `::` cast.
    Cast,
}

fn tokenize(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '-' if next == Some('-') => i = skip_until(&chars, i, |ch| ch == '\n'),
            '/' if next == Some('*') => i = skip_block_comment(&chars, i + 2),
            '\'' => {
                i = skip_quoted(&chars, i + 1, '\'');
                tokens.push(Token::Value);
            }
            'e' | 'E' | 'x' | 'X' | 'b' | 'B' | 'n' | 'N' if next == Some('\'') => {
                i = skip_quoted(&chars, i + 2, '\'');
                tokens.push(Token::Value);
            }
            '"' | '`' => {
                let end = skip_quoted(&chars, i + 1, c);
                tokens.push(Token::Word(chars[i..end].iter().collect()));
                i = end;
            }
            '[' if !after_identifier(&tokens) => {
                // SQL Server's [identifier]; a subscript after an identifier stays a symbol.
                let end = skip_until(&chars, i, |ch| ch == ']')
                    .saturating_add(1)
                    .min(chars.len());
                tokens.push(Token::Word(chars[i..end].iter().collect()));
                i = end;
            }
            '$' if next.is_some_and(|n| n.is_ascii_digit()) => {
                i = skip_while(&chars, i + 1, |ch| ch.is_ascii_digit());
                tokens.push(Token::Value);
            }
            '$' => {
                if let Some(end) = dollar_quote_end(&chars, i) {
                    i = end;
                    tokens.push(Token::Value);
                } else {
                    tokens.push(Token::Symbol('$'));
                    i += 1;
                }
            }
            '?' => {
                i = skip_while(&chars, i + 1, |ch| ch.is_ascii_digit());
                tokens.push(Token::Value);
            }
            ':' if next == Some(':') => {
                tokens.push(Token::Cast);
                i += 2;
            }
            ':' | '@' if next.is_some_and(is_word_start) => {
                // Named placeholders; `::type` casts are two colons and stay symbols.
                i = skip_while(&chars, i + 1, is_word_char);
                tokens.push(Token::Value);
            }
            '-' if next.is_some_and(|n| n.is_ascii_digit()) && unary_position(&tokens) => {
                // A negative literal (`= -1`, `VALUES (-2)`), not a subtraction.
                i = skip_number(&chars, i + 1);
                tokens.push(Token::Value);
            }
            c if c.is_ascii_digit()
                || (c == '.'
                    && next.is_some_and(|n| n.is_ascii_digit())
                    && !after_word(&tokens)) =>
            {
                i = skip_number(&chars, i);
                tokens.push(Token::Value);
            }
            c if is_word_start(c) => {
                let end = skip_while(&chars, i, is_word_char);
                let word: String = chars[i..end].iter().collect();
                tokens.push(Token::Word(fold_word(&word)));
                i = end;
            }
            c => {
                tokens.push(Token::Symbol(c));
                i += 1;
            }
        }
    }
    while tokens.last() == Some(&Token::Symbol(';')) {
        tokens.pop();
    }
    tokens
}

fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

fn after_identifier(tokens: &[Token]) -> bool {
    matches!(tokens.last(), Some(Token::Word(w)) if !is_keyword(w))
}

/// Whether a `-` here is a sign: at the start, after an operator, `(`, `,` or a keyword.
fn unary_position(tokens: &[Token]) -> bool {
    match tokens.last() {
        None => true,
        Some(Token::Symbol(c)) => !matches!(c, ')' | ']'),
        Some(Token::Word(w)) => is_keyword(w),
        Some(Token::Value | Token::Cast) => false,
    }
}

fn after_word(tokens: &[Token]) -> bool {
    matches!(tokens.last(), Some(Token::Word(_)))
}

fn skip_while(chars: &[char], mut i: usize, keep: impl Fn(char) -> bool) -> usize {
    while chars.get(i).is_some_and(|&c| keep(c)) {
        i += 1;
    }
    i
}

fn skip_until(chars: &[char], i: usize, stop: impl Fn(char) -> bool) -> usize {
    skip_while(chars, i, |c| !stop(c))
}

fn skip_block_comment(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
            return i + 2;
        }
        i += 1;
    }
    i
}

/// Past the closing `quote` (a doubled quote is an escaped one; so is a backslash-escaped one).
fn skip_quoted(chars: &[char], mut i: usize, quote: char) -> usize {
    while let Some(&c) = chars.get(i) {
        if c == '\\' && quote == '\'' {
            i += 2;
        } else if c == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// A PostgreSQL dollar-quoted string starting at `start` (`$$…$$` or `$tag$…$tag$`).
fn dollar_quote_end(chars: &[char], start: usize) -> Option<usize> {
    let tag_end = skip_while(chars, start + 1, |c| c.is_alphanumeric() || c == '_');
    if chars.get(tag_end) != Some(&'$') {
        return None;
    }
    let tag = &chars[start..=tag_end];
    let body = tag_end + 1;
    (body..=chars.len().saturating_sub(tag.len()))
        .find(|&i| chars[i..i + tag.len()] == *tag)
        .map(|i| i + tag.len())
        .or(Some(chars.len()))
}

fn skip_number(chars: &[char], i: usize) -> usize {
    if chars.get(i) == Some(&'0') && matches!(chars.get(i + 1), Some('x' | 'X')) {
        return skip_while(chars, i + 2, |c| c.is_ascii_hexdigit());
    }
    let mut end = skip_while(chars, i, |c| c.is_ascii_digit() || c == '.');
    if matches!(chars.get(end), Some('e' | 'E')) {
        let exponent = if matches!(chars.get(end + 1), Some('+' | '-')) {
            end + 2
        } else {
            end + 1
        };
        if chars.get(exponent).is_some_and(char::is_ascii_digit) {
            end = skip_while(chars, exponent, |c| c.is_ascii_digit());
        }
    }
    end
}

fn is_keyword(word: &str) -> bool {
    KEYWORDS.binary_search(&word).is_ok()
}

/// Upper-cases keywords, lower-cases other words.
fn fold_word(word: &str) -> String {
    let upper = word.to_ascii_uppercase();
    if KEYWORDS.binary_search(&upper.as_str()).is_ok() {
        upper
    } else {
        word.to_lowercase()
    }
}

/// Replaces `IN (?, ?, …)` and `VALUES (…), (…)` (values only) with a single `(?)`.
fn collapse_lists(tokens: &[Token]) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let keyword = match &tokens[i] {
            Token::Word(w) if w == "IN" || w == "VALUES" => Some(w.clone()),
            _ => None,
        };
        out.push(tokens[i].clone());
        i += 1;
        let Some(keyword) = keyword else { continue };
        let mut end = i;
        let mut groups = 0;
        while let Some(after) = value_group_end(tokens, end) {
            groups += 1;
            end = after;
            // VALUES takes several groups separated by commas; IN takes one.
            if keyword == "VALUES"
                && tokens.get(end) == Some(&Token::Symbol(','))
                && value_group_end(tokens, end + 1).is_some()
            {
                end += 1;
                continue;
            }
            break;
        }
        if groups > 0 {
            out.extend([Token::Symbol('('), Token::Value, Token::Symbol(')')]);
            i = end;
        }
    }
    out
}

/// If `tokens[start..]` opens with `( value, value, … )`, the index just past `)`.
fn value_group_end(tokens: &[Token], start: usize) -> Option<usize> {
    if tokens.get(start) != Some(&Token::Symbol('(')) {
        return None;
    }
    let mut i = start + 1;
    let mut expect_value = true;
    loop {
        match (tokens.get(i)?, expect_value) {
            (Token::Value, true) => expect_value = false,
            (Token::Symbol(','), false) => expect_value = true,
            (Token::Symbol(')'), false) => return Some(i + 1),
            _ => return None,
        }
        i += 1;
    }
}

fn render(tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut previous: Option<&Token> = None;
    for token in tokens {
        let glue = match (previous, token) {
            // Casts, and calls or subscripts on names (`count(`, `t(a, b)`, `arr[`) read
            // better without spaces; keywords keep theirs (`IN (`, `VALUES (`).
            (None | Some(Token::Symbol('(' | '[' | '.') | Token::Cast), _)
            | (_, Token::Symbol(',' | ')' | ']' | '.' | ';') | Token::Cast) => true,
            (Some(Token::Word(word)), Token::Symbol('(' | '[')) => !is_keyword(word),
            _ => false,
        };
        if !glue {
            out.push(' ');
        }
        match token {
            Token::Value => out.push('?'),
            Token::Word(word) => out.push_str(word),
            Token::Symbol(c) => out.push(*c),
            Token::Cast => out.push_str("::"),
        }
        previous = Some(token);
    }
    out
}

/// Keywords that are upper-cased, sorted for binary search.
const KEYWORDS: &[&str] = &[
    "ALL",
    "ALTER",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BEGIN",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "COMMIT",
    "CONFLICT",
    "CREATE",
    "CROSS",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DO",
    "DROP",
    "ELSE",
    "END",
    "EXCEPT",
    "EXISTS",
    "FALSE",
    "FETCH",
    "FOR",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "IF",
    "IGNORE",
    "ILIKE",
    "IN",
    "INNER",
    "INSERT",
    "INTERSECT",
    "INTO",
    "IS",
    "JOIN",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCK",
    "NOT",
    "NOTHING",
    "NULL",
    "NULLS",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "PRAGMA",
    "RELEASE",
    "REPLACE",
    "RETURNING",
    "RIGHT",
    "ROLLBACK",
    "SAVEPOINT",
    "SELECT",
    "SET",
    "SHARE",
    "TABLE",
    "THEN",
    "TRUE",
    "TRUNCATE",
    "UNION",
    "UPDATE",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WITH",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_sorted() {
        assert!(KEYWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn literals_and_placeholders_become_question_marks() {
        for (sql, expected) in [
            (
                "SELECT id, name, email FROM customers WHERE id = $1",
                "SELECT id, name, email FROM customers WHERE id = ?",
            ),
            (
                "select * from t where id = ?",
                "SELECT * FROM t WHERE id = ?",
            ),
            (
                "SELECT * FROM t WHERE id = ?3",
                "SELECT * FROM t WHERE id = ?",
            ),
            (
                "SELECT * FROM t WHERE a = :name AND b = @p1",
                "SELECT * FROM t WHERE a = ? AND b = ?",
            ),
            (
                "SELECT * FROM t WHERE a = 'it''s' AND b = 'x\\'y'",
                "SELECT * FROM t WHERE a = ? AND b = ?",
            ),
            (
                "SELECT * FROM t WHERE a = E'esc\\n' AND b = X'ff'",
                "SELECT * FROM t WHERE a = ? AND b = ?",
            ),
            ("SELECT $$a 'b' c$$, $fn$ body $fn$", "SELECT ?, ?"),
            (
                "SELECT 1, 2.5, .5, 1e10, 3E-2, 0xFF",
                "SELECT ?, ?, ?, ?, ?, ?",
            ),
            (
                "SELECT -1, a - 1, (-2.5), x = -3",
                "SELECT ?, a - ?, (?), x = ?",
            ),
            ("SELECT a::int FROM t", "SELECT a::int FROM t"),
            ("SELECT t.a, t2.b FROM t", "SELECT t.a, t2.b FROM t"),
            (
                "SELECT COUNT(*) AS n FROM orders",
                "SELECT count(*) AS n FROM orders",
            ),
        ] {
            assert_eq!(fingerprint(sql), expected, "{sql}");
        }
    }

    #[test]
    fn comments_whitespace_case_and_trailing_semicolons_fold() {
        let variants = [
            "SELECT id FROM orders WHERE customer_id = 7",
            "select ID from ORDERS where CUSTOMER_ID = 8;",
            "\n\n  SELECT  id\n\tFROM orders -- recent\n WHERE customer_id = $1 ;; ",
            "/* app:shop */ SELECT id FROM orders WHERE /* x */ customer_id = ?",
        ];
        for variant in variants {
            assert_eq!(
                fingerprint(variant),
                "SELECT id FROM orders WHERE customer_id = ?",
                "{variant}"
            );
        }
    }

    #[test]
    fn quoted_identifiers_are_kept() {
        assert_eq!(
            fingerprint(r#"SELECT "Name", `Order` FROM "My Table" WHERE [Key] = 1"#),
            r#"SELECT "Name", `Order` FROM "My Table" WHERE [Key] = ?"#
        );
        assert_eq!(fingerprint("SELECT arr[1] FROM t"), "SELECT arr[?] FROM t");
    }

    #[test]
    fn in_and_values_lists_collapse() {
        assert_eq!(
            fingerprint("SELECT * FROM t WHERE id IN (1, 2, 3)"),
            fingerprint("SELECT * FROM t WHERE id IN ($1)")
        );
        assert_eq!(
            fingerprint("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), ($1, $2)"),
            "INSERT INTO t(a, b) VALUES (?)"
        );
        assert_eq!(
            fingerprint("INSERT INTO t(a) VALUES (?) ON CONFLICT DO NOTHING"),
            "INSERT INTO t(a) VALUES (?) ON CONFLICT DO NOTHING"
        );
        // A subquery is not a list of values.
        assert_eq!(
            fingerprint("SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = 1)"),
            "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = ?)"
        );
        // Expressions stay.
        assert_eq!(fingerprint("VALUES (1 + 2)"), "VALUES (? + ?)");
    }

    #[test]
    fn mysql_and_sqlite_flavours() {
        assert_eq!(
            fingerprint("SELECT `id` FROM `users` WHERE `email` = 'a@b.c' LIMIT 10"),
            "SELECT `id` FROM `users` WHERE `email` = ? LIMIT ?"
        );
        assert_eq!(
            fingerprint("PRAGMA foreign_keys = ON"),
            "PRAGMA foreign_keys = ON"
        );
        assert_eq!(
            fingerprint("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)"),
            "INSERT OR REPLACE INTO kv(k, v) VALUES (?)"
        );
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for sql in [
            "SELECT 'open",
            "/* open",
            "SELECT $tag$ open",
            "SELECT \"open",
            "[",
            "$",
            "e'",
            "0x",
            "1e",
            ":",
            "@",
            "?",
        ] {
            let _ = fingerprint(sql);
        }
        assert_eq!(fingerprint(""), "");
    }

    #[test]
    fn hashes_differ_for_different_fingerprints() {
        let a = fingerprint_hash(&fingerprint("SELECT 1"));
        let b = fingerprint_hash(&fingerprint("SELECT 2"));
        let c = fingerprint_hash(&fingerprint("SELECT a"));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
