-- The way back from 0006_queue_caps_at_insert: the trigger counts and no longer checks (the relay
-- of before 0006 checks the caps with a query of its own, in the insert's transaction).
CREATE OR REPLACE FUNCTION queue_usage_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO queue_usage AS q (account_id, device_id, envelopes, bytes)
  SELECT account_id, device_id, count(*), sum(octet_length(content))
  FROM inserted GROUP BY account_id, device_id ORDER BY account_id, device_id
  ON CONFLICT (account_id, device_id) DO UPDATE
    SET envelopes = q.envelopes + excluded.envelopes, bytes = q.bytes + excluded.bytes;
  RETURN NULL;
END $$;
