CREATE TABLE "queue_usage" (
	"account_id" uuid NOT NULL,
	"device_id" integer NOT NULL,
	"envelopes" integer DEFAULT 0 NOT NULL,
	"bytes" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "queue_usage_account_id_device_id_pk" PRIMARY KEY("account_id","device_id")
);
--> statement-breakpoint
ALTER TABLE "queue_usage" ADD CONSTRAINT "queue_usage_account_id_device_id_devices_account_id_device_id_fk" FOREIGN KEY ("account_id","device_id") REFERENCES "public"."devices"("account_id","device_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
-- Written by hand below this line: triggers keep queue_usage equal to what each device has
-- queued, for every insert and delete path (acknowledgements, expiry, anything added later).
-- Statement-level with transition tables: one aggregate per statement, not one update per row.
-- Rows are locked in key order, so concurrent statements touching several devices cannot
-- deadlock on them. octet_length of a bytea is its uncompressed size, read from the header.
CREATE FUNCTION queue_usage_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO queue_usage AS q (account_id, device_id, envelopes, bytes)
  SELECT account_id, device_id, count(*), sum(octet_length(content))
  FROM inserted GROUP BY account_id, device_id ORDER BY account_id, device_id
  ON CONFLICT (account_id, device_id) DO UPDATE
    SET envelopes = q.envelopes + excluded.envelopes, bytes = q.bytes + excluded.bytes;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE FUNCTION queue_usage_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM queue_usage q
  WHERE (q.account_id, q.device_id) IN (SELECT account_id, device_id FROM deleted)
  ORDER BY q.account_id, q.device_id FOR UPDATE;
  UPDATE queue_usage AS q SET envelopes = q.envelopes - d.n, bytes = q.bytes - d.b
  FROM (
    SELECT account_id, device_id, count(*) AS n, sum(octet_length(content)) AS b
    FROM deleted GROUP BY account_id, device_id
  ) AS d
  WHERE q.account_id = d.account_id AND q.device_id = d.device_id;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER envelopes_queue_usage_add AFTER INSERT ON envelopes
  REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION queue_usage_add();
--> statement-breakpoint
CREATE TRIGGER envelopes_queue_usage_remove AFTER DELETE ON envelopes
  REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION queue_usage_remove();
--> statement-breakpoint
-- Queues that already exist when this migration runs.
INSERT INTO queue_usage (account_id, device_id, envelopes, bytes)
SELECT account_id, device_id, count(*), sum(octet_length(content))
FROM envelopes GROUP BY account_id, device_id;
--> statement-breakpoint
-- Rewritten on every send and acknowledgement: vacuum after a fixed number of changes.
ALTER TABLE "queue_usage" SET (
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 1000
);
