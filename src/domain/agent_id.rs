//! Agent ids: random UUIDs, assigned by hookrun when an agent is created.

use super::InvalidValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(uuid::Uuid);

impl AgentId {
    pub fn generate() -> Self {
        AgentId(uuid::Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        uuid::Uuid::parse_str(raw)
            .map(AgentId)
            .map_err(|_| InvalidValue(format!("invalid agent id {raw:?}: expected a UUID")))
    }

    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
