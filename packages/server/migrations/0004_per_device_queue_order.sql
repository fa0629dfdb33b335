-- Queue positions count per device instead of across the whole relay: a dump no longer shows
-- which envelopes of different devices were stored one after the other (a message and the sync
-- copy to the sender's other devices sat side by side). Each device's counter starts at a random
-- value above its queued envelopes' positions, so it tells neither how many it ever received nor
-- anything about other devices.
ALTER TABLE "devices" ADD COLUMN "queue_seq" bigint DEFAULT floor(random() * 1e12)::bigint NOT NULL;--> statement-breakpoint
UPDATE "devices" SET "queue_seq" = "queue_seq" + coalesce(
  (SELECT max("seq") FROM "envelopes" e
   WHERE e."account_id" = "devices"."account_id" AND e."device_id" = "devices"."device_id"), 0);--> statement-breakpoint
ALTER TABLE "envelopes" DROP CONSTRAINT "envelopes_pkey";--> statement-breakpoint
ALTER TABLE "envelopes" ALTER COLUMN "seq" DROP IDENTITY;--> statement-breakpoint
DROP INDEX "envelopes_queue";--> statement-breakpoint
ALTER TABLE "envelopes" ADD CONSTRAINT "envelopes_queue" PRIMARY KEY("account_id","device_id","seq");
