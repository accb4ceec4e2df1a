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
//! PostgreSQL's `E'…'` and `$tag$…$tag$` forms), numbers, `TRUE`/`FALSE`, and placeholders (`?`, `?1`, `$1`,
//! `:name`, `@name`) become `?`; `IN (…)` and `VALUES (…), (…)` lists of values collapse to one
//! `(?)`; `--` and `/* */` comments go; whitespace folds; SQL keywords are upper-cased and other
//! unquoted words lower-cased; quoted identifiers are kept as written; a trailing `;` goes.
//!
//! What a double-quoted `"…"` is depends on the database: an identifier in standard SQL
//! (PostgreSQL), a string in MySQL and MariaDB, and in SQLite an identifier that becomes a
//! string where no such column exists. [`fingerprint_in`] takes the [`SqlDialect`], so a
//! literal such as `WHERE email = "a@b.c"` never reaches a fingerprint (where it would leak
//! user data into logs and split one N+1 into many):
//!
//! ```
//! use vitals_queries::fingerprint::{SqlDialect, fingerprint_in};
//!
//! let sql = r#"SELECT id FROM users WHERE email = "a@b.c""#;
//! assert_eq!(fingerprint_in(sql, SqlDialect::MySql), "SELECT id FROM users WHERE email = ?");
//! assert_eq!(fingerprint_in(sql, SqlDialect::Sqlite), "SELECT id FROM users WHERE email = ?");
//! assert_eq!(fingerprint_in(sql, SqlDialect::Standard), sql);
//! ```

/// The SQL dialect a statement is written in, as far as fingerprints care: what `"…"` means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SqlDialect {
    /// Standard SQL (PostgreSQL, SQL Server, Oracle, …): `"…"` is a quoted identifier.
    #[default]
    Standard,
    /// MySQL and MariaDB: `"…"` is a string literal (unless the server runs with
    /// `ANSI_QUOTES`, where it is an identifier and [`Standard`](Self::Standard) fits).
    MySql,
    /// SQLite: `"…"` is an identifier, but SQLite accepts it as a string where no column has
    /// that name. It is taken as a literal where a value stands: after a comparison operator,
    /// `LIKE`, `GLOB` or `IS`, and inside `IN (…)` and `VALUES (…)` lists.
    Sqlite,
}

impl SqlDialect {
    /// The dialect of a database named by OpenTelemetry's `db.system.name` (or the legacy
    /// `db.system`): `mysql` and `mariadb` → [`MySql`](Self::MySql), `sqlite` →
    /// [`Sqlite`](Self::Sqlite), anything else → [`Standard`](Self::Standard).
    pub fn from_db_system(name: &str) -> Self {
        let name = name.trim();
        if name.eq_ignore_ascii_case("mysql") || name.eq_ignore_ascii_case("mariadb") {
            Self::MySql
        } else if name.eq_ignore_ascii_case("sqlite") {
            Self::Sqlite
        } else {
            Self::Standard
        }
    }
}

/// The fingerprint of `sql` in standard SQL. Total: any input gives an answer, never a panic.
pub fn fingerprint(sql: &str) -> String {
    fingerprint_in(sql, SqlDialect::Standard)
}

/// The fingerprint of `sql` written in `dialect`. Total: any input gives an answer.
pub fn fingerprint_in(sql: &str, dialect: SqlDialect) -> String {
    let tokens = collapse_lists(&tokenize(sql, dialect));
    render(&tokens, sql.len())
}

