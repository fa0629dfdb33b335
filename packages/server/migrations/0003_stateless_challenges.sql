-- Login challenges became stateless (sealed with a key held in memory): nothing is stored when
-- one is issued. A used challenge leaves only the SHA-256 of its nonce and its expiry (rounded up
-- to the minute), no account or device, until it expires. UNLOGGED: these rows are never written
-- to the write-ahead log (PostgreSQL empties the table after a crash, which at worst lets a
-- signed challenge captured before the crash be used once more within its 60 s).
CREATE UNLOGGED TABLE "used_challenges" (
	"nonce_hash" "bytea" PRIMARY KEY NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "used_challenges" SET (
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 1000
);--> statement-breakpoint
DROP TABLE "auth_challenges" CASCADE;--> statement-breakpoint
CREATE INDEX "used_challenges_expires_at" ON "used_challenges" USING btree ("expires_at");
