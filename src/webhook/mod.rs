//! Webhook verification: signatures, delivery ids, payload schemas, nesting depth.
//!
//! Everything here is pure — plain data in, a verdict out; no I/O and no HTTP
//! framework types — so every rule is unit-testable and the HTTP layer
//! (`http/webhooks.rs`) only adapts its header map to [`Headers`] and maps errors
//! to status codes.
//!
//! - `signature.rs`: [`SignatureScheme`], [`SignatureError`] and [`verify`];
//!   `github.rs`, `standard.rs`, `stripe.rs`: one file per scheme (parse, verify, sign).
//! - `headers.rs`: the [`Headers`] trait and [`delivery_id`].
//! - `schema.rs`: [`PayloadSchema`] (compiled JSON Schema); `schema_cache.rs`: the
//!   bounded [`SchemaCache`] of compiled schemas per agent.
//! - `depth.rs`: [`check_depth`], the nesting guard run before JSON parsing.
//! - `proptests.rs`: property tests: no parser panics on any input.

mod depth;
mod github;
mod headers;
#[cfg(test)]
mod proptests;
mod schema;
mod schema_cache;
mod signature;
mod standard;
mod stripe;

pub use depth::{DEFAULT_MAX_DEPTH, DepthError, check_depth};
pub use github::{HEADER as GITHUB_SIGNATURE_HEADER, sign_github};
pub use headers::{
    DELIVERY_ID_HEADERS, Headers, MAX_DELIVERY_ID_LEN, delivery_id, delivery_id_for,
};
pub use schema::{PayloadSchema, SchemaError, Violation};
pub use schema_cache::{DEFAULT_CAPACITY as SCHEMA_CACHE_DEFAULT, SchemaCache};
pub use signature::{DEFAULT_TOLERANCE_S, SignatureError, SignatureScheme, UnknownScheme, verify};
pub use standard::{
    HEADER_ID as STANDARD_ID_HEADER, HEADER_SIGNATURE as STANDARD_SIGNATURE_HEADER,
};
pub use standard::{HEADER_TIMESTAMP as STANDARD_TIMESTAMP_HEADER, sign_standard};
pub use stripe::{HEADER as STRIPE_SIGNATURE_HEADER, sign_stripe};
