-- Every accepted webhook writes an audit row and an execution row. With deliveries
-- spread over many agents, each index that starts with agent_id costs one more page
-- written per row (a different leaf for every agent), so keep only those a query needs.

-- Only rejected and duplicate rows are pruned per agent and outcome: accepted rows
-- need not be in the index that finds what to prune.
DROP INDEX webhook_deliveries_by_agent_outcome;
CREATE INDEX webhook_deliveries_prunable_by_agent
    ON webhook_deliveries (agent_id, outcome, id) WHERE outcome <> 'accepted';

-- A prefix of agent_test_executions_by_agent_page (agent_id, queued_at, execution_id),
-- which serves every query it served.
DROP INDEX agent_test_executions_by_agent;
