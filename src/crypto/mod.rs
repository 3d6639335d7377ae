//! Sealing secrets at rest.
