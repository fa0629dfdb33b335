import type pg from 'pg';

/**
 * What the operator may know about the relay as a whole: counts and sizes over everyone, never a
 * row, an id or a date of one account. The relay keeps nothing finer (last-seen dates are days,
 * queued envelopes carry the hour they were stored), so these are also all it could tell.
 */
export interface RelayStatistics {
  readonly accounts: number;
  readonly devices: number;
  /** Devices that logged in today, within 7 days, within 30 days (last-seen is a date). */
  readonly devicesSeen: { readonly today: number; readonly week: number; readonly month: number };
  readonly queued: {
    readonly envelopes: number;
    readonly bytes: number;
    readonly devices: number;
  };
  readonly usableInvites: number;
  readonly databaseBytes: number;
}

export const readStatistics = async (pool: pg.Pool): Promise<RelayStatistics> => {
  const { rows } = await pool.query<Record<string, string>>(`
    SELECT
      (SELECT count(*) FROM accounts) AS accounts,
      (SELECT count(*) FROM devices) AS devices,
      (SELECT count(*) FROM devices WHERE last_seen_on >= current_date) AS seen_today,
      (SELECT count(*) FROM devices WHERE last_seen_on >= current_date - 6) AS seen_week,
      (SELECT count(*) FROM devices WHERE last_seen_on >= current_date - 29) AS seen_month,
      (SELECT coalesce(sum(envelopes), 0) FROM queue_usage) AS queued_envelopes,
      (SELECT coalesce(sum(bytes), 0) FROM queue_usage) AS queued_bytes,
      (SELECT count(*) FROM queue_usage WHERE envelopes > 0) AS queued_devices,
      (SELECT count(*) FROM invite_codes
        WHERE uses_left > 0 AND (expires_at IS NULL OR expires_at > now())) AS usable_invites,
      pg_database_size(current_database()) AS database_bytes`);
  const row = rows[0] ?? {};
  const n = (name: string): number => Number(row[name] ?? 0);
  return {
    accounts: n('accounts'),
    devices: n('devices'),
    devicesSeen: { today: n('seen_today'), week: n('seen_week'), month: n('seen_month') },
    queued: {
      envelopes: n('queued_envelopes'),
      bytes: n('queued_bytes'),
      devices: n('queued_devices'),
    },
    usableInvites: n('usable_invites'),
    databaseBytes: n('database_bytes'),
  };
};
