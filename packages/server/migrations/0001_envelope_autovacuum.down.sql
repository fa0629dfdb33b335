-- Back to PostgreSQL's default autovacuum settings for the queue tables. Keeps every row.
ALTER TABLE "envelopes" RESET (
  autovacuum_vacuum_scale_factor,
  autovacuum_vacuum_threshold,
  autovacuum_vacuum_insert_scale_factor,
  autovacuum_vacuum_insert_threshold,
  autovacuum_analyze_scale_factor,
  autovacuum_analyze_threshold,
  autovacuum_vacuum_cost_delay
);--> statement-breakpoint
ALTER TABLE "auth_challenges" RESET (
  autovacuum_vacuum_scale_factor,
  autovacuum_vacuum_threshold
);
