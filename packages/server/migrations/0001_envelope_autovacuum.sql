-- The envelope queue is written and deleted constantly. With default settings dead rows outrun
-- autovacuum (measured here: 1 GB of dead tuples with no live row) and the planner drifts to
-- sequential scans. Vacuum and analyze it after a fixed number of changes instead of a fraction
-- of its size, and without the cost-based pauses.
ALTER TABLE "envelopes" SET (
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 5000,
  autovacuum_vacuum_insert_scale_factor = 0,
  autovacuum_vacuum_insert_threshold = 10000,
  autovacuum_analyze_scale_factor = 0,
  autovacuum_analyze_threshold = 5000,
  autovacuum_vacuum_cost_delay = 0
);--> statement-breakpoint
ALTER TABLE "auth_challenges" SET (
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 1000
);