/// A 64-bit hash of a fingerprint (FNV-1a), to group statements without comparing strings.
pub fn fingerprint_hash(fingerprint: &str) -> u64 {
    fingerprint
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// Tokens borrow from the statement: tokenizing allocates only the token list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'a> {
    /// A value: literal, number or placeholder.
    Value,
    /// An unquoted word: a keyword (rendered upper-case) or an identifier (lower-case).
    Word(&'a str),
    /// A quoted identifier, rendered as written.
    Quoted(&'a str),
    /// Any other character: operators and punctuation.
    Symbol(u8),
    /// PostgreSQL's `::` cast.
    Cast,
}

fn tokenize(sql: &str, dialect: SqlDialect) -> Vec<Token<'_>> {
    let bytes = sql.as_bytes();
    let slice = |from: usize, to: usize| sql.get(from..to.min(bytes.len())).unwrap_or_default();
    let mut tokens = Vec::with_capacity(bytes.len() / 4);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let next = bytes.get(i + 1).copied();
        match b {
            b if b.is_ascii_whitespace() => i += 1,
            b'-' if next == Some(b'-') => i = skip_while(bytes, i, |c| c != b'\n'),
            b'/' if next == Some(b'*') => i = skip_block_comment(bytes, i + 2),
            b'\'' => {
                i = skip_quoted(bytes, i + 1, b'\'');
                tokens.push(Token::Value);
            }
            b'e' | b'E' | b'x' | b'X' | b'b' | b'B' | b'n' | b'N' if next == Some(b'\'') => {
                i = skip_quoted(bytes, i + 2, b'\'');
                tokens.push(Token::Value);
            }
            b'"' | b'`' => {
                let end = skip_quoted(bytes, i + 1, b);
                let string = b == b'"'
                    && match dialect {
                        SqlDialect::Standard => false,
                        SqlDialect::MySql => true,
                        SqlDialect::Sqlite => {
                            value_position(&tokens) && bytes.get(end) != Some(&b'.')
                        }
                    };
                if string {
                    tokens.push(Token::Value);
                } else {
                    tokens.push(Token::Quoted(slice(i, end)));
                }
                i = end;
            }
            b'[' if !after_identifier(&tokens) => {
                // SQL Server's [identifier]; a subscript after an identifier stays a symbol.
                let end = skip_while(bytes, i, |c| c != b']').saturating_add(1);
                tokens.push(Token::Quoted(slice(i, end)));
                i = end.min(bytes.len());
            }
            b'$' if next.is_some_and(|n| n.is_ascii_digit()) => {
                i = skip_while(bytes, i + 1, |c| c.is_ascii_digit());
                tokens.push(Token::Value);
            }
            b'$' => {
                if let Some(end) = dollar_quote_end(bytes, i) {
                    i = end;
                    tokens.push(Token::Value);
                } else {
                    tokens.push(Token::Symbol(b'$'));
                    i += 1;
                }
            }
            b'?' => {
                i = skip_while(bytes, i + 1, |c| c.is_ascii_digit());
                tokens.push(Token::Value);
            }
            b':' if next == Some(b':') => {
                tokens.push(Token::Cast);
                i += 2;
            }
            b':' | b'@' if next.is_some_and(is_word_start) => {
                // Named placeholders.
                i = skip_while(bytes, i + 1, is_word_byte);
                tokens.push(Token::Value);
            }
            b'-' if starts_number(bytes, i + 1) && unary_position(&tokens) => {
                // A negative literal (`= -1`, `= -.5`, `VALUES (-2)`), not a subtraction.
                i = skip_number(bytes, i + 1);
                tokens.push(Token::Value);
            }
            b if b.is_ascii_digit()
                || (b == b'.' && starts_number(bytes, i) && !after_word(&tokens)) =>
            {
                i = skip_number(bytes, i);
                tokens.push(Token::Value);
            }
            b if is_word_start(b) => {
                let end = skip_while(bytes, i, is_word_byte);
                let word = slice(i, end);
                // Boolean literals are values like any other.
                if word.eq_ignore_ascii_case("true") || word.eq_ignore_ascii_case("false") {
                    tokens.push(Token::Value);
                } else {
                    tokens.push(Token::Word(word));
                }
                i = end;
            }
            b => {
                tokens.push(Token::Symbol(b));
                i += 1;
            }
        }
    }
    while tokens.last() == Some(&Token::Symbol(b';')) {
        tokens.pop();
    }
    tokens
}

/// Letters, `_`, and any non-ASCII byte: multi-byte characters are kept whole inside words.
fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || !b.is_ascii()
}

fn is_word_byte(b: u8) -> bool {
    is_word_start(b) || b.is_ascii_digit() || b == b'$'
}

