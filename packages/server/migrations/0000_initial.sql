CREATE SEQUENCE "public"."connection_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1;--> statement-breakpoint
CREATE TABLE "accounts" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"identity_key" "bytea" NOT NULL,
	"next_device_id" integer DEFAULT 2 NOT NULL,
	"created_on" date DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "auth_challenges" (
	"nonce" "bytea" PRIMARY KEY NOT NULL,
	"account_id" uuid NOT NULL,
	"device_id" integer NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "devices" (
	"account_id" uuid NOT NULL,
	"device_id" integer NOT NULL,
	"registration_id" integer NOT NULL,
	"auth_key" "bytea" NOT NULL,
	"signed_prekey_id" integer NOT NULL,
	"signed_prekey" "bytea" NOT NULL,
	"signed_prekey_signature" "bytea" NOT NULL,
	"kem_last_resort_key_id" integer NOT NULL,
	"kem_last_resort_key" "bytea" NOT NULL,
	"kem_last_resort_signature" "bytea" NOT NULL,
	"created_on" date DEFAULT now() NOT NULL,
	"last_seen_on" date DEFAULT now() NOT NULL,
	CONSTRAINT "devices_account_id_device_id_pk" PRIMARY KEY("account_id","device_id")
);
--> statement-breakpoint
CREATE TABLE "envelopes" (
	"seq" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "envelopes_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"id" uuid DEFAULT gen_random_uuid() NOT NULL,
	"account_id" uuid NOT NULL,
	"device_id" integer NOT NULL,
	"type" smallint NOT NULL,
	"content" "bytea" NOT NULL,
	"urgent" boolean DEFAULT false NOT NULL,
	"stored_hour" timestamp with time zone DEFAULT date_trunc('hour', now()) NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "invite_codes" (
	"code_hash" "bytea" PRIMARY KEY NOT NULL,
	"uses_left" integer NOT NULL,
	"expires_at" timestamp with time zone,
	"created_on" date DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "link_tokens" (
	"token_hash" "bytea" PRIMARY KEY NOT NULL,
	"account_id" uuid NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "one_time_kem_prekeys" (
	"account_id" uuid NOT NULL,
	"device_id" integer NOT NULL,
	"key_id" integer NOT NULL,
	"public_key" "bytea" NOT NULL,
	"signature" "bytea" NOT NULL,
	CONSTRAINT "one_time_kem_prekeys_account_id_device_id_key_id_pk" PRIMARY KEY("account_id","device_id","key_id")
);
--> statement-breakpoint
CREATE TABLE "one_time_prekeys" (
	"account_id" uuid NOT NULL,
	"device_id" integer NOT NULL,
	"key_id" integer NOT NULL,
	"public_key" "bytea" NOT NULL,
	CONSTRAINT "one_time_prekeys_account_id_device_id_key_id_pk" PRIMARY KEY("account_id","device_id","key_id")
);
--> statement-breakpoint
ALTER TABLE "auth_challenges" ADD CONSTRAINT "auth_challenges_account_id_device_id_devices_account_id_device_id_fk" FOREIGN KEY ("account_id","device_id") REFERENCES "public"."devices"("account_id","device_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "devices" ADD CONSTRAINT "devices_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "envelopes" ADD CONSTRAINT "envelopes_account_id_device_id_devices_account_id_device_id_fk" FOREIGN KEY ("account_id","device_id") REFERENCES "public"."devices"("account_id","device_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "link_tokens" ADD CONSTRAINT "link_tokens_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "one_time_kem_prekeys" ADD CONSTRAINT "one_time_kem_prekeys_account_id_device_id_devices_account_id_device_id_fk" FOREIGN KEY ("account_id","device_id") REFERENCES "public"."devices"("account_id","device_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "one_time_prekeys" ADD CONSTRAINT "one_time_prekeys_account_id_device_id_devices_account_id_device_id_fk" FOREIGN KEY ("account_id","device_id") REFERENCES "public"."devices"("account_id","device_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "auth_challenges_expires_at" ON "auth_challenges" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "envelopes_queue" ON "envelopes" USING btree ("account_id","device_id","seq");--> statement-breakpoint
CREATE INDEX "envelopes_expires_at" ON "envelopes" USING brin ("expires_at");--> statement-breakpoint
CREATE INDEX "link_tokens_expires_at" ON "link_tokens" USING btree ("expires_at");