-- Phone-number discovery: one OPRF token per account that chose to be found, with the version of
-- the discovery key it was derived under. The key itself is never in the database.
CREATE TABLE "discovery_tokens" (
	"account_id" uuid PRIMARY KEY NOT NULL,
	"token" "bytea" NOT NULL,
	"key_version" integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE "discovery_tokens" ADD CONSTRAINT "discovery_tokens_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "discovery_tokens_token" ON "discovery_tokens" USING btree ("token");