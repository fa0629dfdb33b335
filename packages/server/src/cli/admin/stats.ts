import { readStatistics } from '../../repositories/statistics.ts';
import type { AdminCommand } from './command.ts';

const MIB = 1024 * 1024;

/** `stats`: counts over everyone (repositories/statistics.ts says why nothing finer exists). */
export const showStatistics: AdminCommand = async ({ database, options, out }) => {
  const stats = await readStatistics(database.pool);
  if (options.json) {
    out(JSON.stringify(stats));
    return 0;
  }
  const { devicesSeen: seen, queued } = stats;
  out(`accounts                ${stats.accounts}`);
  out(`devices                 ${stats.devices}`);
  out(
    `devices seen            ${seen.today} today, ${seen.week} in 7 days, ${seen.month} in 30 days`,
  );
  out(
    `queued envelopes        ${queued.envelopes} (${(queued.bytes / MIB).toFixed(1)} MiB) for ${queued.devices} devices`,
  );
  out(`usable invite codes     ${stats.usableInvites}`);
  out(`database size           ${(stats.databaseBytes / MIB).toFixed(1)} MiB`);
  return 0;
};
