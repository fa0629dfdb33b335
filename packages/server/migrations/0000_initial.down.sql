-- data-loss: every account, device, prekey, invite code and queued message (the whole relay)
-- The way back from the first migration is an empty database.
DROP TABLE "one_time_prekeys";--> statement-breakpoint
DROP TABLE "one_time_kem_prekeys";--> statement-breakpoint
DROP TABLE "link_tokens";--> statement-breakpoint
DROP TABLE "invite_codes";--> statement-breakpoint
DROP TABLE "envelopes";--> statement-breakpoint
DROP TABLE "auth_challenges";--> statement-breakpoint
DROP TABLE "devices";--> statement-breakpoint
DROP TABLE "accounts";--> statement-breakpoint
DROP SEQUENCE "public"."connection_seq";
