import { InvalidArgumentError } from 'commander';
import { CLOSE_CODES, isDeviceId, MAX_DEVICE_ID, type DeviceId } from '@privcomm/wire';
import { CliError, UsageError } from '../errors.ts';

/** Helpers that several command groups share: argument parsers, stdin, help text. */

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const examples = (...lines: string[]): string =>
  `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((line) => `  $ ${line}`).join('\n')}`;

export const normalizeServer = (value: string): string => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`"${value}" is not a URL; use e.g. --server http://localhost:8000`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError(`the server must be an http:// or https:// URL, not "${value}"`);
  if (url.search || url.hash)
    throw new UsageError(`the server URL must not have a query or fragment: "${value}"`);
  return url.toString().replace(/\/+$/, '');
};

export const parseSeconds =
  (max: number, what: string) =>
  (value: string): number => {
    if (!/^\d+(\.\d+)?$/.test(value.trim()))
      throw new InvalidArgumentError(`${what} must be a number of seconds (0 to ${max}).`);
    const seconds = Number(value);
    if (seconds > max) throw new InvalidArgumentError(`${what} must be at most ${max} seconds.`);
    return seconds;
  };

export const parseDeviceId = (value: string): DeviceId => {
  const deviceId = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!isDeviceId(deviceId))
    throw new InvalidArgumentError(
      `a device id is a positive whole number up to ${MAX_DEVICE_ID} (see "privcomm devices list").`,
    );
  return deviceId;
};

export const readAll = async (stream: NodeJS.ReadableStream): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
};

export const readLine = async (stream: NodeJS.ReadableStream): Promise<string> => {
  let text = '';
  for await (const chunk of stream) {
    text += Buffer.from(chunk as Buffer).toString('utf8');
    if (text.includes('\n')) break;
  }
  return text.split('\n')[0] ?? '';
};

/** A socket closure that reconnecting would not cure, as the error to stop with. */
export const closedByRelay = (event: { code: number }): CliError | undefined => {
  if (event.code === CLOSE_CODES.UNAUTHENTICATED)
    return new CliError(
      'the relay closed the connection: this device is no longer accepted (removed, or the account was deleted)',
      'RELAY_REFUSED',
    );
  if (event.code === CLOSE_CODES.CONNECTED_ELSEWHERE)
    return new CliError(
      'another privcomm connected with this profile (receive or listen elsewhere); only one may be connected at a time',
      'CONNECTED_ELSEWHERE',
    );
  return undefined;
};
