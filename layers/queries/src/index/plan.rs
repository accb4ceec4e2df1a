//! Reading the databases' own plans: which tables a statement scans in full, and which of
//! their columns it filters by. Pure functions over the plan's text and the statement's, so
//! every rule is tested without a database.

use std::collections::HashMap;

/// A table the plan reads in full while the statement filters it: where an index is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullScan {
    /// The table's name as the statement spells it (schema dropped).
    pub table: String,
    /// The columns the statement filters the table by.
    pub columns: Vec<String>,
    /// The plan line that shows the scan.
    pub plan: String,
}

/// Whether `statement` only reads: it starts with `SELECT` (or `WITH`, `VALUES`), names no
/// statement that writes, and is one statement — no `;` but a trailing one, no comment, no
/// dollar quote (where a second statement could hide from this reading). The detector explains
/// nothing else; its connection is read-only besides.
///
/// ```
/// use vitals_queries::index::plan::is_read_only;
///
/// assert!(is_read_only("SELECT * FROM orders WHERE id = $1"));
/// assert!(is_read_only("  with t as (select 1) select * from t"));
/// assert!(!is_read_only("WITH gone AS (DELETE FROM orders RETURNING id) SELECT * FROM gone"));
/// assert!(!is_read_only("UPDATE orders SET quantity = 2"));
/// assert!(!is_read_only("SELECT 1; DROP TABLE orders"));
/// assert!(!is_read_only("SELECT 1 -- it's\n; DELETE FROM orders; -- '"));
/// assert!(!is_read_only("SELECT $tag$;$tag$"));
/// assert!(is_read_only("SELECT 1;"));
/// ```
pub fn is_read_only(statement: &str) -> bool {
    let statement = statement.trim().trim_end_matches(';');
    // One statement only: the plan command must not carry a second one along. A `;` anywhere
    // else, or a comment or dollar quote (where a `;` could hide from this reading and not
    // from the database's), and the statement is not explained.
    let dollar_quoted = statement
        .split('$')
        .skip(1)
        .any(|after| !after.starts_with(|c: char| c.is_ascii_digit()));
    if dollar_quoted
        || [";", "--", "/*"]
            .iter()
            .any(|hidden| statement.contains(hidden))
    {
        return false;
    }
    let tokens = tokens(statement);
    let words: Vec<String> = tokens
        .iter()
        .filter(|t| is_identifier(t))
        .map(|t| t.to_ascii_uppercase())
        .collect();
    let Some(first) = words.first() else {
        return false;
    };
    matches!(first.as_str(), "SELECT" | "WITH" | "VALUES")
        && !words.iter().any(|word| {
            matches!(
                word.as_str(),
                "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "CREATE" | "DROP" | "ALTER" | "INTO"
            )
        })
}

/// The highest `$N` placeholder in `statement` (PostgreSQL's), outside string literals: how
/// many parameters a prepared copy of it takes.
///
/// ```
/// use vitals_queries::index::plan::placeholder_count;
///
/// assert_eq!(placeholder_count("SELECT * FROM t WHERE a = $2 AND b = $1"), 2);
/// assert_eq!(placeholder_count("SELECT '$9' FROM t"), 0);
/// ```
pub fn placeholder_count(statement: &str) -> usize {
    let bytes = statement.as_bytes();
    let mut highest = 0;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => in_string = !in_string,
            b'$' if !in_string => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if digits > 0 {
                    let number = statement[i + 1..i + 1 + digits]
                        .parse::<usize>()
                        .unwrap_or(0);
                    highest = highest.max(number.min(1_000));
                    i += digits;
                }
            }
            _ => {}
        }
        i += 1;
    }
    highest
}

