//! Oxbeam's planner: pipeline proto to validated graph to optimized, fused ExecutionPlan.
