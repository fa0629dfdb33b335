-- data-loss: the per-device queue counters only (derived: re-applying 0002 recounts them from the queue)
-- queue_usage only counts what the envelopes table holds; no envelope is touched.
DROP TRIGGER "envelopes_queue_usage_remove" ON "envelopes";--> statement-breakpoint
DROP TRIGGER "envelopes_queue_usage_add" ON "envelopes";--> statement-breakpoint
DROP FUNCTION "queue_usage_remove"();--> statement-breakpoint
DROP FUNCTION "queue_usage_add"();--> statement-breakpoint
DROP TABLE "queue_usage";
