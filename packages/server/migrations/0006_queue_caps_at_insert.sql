-- The queue caps are checked by the trigger that counts what an insert adds, so that storing a
-- batch is one statement, committed on its own: it was BEGIN, the insert, a query of the caps
-- and COMMIT, four round trips of which three waited for the relay's busy event loop (a third
-- of each batch's time when storing for offline devices: docs/benchmarks.md, item 38). The
-- inserting statement gives the caps with set_config(..., true), which lasts until its
-- transaction ends; a statement that gives none (an operator's own insert) is not checked, as
-- before. A device's count is updated (and locked) before it is compared, so concurrent inserts
-- on any instance see each other's rows, and the caps hold exactly. Error code PC001, which the
-- relay answers with QUEUE_FULL; the whole statement is undone, its sequence numbers too.
CREATE OR REPLACE FUNCTION queue_usage_add() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  max_envelopes bigint := nullif(current_setting('privcomm.queue_max_envelopes', true), '')::bigint;
  max_bytes bigint := nullif(current_setting('privcomm.queue_max_bytes', true), '')::bigint;
  over bigint;
BEGIN
  WITH added AS (
    INSERT INTO queue_usage AS q (account_id, device_id, envelopes, bytes)
    SELECT account_id, device_id, count(*), sum(octet_length(content))
    FROM inserted GROUP BY account_id, device_id ORDER BY account_id, device_id
    ON CONFLICT (account_id, device_id) DO UPDATE
      SET envelopes = q.envelopes + excluded.envelopes, bytes = q.bytes + excluded.bytes
    RETURNING q.envelopes, q.bytes
  )
  SELECT count(*) INTO over FROM added
  WHERE envelopes > max_envelopes OR bytes > max_bytes;
  IF over > 0 THEN
    RAISE EXCEPTION 'a device''s queue would go over its caps' USING ERRCODE = 'PC001';
  END IF;
  RETURN NULL;
END $$;
