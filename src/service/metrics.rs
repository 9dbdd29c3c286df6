//! Prometheus metrics, counted where operations happen (the use-case layer).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignLabels {
    algorithm: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    action: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    operation: String,
    outcome: String,
}

/// Every value the `reason` label of `signet_tls_handshake_refusals_total` can take; anything
/// else is counted as `other`. Connection admission, the handshake, and the checks after it.
pub const REFUSAL_REASONS: &[&str] = &[
    // Admission, before any TLS work.
    "connection-cap",
    "source-connection-cap",
    "handshake-cap",
    "source-handshake-cap",
    // The handshake.
    "connection-closed",
    "handshake-timeout",
    "io-error",
    "no-client-certificate",
    "unknown-issuer",
    "bad-signature",
    "expired",
    "not-yet-valid",
    "revoked",
    "wrong-purpose",
    "bad-certificate-encoding",
    "invalid-certificate",
    "protocol-version-or-cipher",
    "unexpected-message",
    "invalid-message",
    "peer-misbehaved",
    "alert-received",
    "decrypt-error",
    "revocation-check-failed",
    // After it.
    "no-identity-in-certificate",
    "revoked-on-open-connection",
    "expired-on-open-connection",
    "other",
];

/// Every value the `method` label of `signet_http_requests_total` can take.
pub const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other",
];

/// `value` when it is one of `allowed`, else `other`.
fn bounded(value: &str, allowed: &[&'static str]) -> &'static str {
    allowed
        .iter()
        .find(|a| **a == value)
        .copied()
        .unwrap_or("other")
}

/// A PKCS#11 return-code name (`CKR_…`) or Signet's own (`PIN_INCORRECT`) as it is, anything
/// else (a vendor code's text) as `other`.
fn code_label(code: &str) -> &str {
    if code.len() <= 48
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        code
    } else {
        "other"
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The service's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    signs: Family<SignLabels, Counter>,
    hsm_errors: Family<CodeLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    denials: Family<ActionLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    operations: Family<OperationLabels, Counter>,
    sessions_open: Gauge,
    pool_size: Gauge,
    audit_records: Gauge,
    audit_batches: Gauge,
    audit_failures: Gauge,
    audit_discarded: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("signet");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let signs = Family::<SignLabels, Counter>::default();
        let hsm_errors = Family::<CodeLabels, Counter>::default();
        let refusals = Family::<ReasonLabels, Counter>::default();
        let denials = Family::<ActionLabels, Counter>::default();
        let tokens = Family::<TokenLabels, Counter>::default();
        let operations = Family::<OperationLabels, Counter>::default();
        let sessions_open = Gauge::default();
        let pool_size = Gauge::default();
        let audit_records = Gauge::default();
        let audit_batches = Gauge::default();
        let audit_failures = Gauge::default();
        let audit_discarded = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Request latency by route",
            latency.clone(),
        );
        registry.register(
            "sign_operations",
            "Signatures by algorithm and outcome",
            signs.clone(),
        );
        registry.register(
            "hsm_errors",
            "HSM errors by PKCS#11 return code",
            hsm_errors.clone(),
        );
        registry.register(
            "tls_handshake_refusals",
            "Refused TLS handshakes by reason",
            refusals.clone(),
        );
        registry.register(
            "authorization_denials",
            "Requests denied by authorization, by action",
            denials.clone(),
        );
        registry.register(
            "token_operations",
            "Token operations by operation and outcome",
            tokens.clone(),
        );
        registry.register(
            "operations",
            "Operations through the pipeline by action (the audit name) and outcome (ok, error, denied, refused)",
            operations.clone(),
        );
        registry.register(
            "hsm_sessions_open",
            "PKCS#11 sessions open",
            sessions_open.clone(),
        );
        registry.register(
            "hsm_session_pool_size",
            "PKCS#11 session pool size",
            pool_size.clone(),
        );
        registry.register(
            "audit_records",
            "Audit records appended since start",
            audit_records.clone(),
        );
        registry.register(
            "audit_batches",
            "Audit batches made durable since start (one sync or transaction each)",
            audit_batches.clone(),
        );
        registry.register(
            "audit_failed_batches",
            "Audit batches that could not be made durable (their requests were refused)",
            audit_failures.clone(),
        );
        registry.register(
            "audit_discarded_requests",
            "Key uses run on cached records another node had changed: their records were written discarded and they were run again on fresh reads",
            audit_discarded.clone(),
        );
        Metrics {
            audit_records,
            audit_batches,
            audit_failures,
            audit_discarded,
            registry,
            requests,
            latency,
            signs,
            hsm_errors,
            refusals,
            denials,
            tokens,
            operations,
            sessions_open,
            pool_size,
        }
    }

    /// Counts a finished request.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.into(),
                method: bounded(method, METHODS).into(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.into(),
            })
            .observe(seconds);
    }

    /// Counts a signature attempt.
    pub fn sign(&self, algorithm: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.signs
            .get_or_create(&SignLabels {
                algorithm: algorithm.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts an HSM error by its return code.
    pub fn hsm_error(&self, code: &str) {
        self.hsm_errors
            .get_or_create(&CodeLabels {
                code: code_label(code).into(),
            })
            .inc();
    }

    /// Counts a refused handshake.
    pub fn refusal(&self, reason: &str) {
        self.refusals
            .get_or_create(&ReasonLabels {
                reason: bounded(reason, REFUSAL_REASONS).into(),
            })
            .inc();
    }

    /// Counts an authorization denial.
    pub fn denial(&self, action: &str) {
        self.denials
            .get_or_create(&ActionLabels {
                action: action.into(),
            })
            .inc();
    }

    /// Counts an operation's outcome (both labels from fixed sets: the action table's names,
    /// and `ok`, `error`, `denied`, `refused`).
    pub fn operation(&self, action: &'static str, outcome: &'static str) {
        self.operations
            .get_or_create(&OperationLabels {
                action: action.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts a token operation.
    pub fn token(&self, operation: &str, outcome: &str) {
        self.tokens
            .get_or_create(&TokenLabels {
                operation: operation.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// The exposition text, with the gauges set from the backend and the audit log.
    pub fn render(
        &self,
        sessions_open: usize,
        pool_size: usize,
        audit: &crate::domain::audit::AuditStats,
    ) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        self.sessions_open.set(sessions_open as i64);
        self.pool_size.set(pool_size as i64);
        self.audit_records.set(audit.records.load(Relaxed) as i64);
        self.audit_batches.set(audit.batches.load(Relaxed) as i64);
        self.audit_failures.set(audit.failures.load(Relaxed) as i64);
        self.audit_discarded
            .set(audit.discarded.load(Relaxed) as i64);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics page, for scrapers and tools
/// that ask for it (`Accept: text/plain`, promtool): counter families are named by their
/// samples (`…_total`), so every sample has its `HELP` and `TYPE`; `# UNIT` and `# EOF`, which
/// the classic format lacks, go.
pub fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::classic_text;

    #[test]
    fn counters_are_named_by_their_samples_and_openmetrics_only_lines_go() {
        let page = "# HELP a Things.\n# TYPE a counter\na_total{x=\"1\"} 2\n# HELP g Level.\n# TYPE g gauge\n# UNIT g seconds\ng 3\n# EOF\n";
        assert_eq!(
            classic_text(page),
            "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n# HELP g Level.\n# TYPE g gauge\ng 3\n"
        );
    }
}