/// Whether a number starts at `i`: a digit, or a `.` and a digit (`.5`).
fn starts_number(bytes: &[u8], i: usize) -> bool {
    match bytes.get(i) {
        Some(b) if b.is_ascii_digit() => true,
        Some(b'.') => bytes.get(i + 1).is_some_and(u8::is_ascii_digit),
        _ => false,
    }
}

fn after_identifier(tokens: &[Token<'_>]) -> bool {
    match tokens.last() {
        Some(Token::Word(w)) => !is_keyword(w),
        Some(Token::Quoted(_)) => true,
        _ => false,
    }
}

/// Whether a `-` here is a sign: at the start, after an operator, `(`, `,` or a keyword.
///
/// After an operand (a value, a name, `)`) it is a subtraction, however it is spaced, as the
/// SQL grammar reads it: `a -1`, `a-1` and `a - 1` all fingerprint as `a - ?`. Whitespace must
/// not change a fingerprint, so `-` cannot be a sign there even when it touches the digits.
fn unary_position(tokens: &[Token<'_>]) -> bool {
    match tokens.last() {
        None => true,
        Some(Token::Symbol(c)) => !matches!(c, b')' | b']'),
        Some(Token::Word(w)) => is_keyword(w),
        Some(Token::Value | Token::Cast | Token::Quoted(_)) => false,
    }
}

/// Whether a value stands here for certain: after a comparison operator, `LIKE`, `GLOB` or
/// `IS` (and `NOT`), or in an `IN (…)` / `VALUES (…)` list of values so far.
fn value_position(tokens: &[Token<'_>]) -> bool {
    match tokens.last() {
        Some(Token::Symbol(b'=' | b'<' | b'>')) => true,
        Some(word @ Token::Word(_)) => ["LIKE", "GLOB", "IS", "NOT"]
            .iter()
            .any(|keyword| is_keyword_named(word, keyword)),
        Some(Token::Symbol(b'(' | b',')) => {
            // Back over `value ,` pairs to the `(`; a list of values opens after IN or VALUES.
            let mut i = tokens.len();
            loop {
                i -= 1;
                match tokens.get(i) {
                    Some(Token::Symbol(b'(')) => {
                        return i
                            .checked_sub(1)
                            .and_then(|j| tokens.get(j))
                            .is_some_and(|t| {
                                is_keyword_named(t, "IN") || is_keyword_named(t, "VALUES")
                            });
                    }
                    Some(Token::Symbol(b',') | Token::Value) if i > 0 => {}
                    _ => return false,
                }
            }
        }
        _ => false,
    }
}

fn after_word(tokens: &[Token<'_>]) -> bool {
    matches!(tokens.last(), Some(Token::Word(_) | Token::Quoted(_)))
}

fn skip_while(bytes: &[u8], mut i: usize, keep: impl Fn(u8) -> bool) -> usize {
    while bytes.get(i).is_some_and(|&b| keep(b)) {
        i += 1;
    }
    i
}

fn skip_block_comment(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() {
        if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            return i + 2;
        }
        i += 1;
    }
    i
}

/// Past the closing `quote` (a doubled quote is an escaped one; so is a backslash-escaped one).
fn skip_quoted(bytes: &[u8], mut i: usize, quote: u8) -> usize {
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' && quote == b'\'' {
            i += 2;
        } else if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// A PostgreSQL dollar-quoted string starting at `start` (`$$…$$` or `$tag$…$tag$`).
fn dollar_quote_end(bytes: &[u8], start: usize) -> Option<usize> {
    let tag_end = skip_while(bytes, start + 1, |b| b.is_ascii_alphanumeric() || b == b'_');
    if bytes.get(tag_end) != Some(&b'$') {
        return None;
    }
    let tag = &bytes[start..=tag_end];
    let body = tag_end + 1;
    Some(
        bytes
            .get(body..)
            .and_then(|rest| rest.windows(tag.len()).position(|w| w == tag))
            .map_or(bytes.len(), |at| body + at + tag.len()),
    )
}

fn skip_number(bytes: &[u8], i: usize) -> usize {
    if bytes.get(i) == Some(&b'0') && matches!(bytes.get(i + 1), Some(b'x' | b'X')) {
        return skip_while(bytes, i + 2, |b| b.is_ascii_hexdigit());
    }
    let mut end = skip_while(bytes, i, |b| b.is_ascii_digit() || b == b'.');
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let exponent = if matches!(bytes.get(end + 1), Some(b'+' | b'-')) {
            end + 2
        } else {
            end + 1
        };
        if bytes.get(exponent).is_some_and(u8::is_ascii_digit) {
            end = skip_while(bytes, exponent, |b| b.is_ascii_digit());
        }
    }
    end
}

/// Whether `word` is a keyword, in any case, without allocating.
fn is_keyword(word: &str) -> bool {
    KEYWORDS
        .binary_search_by(|keyword| {
            keyword
                .bytes()
                .cmp(word.bytes().map(|b| b.to_ascii_uppercase()))
        })
        .is_ok()
}

fn is_keyword_named(token: &Token<'_>, name: &str) -> bool {
    matches!(token, Token::Word(w) if w.eq_ignore_ascii_case(name))
}

/// Replaces `IN (?, ?, …)` and `VALUES (…), (…)` (values only) with a single `(?)`.
fn collapse_lists<'a>(tokens: &[Token<'a>]) -> Vec<Token<'a>> {
    let mut out: Vec<Token<'a>> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while let Some(&token) = tokens.get(i) {
        out.push(token);
        i += 1;
        let is_values = is_keyword_named(&token, "VALUES");
        if !is_values && !is_keyword_named(&token, "IN") {
            continue;
        }
        let mut end = i;
        let mut groups = 0;
        while let Some(after) = value_group_end(tokens, end) {
            groups += 1;
            end = after;
            // VALUES takes several groups separated by commas; IN takes one.
            if is_values
                && tokens.get(end) == Some(&Token::Symbol(b','))
                && value_group_end(tokens, end + 1).is_some()
            {
                end += 1;
                continue;
            }
            break;
        }
        if groups > 0 {
            out.extend([Token::Symbol(b'('), Token::Value, Token::Symbol(b')')]);
            i = end;
        }
    }
    out
}

