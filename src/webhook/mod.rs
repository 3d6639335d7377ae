//! Webhook verification (pure).
