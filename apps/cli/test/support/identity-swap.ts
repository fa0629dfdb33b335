import type pg from 'pg';

/** The key columns of a device row: what a relay hands out in a prekey bundle. */
const DEVICE_KEYS = [
  'registration_id',
  'signed_prekey_id',
  'signed_prekey',
  'signed_prekey_signature',
  'kem_last_resort_key_id',
  'kem_last_resort_key',
  'kem_last_resort_signature',
] as const;

const ONE_TIME_TABLES = {
  one_time_prekeys: ['key_id', 'public_key'],
  one_time_kem_prekeys: ['key_id', 'public_key', 'signature'],
} as const;

/** Copies device 1's keys and one-time prekeys of account `from` onto device 1 of `to`. */
const copyKeys = async (db: pg.Client, to: string, from: string): Promise<void> => {
  await db.query(
    `UPDATE devices d SET ${DEVICE_KEYS.map((c) => `${c} = m.${c}`).join(', ')}
     FROM devices m
     WHERE m.account_id = $2 AND m.device_id = 1 AND d.account_id = $1 AND d.device_id = 1`,
    [to, from],
  );
  for (const [table, columns] of Object.entries(ONE_TIME_TABLES)) {
    await db.query(`DELETE FROM ${table} WHERE account_id = $1 AND device_id = 1`, [to]);
    await db.query(
      `INSERT INTO ${table} (account_id, device_id, ${columns.join(', ')})
       SELECT $1, 1, ${columns.join(', ')} FROM ${table} WHERE account_id = $2 AND device_id = 1`,
      [to, from],
    );
  }
};

/**
 * What a compromised relay, or anyone with write access to its database, can do: hand out the
 * identity and device keys of a real account (`attacker`) as those of `victim`, whose account is
 * reduced to device 1. (An account's identity key cannot change through the API: accounts are
 * random ids, and linked devices share the identity.) Returns a function that puts the victim's
 * own keys back on device 1 (its other devices stay gone), as if the attack ended.
 */
export const passOffKeys = async (
  db: pg.Client,
  victim: string,
  attacker: string,
): Promise<() => Promise<void>> => {
  const { rows } = await db.query(
    'SELECT registration_id FROM devices WHERE account_id = ANY($1) AND device_id = 1',
    [[victim, attacker]],
  );
  if (rows.length !== 2 || rows[0].registration_id === rows[1].registration_id)
    throw new Error('the two accounts need device 1 each, with different registration ids');
  // The victim's own keys, to put back.
  const saved = {
    identity: (await db.query('SELECT identity_key FROM accounts WHERE id = $1', [victim])).rows[0]
      .identity_key,
    device: (
      await db.query(
        `SELECT ${DEVICE_KEYS.join(', ')} FROM devices WHERE account_id = $1 AND device_id = 1`,
        [victim],
      )
    ).rows[0],
    oneTime: Object.fromEntries(
      await Promise.all(
        Object.entries(ONE_TIME_TABLES).map(async ([table, columns]) => [
          table,
          (
            await db.query(
              `SELECT ${columns.join(', ')} FROM ${table} WHERE account_id = $1 AND device_id = 1`,
              [victim],
            )
          ).rows,
        ]),
      ),
    ),
  };
  await db.query('BEGIN');
  await db.query(
    `UPDATE accounts SET identity_key = (SELECT identity_key FROM accounts WHERE id = $2)
     WHERE id = $1`,
    [victim, attacker],
  );
  await copyKeys(db, victim, attacker);
  await db.query('DELETE FROM devices WHERE account_id = $1 AND device_id <> 1', [victim]);
  await db.query('COMMIT');

  return async () => {
    await db.query('BEGIN');
    await db.query('UPDATE accounts SET identity_key = $2 WHERE id = $1', [victim, saved.identity]);
    await db.query(
      `UPDATE devices SET ${DEVICE_KEYS.map((c, i) => `${c} = $${i + 2}`).join(', ')}
       WHERE account_id = $1 AND device_id = 1`,
      [victim, ...DEVICE_KEYS.map((c) => saved.device[c])],
    );
    for (const [table, columns] of Object.entries(ONE_TIME_TABLES)) {
      await db.query(`DELETE FROM ${table} WHERE account_id = $1 AND device_id = 1`, [victim]);
      for (const row of saved.oneTime[table] as Record<string, unknown>[])
        await db.query(
          `INSERT INTO ${table} (account_id, device_id, ${columns.join(', ')})
           VALUES ($1, 1, ${columns.map((_, i) => `$${i + 2}`).join(', ')})`,
          [victim, ...columns.map((c) => row[c])],
        );
    }
    await db.query('COMMIT');
  };
};