/// The full table scans in SQLite's `EXPLAIN QUERY PLAN` lines (`detail` column) for
/// `statement`: `SCAN customers` (or `SCAN c`, by alias) of a table the statement filters in its
/// `WHERE` clause, and `SEARCH … USING AUTOMATIC … INDEX (col=?)` — an index SQLite builds for
/// this one statement because none exists. A scan through an index (`SCAN t USING INDEX …`)
/// and a scan of a table the statement does not filter (a listing) are not reported.
///
/// ```
/// use vitals_queries::index::plan::sqlite_full_scans;
///
/// let sql = "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.email = ?";
/// let plan = ["SCAN c", "SEARCH o USING INDEX orders_customer_id (customer_id=?)"];
/// let scans = sqlite_full_scans(sql, &plan);
/// assert_eq!(scans.len(), 1);
/// assert_eq!(scans[0].table, "customers");
/// assert_eq!(scans[0].columns, ["email"]);
/// ```
pub fn sqlite_full_scans<S: AsRef<str>>(statement: &str, plan: &[S]) -> Vec<FullScan> {
    let aliases = aliases(statement);
    let single = aliases.tables() == 1;
    let mut scans = Vec::new();
    for line in plan {
        let line = line.as_ref().trim();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("SCAN") => {
                let mut name = words.next().unwrap_or_default();
                if name == "TABLE" {
                    // SQLite before 3.36: `SCAN TABLE customers AS c`.
                    name = words.next().unwrap_or_default();
                }
                let rest: Vec<&str> = words.collect();
                if rest.contains(&"INDEX") || rest.contains(&"PRIMARY") {
                    continue;
                }
                let name = match rest.as_slice() {
                    ["AS", alias, ..] => alias,
                    _ => name,
                };
                let Some(table) = aliases.table_of(name) else {
                    continue;
                };
                let columns = filtered_columns(statement, name, table, single);
                if !columns.is_empty() {
                    push(&mut scans, table, columns, line);
                }
            }
            Some("SEARCH") if line.contains("USING AUTOMATIC") => {
                let name = words.next().unwrap_or_default();
                let name = if name == "TABLE" {
                    words.next().unwrap_or_default()
                } else {
                    name
                };
                let Some(table) = aliases.table_of(name) else {
                    continue;
                };
                let columns = line
                    .rsplit_once('(')
                    .map(|(_, inside)| columns_in_parentheses(inside))
                    .unwrap_or_default();
                push(&mut scans, table, columns, line);
            }
            _ => {}
        }
    }
    scans
}

fn push(scans: &mut Vec<FullScan>, table: &str, columns: Vec<String>, line: &str) {
    if scans.iter().any(|scan| scan.table == table) {
        return;
    }
    scans.push(FullScan {
        table: table.to_owned(),
        columns,
        plan: line.to_owned(),
    });
}

