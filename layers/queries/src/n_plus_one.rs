//! N+1 detection: one statement shape repeated within one request.

use std::sync::Arc;
use std::time::Duration;

use crate::ledger::{FingerprintGroup, QueryReport};

/// The default number of repeats of one fingerprint that makes an N+1 finding.
pub const DEFAULT_THRESHOLD: u64 = 5;

/// When a repeated statement is an N+1 finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NPlusOneRule {
    /// Repeats of one fingerprint within a request (default [`DEFAULT_THRESHOLD`]).
    pub threshold: u64,
    /// Their total time must reach this too (default zero: any time).
    pub min_total: Duration,
}

impl Default for NPlusOneRule {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_THRESHOLD,
            min_total: Duration::ZERO,
        }
    }
}

/// One N+1 finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NPlusOneFinding {
    /// The repeated statement's fingerprint.
    pub fingerprint: Arc<str>,
    /// How often it ran.
    pub count: u64,
    /// Its total time.
    pub total: Duration,
    /// One statement as it ran.
    pub sample: String,
}

impl NPlusOneRule {
    /// The findings in `report`, most repeated first. Transaction control statements (BEGIN,
    /// COMMIT, ROLLBACK, SAVEPOINT, RELEASE) never count.
    pub fn findings(&self, report: &QueryReport) -> Vec<NPlusOneFinding> {
        self.findings_in(&report.groups)
    }

    pub(crate) fn findings_in<'a>(
        &self,
        groups: impl IntoIterator<Item = &'a FingerprintGroup>,
    ) -> Vec<NPlusOneFinding> {
        let mut findings: Vec<NPlusOneFinding> = groups
            .into_iter()
            .filter(|g| g.count >= self.threshold.max(2) && g.total >= self.min_total)
            .filter(|g| !is_transaction_control(&g.fingerprint))
            .map(|g| NPlusOneFinding {
                fingerprint: Arc::clone(&g.fingerprint),
                count: g.count,
                total: g.total,
                sample: g.sample.clone(),
            })
            .collect();
        findings.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        });
        findings
    }
}

fn is_transaction_control(fingerprint: &str) -> bool {
    let first = fingerprint.split_whitespace().next().unwrap_or_default();
    matches!(
        first,
        "BEGIN" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "START" | "END"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Query, QueryLedger};

    fn ledger_with(statements: &[(&str, u64)]) -> QueryReport {
        let ledger = QueryLedger::new();
        for (sql, times) in statements {
            for i in 0..*times {
                let sql = sql.replace("{}", &i.to_string());
                ledger.record(Query::new(&sql, Duration::from_millis(1)));
            }
        }
        ledger.report()
    }

    #[test]
    fn repeats_at_the_threshold_are_findings() {
        let report = ledger_with(&[
            ("SELECT * FROM orders", 1),
            ("SELECT * FROM customers WHERE id = {}", 5),
            ("SELECT * FROM products WHERE id = {}", 4),
        ]);
        let findings = NPlusOneRule::default().findings(&report);
        assert_eq!(findings.len(), 1);
        assert_eq!(
            &*findings[0].fingerprint,
            "SELECT * FROM customers WHERE id = ?"
        );
        assert_eq!(findings[0].count, 5);
        assert_eq!(findings[0].total, Duration::from_millis(5));
        assert_eq!(findings[0].sample, "SELECT * FROM customers WHERE id = 0");
    }

    #[test]
    fn minimum_total_time_and_transaction_control() {
        let report = ledger_with(&[
            ("BEGIN", 10),
            ("SAVEPOINT sp{}", 10),
            ("COMMIT", 10),
            ("SELECT * FROM t WHERE id = {}", 10),
        ]);
        let rule = NPlusOneRule {
            threshold: 5,
            min_total: Duration::from_millis(50),
        };
        assert!(
            rule.findings(&report).is_empty(),
            "10 ms in total is under 50 ms"
        );
        let findings = NPlusOneRule::default().findings(&report);
        assert_eq!(findings.len(), 1, "{findings:?}");
    }
}
