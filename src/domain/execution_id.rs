//! Execution ids: UUIDv5 of (agent id, delivery id), so a repeated delivery maps to
//! the same execution and its `ExecutionQueued` append conflicts instead of running twice.

use super::{AgentId, DeliveryId, InvalidValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecutionId(uuid::Uuid);

impl ExecutionId {
    pub fn for_delivery(agent: &AgentId, delivery: &DeliveryId) -> Self {
        ExecutionId(uuid::Uuid::new_v5(
            agent.as_uuid(),
            delivery.as_ref().as_bytes(),
        ))
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        uuid::Uuid::parse_str(raw)
            .map(ExecutionId)
            .map_err(|_| InvalidValue(format!("invalid execution id {raw:?}: expected a UUID")))
    }

    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl std::fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_delivery_same_execution_other_agent_other_execution() {
        let a = AgentId::generate();
        let b = AgentId::generate();
        let d = DeliveryId::parse("delivery-1").unwrap();
        assert_eq!(
            ExecutionId::for_delivery(&a, &d),
            ExecutionId::for_delivery(&a, &d)
        );
        assert_ne!(
            ExecutionId::for_delivery(&a, &d),
            ExecutionId::for_delivery(&b, &d)
        );
    }
}
