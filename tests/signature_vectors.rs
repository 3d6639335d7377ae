//! Checks every vector of the shared `test-vectors/signatures.json` against
//! `hookrun::webhook::verify`, with the vector's scheme and clock and the default
//! tolerance. The file is shared with implementations outside this crate, so it is
//! read as-is rather than copied into the tests.

use hookrun::webhook::{self, SignatureScheme};
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/test-vectors/signatures.json"
);

fn vectors() -> Vec<Value> {
    let text =
        std::fs::read_to_string(VECTORS).unwrap_or_else(|e| panic!("reading {VECTORS}: {e}"));
    let doc: Value = serde_json::from_str(&text).expect("signatures.json is JSON");
    doc["vectors"].as_array().expect("a vectors array").clone()
}

fn run(vector: &Value, now: i64) -> Result<(), webhook::SignatureError> {
    let scheme: SignatureScheme = str_field(vector, "scheme").parse().expect("known scheme");
    let headers: Vec<(String, String)> = vector["headers"]
        .as_object()
        .expect("headers object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string header").to_owned()))
        .collect();
    webhook::verify(
        scheme,
        &[str_field(vector, "secret")],
        &headers,
        str_field(vector, "payload").as_bytes(),
        now,
        webhook::DEFAULT_TOLERANCE_S,
    )
}

fn str_field<'a>(vector: &'a Value, field: &str) -> &'a str {
    vector[field]
        .as_str()
        .unwrap_or_else(|| panic!("vector {} has no string {field}", vector["name"]))
}

#[test]
fn every_shared_vector_verifies_as_expected() {
    let vectors = vectors();
    assert!(
        vectors.len() >= 15,
        "expected the full vector set, found {}",
        vectors.len()
    );
    let mut failures = Vec::new();
    for vector in &vectors {
        let name = str_field(vector, "name");
        let scheme: SignatureScheme = str_field(vector, "scheme").parse().expect("known scheme");
        // GitHub signatures carry no timestamp: any current clock must do.
        let now = match scheme {
            SignatureScheme::Github => chrono::Utc::now().timestamp(),
            _ => vector["now"]
                .as_i64()
                .unwrap_or_else(|| panic!("{name}: timestamped vector without now")),
        };
        let expected = vector["valid"].as_bool().expect("valid flag");
        let result = run(vector, now);
        if result.is_ok() != expected {
            failures.push(format!("{name}: expected valid={expected}, got {result:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "failing vectors:\n{}",
        failures.join("\n")
    );
}

#[test]
fn github_vectors_are_reproduced_by_sign_github() {
    for vector in vectors()
        .iter()
        .filter(|v| v["scheme"] == "github" && v["valid"] == true)
    {
        let header = str_field(&vector["headers"], "X-Hub-Signature-256");
        // sign_github keys by the decoded secret (seed senders); text-keyed vectors
        // (GitHub's own convention) are only reproducible when the secret is not base64.
        let signed = webhook::sign_github(
            str_field(vector, "secret"),
            str_field(vector, "payload").as_bytes(),
        );
        assert_eq!(signed, header.to_ascii_lowercase(), "{}", vector["name"]);
    }
}

/// Invalid vectors must fail for the reason they were written for, not by accident
/// (e.g. "stale" must not fail as a mismatch). Names absent from the file are skipped.
#[test]
fn invalid_vectors_fail_for_the_intended_reason() {
    use webhook::SignatureError as E;
    type Expectation = (&'static str, fn(&E) -> bool);
    let expectations: [Expectation; 7] = [
        ("seed-style-reserialized-json", |e| {
            matches!(e, E::Mismatch { .. })
        }),
        ("seed-style-sha1-prefix", |e| {
            matches!(e, E::UnsupportedAlgorithm { .. })
        }),
        ("standard-webhooks-stale", |e| {
            matches!(e, E::TimestampStale { age_s: 600, .. })
        }),
        ("standard-webhooks-future", |e| {
            matches!(e, E::TimestampInFuture { ahead_s: 600, .. })
        }),
        ("standard-webhooks-tampered-id", |e| {
            matches!(e, E::Mismatch { .. })
        }),
        ("standard-webhooks-last-char-changed", |e| {
            matches!(e, E::Mismatch { .. })
        }),
        ("stripe-stale", |e| {
            matches!(e, E::TimestampStale { age_s: 301, .. })
        }),
    ];
    let vectors = vectors();
    for (name, expected) in expectations {
        let Some(vector) = vectors.iter().find(|v| v["name"] == name) else {
            continue;
        };
        let now = vector["now"]
            .as_i64()
            .unwrap_or_else(|| chrono::Utc::now().timestamp());
        let err = run(vector, now).expect_err(name);
        assert!(expected(&err), "{name}: unexpected error {err:?}");
    }
}