/// If `tokens[start..]` opens with `( value, value, … )`, the index just past `)`.
fn value_group_end(tokens: &[Token<'_>], start: usize) -> Option<usize> {
    if tokens.get(start) != Some(&Token::Symbol(b'(')) {
        return None;
    }
    let mut i = start + 1;
    let mut expect_value = true;
    loop {
        match (tokens.get(i)?, expect_value) {
            (Token::Value, true) => expect_value = false,
            (Token::Symbol(b','), false) => expect_value = true,
            (Token::Symbol(b')'), false) => return Some(i + 1),
            _ => return None,
        }
        i += 1;
    }
}

fn render(tokens: &[Token<'_>], capacity: usize) -> String {
    let mut out = String::with_capacity(capacity);
    let mut previous: Option<&Token<'_>> = None;
    for token in tokens {
        let glue = match (previous, token) {
            // Glued, `:` and `::` would read back as `::` and `:`.
            (Some(Token::Symbol(b':')), Token::Cast) => false,
            // Casts, and calls or subscripts on names (`count(`, `t(a, b)`, `arr[`) read
            // better without spaces; keywords keep theirs (`IN (`, `VALUES (`).
            (None | Some(Token::Symbol(b'(' | b'[' | b'.') | Token::Cast), _)
            | (_, Token::Symbol(b',' | b')' | b']' | b'.' | b';') | Token::Cast)
            | (Some(Token::Quoted(_)), Token::Symbol(b'(' | b'[')) => true,
            (Some(Token::Word(word)), Token::Symbol(b'(' | b'[')) => !is_keyword(word),
            _ => false,
        };
        if !glue {
            out.push(' ');
        }
        match token {
            Token::Value => out.push('?'),
            Token::Word(word) if is_keyword(word) => {
                out.extend(word.chars().map(|c| c.to_ascii_uppercase()));
            }
            Token::Word(word) if word.is_ascii() => {
                out.extend(word.chars().map(|c| c.to_ascii_lowercase()));
            }
            // Never to ASCII: a Kelvin sign lower-cased to `k` would make `LI\u{212a}E` (a
            // name) read back as the keyword `LIKE`.
            Token::Word(word) => {
                for c in word.chars() {
                    let lower = c.to_lowercase();
                    if c.is_ascii() || !lower.clone().all(|l| l.is_ascii()) {
                        out.extend(lower);
                    } else {
                        out.push(c);
                    }
                }
            }
            Token::Quoted(quoted) => out.push_str(quoted),
            Token::Symbol(c) => out.push(char::from(*c)),
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
    "GLOB",
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
    fn double_quoted_strings_are_literals_where_the_dialect_says_so() {
        let by_email = |email: &str| format!(r#"SELECT id FROM users WHERE email = "{email}""#);
        for dialect in [SqlDialect::MySql, SqlDialect::Sqlite] {
            let first = fingerprint_in(&by_email("a@b.c"), dialect);
            assert_eq!(first, "SELECT id FROM users WHERE email = ?", "{dialect:?}");
            assert_eq!(
                first,
                fingerprint_in(&by_email("z@y.x"), dialect),
                "one N+1 group"
            );
        }
        // MySQL: every double-quoted text is a string.
        assert_eq!(
            fingerprint_in(
                r#"SELECT "x", a FROM t WHERE b IN ("p", "q")"#,
                SqlDialect::MySql
            ),
            "SELECT ?, a FROM t WHERE b IN (?)"
        );
        // SQLite: identifiers stay where identifiers stand; values go where values stand.
        assert_eq!(
            fingerprint_in(
                r#"SELECT "Name" FROM "Users" AS "u" JOIN t ON "u"."id" = "t"."id" WHERE "u"."nick" LIKE "bo%" AND c IN ("p", "q") AND d NOT GLOB "*x""#,
                SqlDialect::Sqlite
            ),
            r#"SELECT "Name" FROM "Users" AS "u" JOIN t ON "u"."id" = "t"."id" WHERE "u"."nick" LIKE ? AND c IN (?) AND d NOT GLOB ?"#
        );
        assert_eq!(
            fingerprint_in(
                r#"INSERT INTO "t" ("a", "b") VALUES ("x", 1)"#,
                SqlDialect::Sqlite
            ),
            // A quoted name takes its list as an unquoted one does (`t(a, b)`).
            r#"INSERT INTO "t"("a", "b") VALUES (?)"#
        );
        // Standard SQL: double quotes are identifiers, kept as written.
        assert_eq!(
            fingerprint_in(
                r#"SELECT "Name" FROM t WHERE "Name" = 'x'"#,
                SqlDialect::Standard
            ),
            r#"SELECT "Name" FROM t WHERE "Name" = ?"#
        );
    }

    #[test]
    fn dialects_from_opentelemetry_system_names() {
        assert_eq!(SqlDialect::from_db_system("mysql"), SqlDialect::MySql);
        assert_eq!(SqlDialect::from_db_system("MariaDB"), SqlDialect::MySql);
        assert_eq!(SqlDialect::from_db_system("sqlite"), SqlDialect::Sqlite);
        assert_eq!(
            SqlDialect::from_db_system("postgresql"),
            SqlDialect::Standard
        );
        assert_eq!(SqlDialect::from_db_system(""), SqlDialect::Standard);
    }

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
            // A sign before `.5` too; after an operand, a subtraction however spaced.
            ("SELECT -.5, x = -.5e3", "SELECT ?, x = ?"),
            (
                "SELECT a -1, a-1, 2 -1, $1 -.5",
                "SELECT a - ?, a - ?, ? - ?, ? - ?",
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
    fn fingerprints_read_back_as_themselves() {
        for (sql, expected) in [
            // Glued, `:` and `::` would read back as `::` and `:`.
            ("SELECT x : ::int", "SELECT x : ::int"),
            // A Kelvin sign is not a `k`: the name stays a name, not the keyword LIKE.
            ("SELECT LI\u{212a}E FROM t", "SELECT li\u{212a}e FROM t"),
            ("SELECT \u{c9}t\u{c9} FROM t", "SELECT \u{e9}t\u{e9} FROM t"),
        ] {
            let once = fingerprint(sql);
            assert_eq!(once, expected, "{sql}");
            assert_eq!(fingerprint(&once), once, "{sql}");
        }
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
