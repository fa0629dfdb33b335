-- data-loss: the hashes of login challenges used in the last minute (each could be used once more) and every challenge issued since 0002 (devices ask for new ones)
-- Back to stored challenges: the table as 0000 and 0001 made it, empty.
CREATE TABLE "auth_challenges" (
	"nonce" "bytea" PRIMARY KEY NOT NULL,
	"account_id" uuid NOT NULL,
	"device_id" integer NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "auth_challenges" ADD CONSTRAINT "auth_challenges_account_id_device_id_devices_account_id_device_id_fk" FOREIGN KEY ("account_id","device_id") REFERENCES "public"."devices"("account_id","device_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "auth_challenges_expires_at" ON "auth_challenges" USING btree ("expires_at");--> statement-breakpoint
ALTER TABLE "auth_challenges" SET (
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 1000
);--> statement-breakpoint
DROP TABLE "used_challenges";