/// `email=? AND id>?)` → `["email", "id"]`.
fn columns_in_parentheses(inside: &str) -> Vec<String> {
    inside
        .trim_end_matches(')')
        .split(" AND ")
        .filter_map(|term| {
            let name: String = term
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// The sequential scans with a filter in PostgreSQL's `EXPLAIN (FORMAT JSON)` output: the
/// table, its alias-free column names from the node's `Filter`, and a plan line
/// (`Seq Scan on customers c  Filter: (email = $1)`). A scan without a filter (a listing) is
/// not reported.
///
/// ```
/// use vitals_queries::index::plan::postgres_full_scans;
///
/// let plan = serde_json::json!([{ "Plan": {
///     "Node Type": "Hash Join",
///     "Plans": [
///         { "Node Type": "Seq Scan", "Relation Name": "orders", "Alias": "o" },
///         { "Node Type": "Seq Scan", "Relation Name": "customers", "Alias": "c",
///           "Filter": "((c.email)::text = $1)" }
///     ]
/// }}]);
/// let scans = postgres_full_scans(&plan);
/// assert_eq!(scans.len(), 1);
/// assert_eq!(scans[0].table, "customers");
/// assert_eq!(scans[0].columns, ["email"]);
/// ```
pub fn postgres_full_scans(plan: &serde_json::Value) -> Vec<FullScan> {
    let mut scans = Vec::new();
    let roots: Vec<&serde_json::Value> = match plan {
        serde_json::Value::Array(items) => {
            items.iter().filter_map(|item| item.get("Plan")).collect()
        }
        other => other.get("Plan").into_iter().collect(),
    };
    for root in roots {
        walk(root, &mut scans, 0);
    }
    scans
}

fn walk(node: &serde_json::Value, scans: &mut Vec<FullScan>, depth: usize) {
    if depth > 64 {
        return;
    }
    let text = |key: &str| node.get(key).and_then(serde_json::Value::as_str);
    if text("Node Type") == Some("Seq Scan")
        && let (Some(table), Some(filter)) = (text("Relation Name"), text("Filter"))
    {
        let columns = expression_columns(filter);
        if !columns.is_empty() {
            let alias = text("Alias").filter(|alias| *alias != table);
            let line = match alias {
                Some(alias) => format!("Seq Scan on {table} {alias}  Filter: {filter}"),
                None => format!("Seq Scan on {table}  Filter: {filter}"),
            };
            push(scans, table, columns, &line);
        }
    }
    if let Some(children) = node.get("Plans").and_then(serde_json::Value::as_array) {
        for child in children {
            walk(child, scans, depth + 1);
        }
    }
}

/// The column names compared in a PostgreSQL filter expression:
/// `((c.email)::text = $1)` → `["email"]`, `((quantity > 2) AND (status = 'x'::text))` →
/// `["quantity", "status"]`.
fn expression_columns(expression: &str) -> Vec<String> {
    let tokens = tokens(expression);
    let mut columns: Vec<String> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if !is_identifier(token) || is_keyword(&token.to_ascii_uppercase()) {
            continue;
        }
        // A type after `::` is no column.
        if i > 0 && tokens[i - 1] == "::" {
            continue;
        }
        // Past closing parentheses and casts: `(c.email)::text = $1`.
        let mut next = i + 1;
        loop {
            match tokens.get(next).map(String::as_str) {
                Some(")") => next += 1,
                Some("::") => next += 2,
                _ => break,
            }
        }
        if tokens.get(next).is_some_and(|next| is_operator(next)) {
            let name = token.rsplit('.').next().unwrap_or(token);
            let name = name.trim_matches('"').to_owned();
            if !columns.contains(&name) {
                columns.push(name);
            }
        }
    }
    columns
}

/// The columns of `table` (known in the statement as `name`) compared in the statement's
/// `WHERE` clause: `name.col = …`, `table.col = …`, and, when the statement reads one table
/// only, bare `col = …`.
fn filtered_columns(statement: &str, name: &str, table: &str, single_table: bool) -> Vec<String> {
    let tokens = tokens(statement);
    let Some(start) = tokens.iter().position(|t| t.eq_ignore_ascii_case("WHERE")) else {
        return Vec::new();
    };
    let mut columns: Vec<String> = Vec::new();
    for (i, token) in tokens.iter().enumerate().skip(start + 1) {
        let upper = token.to_ascii_uppercase();
        if matches!(
            upper.as_str(),
            "GROUP" | "ORDER" | "LIMIT" | "HAVING" | "UNION" | "WINDOW" | "OFFSET"
        ) {
            break;
        }
        if !is_identifier(token) || is_keyword(&upper) {
            continue;
        }
        // Either side of a comparison: `c.email = ?`, `c.id = o.customer_id`.
        let compared = tokens.get(i + 1).is_some_and(|next| is_operator(next))
            || (i > 0 && is_operator(&tokens[i - 1]));
        if !compared {
            continue;
        }
        let column = match token.rsplit_once('.') {
            Some((qualifier, column))
                if qualifier.eq_ignore_ascii_case(name)
                    || qualifier.eq_ignore_ascii_case(table) =>
            {
                column
            }
            None if single_table => token.as_str(),
            // Another table's column, or a bare name among several tables.
            _ => continue,
        };
        let column = column.trim_matches('"').to_owned();
        if !columns.contains(&column) {
            columns.push(column);
        }
    }
    columns
}

/// The tables a statement reads and their aliases.
struct Aliases {
    by_name: HashMap<String, String>,
}

impl Aliases {
    fn tables(&self) -> usize {
        let mut tables: Vec<&String> = self.by_name.values().collect();
        tables.sort_unstable();
        tables.dedup();
        tables.len()
    }

    /// The table a plan names by its alias or its own name.
    fn table_of(&self, name: &str) -> Option<&str> {
        self.by_name
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// `FROM orders o JOIN customers AS c` → `o → orders`, `orders → orders`, `c → customers`, …
fn aliases(statement: &str) -> Aliases {
    let tokens = tokens(statement);
    let mut by_name = HashMap::new();
    let mut i = 0;
    while i < tokens.len() {
        let upper = tokens[i].to_ascii_uppercase();
        let starts_list = upper == "FROM" || upper == "JOIN";
        let in_list = tokens[i] == "," && by_name_is_from(&tokens, i);
        if (starts_list || in_list)
            && let Some(name) = tokens.get(i + 1).filter(|t| is_identifier(t))
        {
            let table = name.rsplit('.').next().unwrap_or(name).trim_matches('"');
            let table = table.to_owned();
            by_name.insert(table.to_ascii_lowercase(), table.clone());
            let mut next = i + 2;
            if tokens
                .get(next)
                .is_some_and(|t| t.eq_ignore_ascii_case("AS"))
            {
                next += 1;
            }
            if let Some(alias) = tokens
                .get(next)
                .filter(|t| is_identifier(t) && !is_keyword(&t.to_ascii_uppercase()))
            {
                by_name.insert(alias.trim_matches('"').to_ascii_lowercase(), table);
                i = next;
            }
        }
        i += 1;
    }
    Aliases { by_name }
}

/// Whether the comma at `i` separates tables of a `FROM` list (no `WHERE` or `SELECT` since
/// the last `FROM`).
fn by_name_is_from(tokens: &[String], i: usize) -> bool {
    for token in tokens[..i].iter().rev() {
        match token.to_ascii_uppercase().as_str() {
            "FROM" => return true,
            "WHERE" | "SELECT" | "ON" | "(" | ")" | "JOIN" | "SET" | "ORDER" | "GROUP" => {
                return false;
            }
            _ => {}
        }
    }
    false
}

/// Names (`c.email`, `"Order"`), numbers, operators and punctuation; string literals become
/// `'`.
fn tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '\'' => {
                while let Some(next) = chars.next() {
                    if next == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                tokens.push("'".to_owned());
            }
            c if c.is_alphanumeric() || c == '_' || c == '"' || c == '$' => {
                let mut word = String::from(c);
                let mut quoted = c == '"';
                while let Some(&next) = chars.peek() {
                    if quoted {
                        word.push(next);
                        chars.next();
                        if next == '"' {
                            quoted = false;
                        }
                    } else if next.is_alphanumeric() || next == '_' || next == '.' || next == '$' {
                        word.push(next);
                        chars.next();
                    } else if next == '"' {
                        quoted = true;
                        word.push(next);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(word);
            }
            ':' if chars.peek() == Some(&':') => {
                chars.next();
                tokens.push("::".to_owned());
            }
            '<' | '>' | '!' | '=' | '~' => {
                let mut op = String::from(c);
                while let Some(&next) = chars.peek() {
                    if matches!(next, '=' | '>' | '~' | '*') {
                        op.push(next);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(op);
            }
            other => tokens.push(other.to_string()),
        }
    }
    tokens
}

fn is_identifier(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '"')
}

fn is_operator(token: &str) -> bool {
    matches!(
        token,
        "=" | "==" | "<" | ">" | "<=" | ">=" | "<>" | "!=" | "~~" | "~~*" | "!~~" | "~"
    ) || matches!(
        token.to_ascii_uppercase().as_str(),
        "LIKE" | "ILIKE" | "IN" | "IS" | "BETWEEN" | "GLOB"
    )
}

fn is_keyword(upper: &str) -> bool {
    matches!(
        upper,
        "SELECT"
            | "FROM"
            | "WHERE"
            | "AND"
            | "OR"
            | "NOT"
            | "JOIN"
            | "INNER"
            | "LEFT"
            | "RIGHT"
            | "FULL"
            | "OUTER"
            | "CROSS"
            | "ON"
            | "USING"
            | "AS"
            | "GROUP"
            | "ORDER"
            | "BY"
            | "LIMIT"
            | "OFFSET"
            | "HAVING"
            | "UNION"
            | "NULL"
            | "TRUE"
            | "FALSE"
            | "IN"
            | "IS"
            | "LIKE"
            | "ILIKE"
            | "BETWEEN"
            | "EXISTS"
            | "CASE"
            | "WHEN"
            | "THEN"
            | "ELSE"
            | "END"
            | "NATURAL"
            | "WINDOW"
            | "ANY"
            | "ALL"
            | "TEXT"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_scan_is_no_finding() {
        let sql = "SELECT id, name FROM products ORDER BY id";
        assert!(sqlite_full_scans(sql, &["SCAN products"]).is_empty());
    }

    #[test]
    fn a_single_table_filter_names_bare_columns() {
        let sql = "SELECT id FROM customers WHERE email = $1 AND name LIKE 'A%'";
        let scans = sqlite_full_scans(sql, &["SCAN customers"]);
        assert_eq!(scans[0].columns, ["email", "name"]);
        assert_eq!(scans[0].plan, "SCAN customers");
    }

    #[test]
    fn index_scans_and_searches_are_not_reported() {
        let sql = "SELECT * FROM orders o WHERE o.customer_id = ?";
        let plan = [
            "SEARCH o USING INDEX orders_customer_id (customer_id=?)",
            "SCAN o USING COVERING INDEX orders_customer_id",
            "SEARCH c USING INTEGER PRIMARY KEY (rowid=?)",
        ];
        assert!(sqlite_full_scans(sql, &plan).is_empty());
    }

    #[test]
    fn old_sqlite_lines_and_automatic_indexes_are_read() {
        let sql =
            "SELECT * FROM orders AS o, customers c WHERE c.id = o.customer_id AND o.quantity > 2";
        let plan = [
            "SCAN TABLE orders AS o",
            "SEARCH TABLE customers AS c USING AUTOMATIC COVERING INDEX (id=?)",
        ];
        let scans = sqlite_full_scans(sql, &plan);
        assert_eq!(scans.len(), 2, "{scans:?}");
        assert_eq!(scans[0].table, "orders");
        assert_eq!(scans[0].columns, ["customer_id", "quantity"]);
        assert_eq!(scans[1].table, "customers");
        assert_eq!(scans[1].columns, ["id"]);
    }

    #[test]
    fn unknown_names_in_the_plan_are_skipped() {
        let sql = "WITH t AS (SELECT 1 AS x) SELECT * FROM t WHERE x = 1";
        let scans = sqlite_full_scans(sql, &["SCAN CONSTANT ROW", "SCAN (subquery-1)"]);
        assert!(scans.is_empty(), "{scans:?}");
    }

    #[test]
    fn postgres_filters_name_their_columns() {
        assert_eq!(expression_columns("((c.email)::text = $1)"), ["email"]);
        assert_eq!(
            expression_columns("((quantity > 2) AND (status = 'paid'::text))"),
            ["quantity", "status"]
        );
        assert_eq!(expression_columns("(email ~~ 'a%'::text)"), ["email"]);
        assert!(expression_columns("true").is_empty());
    }

    #[test]
    fn postgres_scans_without_a_filter_are_listings() {
        let plan = serde_json::json!([{ "Plan": {
            "Node Type": "Seq Scan", "Relation Name": "products", "Alias": "products"
        }}]);
        assert!(postgres_full_scans(&plan).is_empty());
        let plan = serde_json::json!([{ "Plan": {
            "Node Type": "Seq Scan", "Relation Name": "products", "Alias": "products",
            "Filter": "(stock < 5)"
        }}]);
        let scans = postgres_full_scans(&plan);
        assert_eq!(scans[0].plan, "Seq Scan on products  Filter: (stock < 5)");
    }

    #[test]
    fn garbage_plans_and_statements_do_not_panic() {
        for sql in [
            "",
            "'",
            "\"",
            "SELECT",
            "FROM",
            "FROM ,",
            "$",
            "$99999999999999999999",
        ] {
            let _ = sqlite_full_scans(
                sql,
                &["SCAN", "SCAN TABLE", "SEARCH TABLE x USING AUTOMATIC ("],
            );
            let _ = placeholder_count(sql);
            let _ = is_read_only(sql);
        }
        assert!(postgres_full_scans(&serde_json::json!({"Plan": 3})).is_empty());
        assert!(postgres_full_scans(&serde_json::json!("x")).is_empty());
    }
}
