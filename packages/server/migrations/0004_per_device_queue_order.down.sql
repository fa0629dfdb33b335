-- Back to one queue order across the relay. Queued envelopes keep their positions: those stored
-- before 0003 were unique across devices, and those stored since come from random per-device
-- counters far apart. Should two devices' positions meet, the later rows of the pair move after
-- the highest position (in device order), so nothing is lost; then the shared counter resumes
-- above every position.
UPDATE "envelopes" SET "seq" = moved."seq"
FROM (
  SELECT e.ctid AS row_id,
         (SELECT max("seq") FROM "envelopes") + row_number() OVER (ORDER BY e."account_id", e."device_id", e."seq") AS "seq"
  FROM "envelopes" e
  WHERE EXISTS (
    SELECT 1 FROM "envelopes" o
    WHERE o."seq" = e."seq" AND (o."account_id", o."device_id") < (e."account_id", e."device_id"))
) AS moved
WHERE "envelopes".ctid = moved.row_id;--> statement-breakpoint
ALTER TABLE "envelopes" DROP CONSTRAINT "envelopes_queue";--> statement-breakpoint
ALTER TABLE "envelopes" ADD CONSTRAINT "envelopes_pkey" PRIMARY KEY("seq");--> statement-breakpoint
ALTER TABLE "envelopes" ALTER COLUMN "seq" ADD GENERATED ALWAYS AS IDENTITY (sequence name "envelopes_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1);--> statement-breakpoint
SELECT setval('"envelopes_seq_seq"', coalesce((SELECT max("seq") FROM "envelopes"), 0) + 1, false);--> statement-breakpoint
CREATE INDEX "envelopes_queue" ON "envelopes" USING btree ("account_id","device_id","seq");--> statement-breakpoint
ALTER TABLE "devices" DROP COLUMN "queue_seq";
