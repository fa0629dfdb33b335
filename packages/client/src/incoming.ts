import { Value } from 'typebox/value';
import {
  BinaryEnvelopeSchema,
  cutContents,
  EnvelopeSchema,
  splitBinaryFrame,
  isAccountId,
  isDeviceId,
  ProvisioningAddressBodySchema,
  ProvisioningMessageBodySchema,
  ErrorFrameSchema,
  MAX_FRAME_BYTES,
  MismatchedDevicesSchema,
  RequestFrameSchema,
  ResponseFrameSchema,
  StaleDevicesSchema,
  type AccountId,
  type DeviceId,
  type Envelope,
  type RequestFrame,
  type ResponseFrame,
} from '@privcomm/wire';

/**
 * Parsers for what the relay sends, checked against the wire package's schemas. Each returns
 * the item or a refusal with a fixed reason (for the log: never a value from the item), and
 * never throws, whatever arrives.
 */
export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

const refused = <T>(reason: string): Parsed<T> => ({ ok: false, reason });

export type IncomingFrame =
  | { type: 'request'; frame: RequestFrame }
  | { type: 'response'; frame: ResponseFrame }
  /** The relay could not read one of our frames (it closes the socket after too many). */
  | { type: 'error' };

/** One WebSocket message from the relay. */
export const parseFrame = (data: unknown): Parsed<IncomingFrame> => {
  if (typeof data !== 'string') return refused('frame is not text');
  // Characters, not bytes: a bound on the work below, the relay's own limit is in bytes.
  if (data.length > MAX_FRAME_BYTES) return refused('frame too large');
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return refused('frame is not JSON');
  }
  if (Value.Check(RequestFrameSchema, json))
    return { ok: true, value: { type: 'request', frame: json } };
  if (Value.Check(ResponseFrameSchema, json))
    return { ok: true, value: { type: 'response', frame: json } };
  if (Value.Check(ErrorFrameSchema, json)) return { ok: true, value: { type: 'error' } };
  return refused('frame does not match the protocol');
};

/**
 * A binary WebSocket message from the relay (docs/protocol.md, "Binary frames"): only an
 * `envelope` request comes so. Given back as that request in its JSON form, its content in
 * base64 (`encode`), so that everything after this reads one kind of envelope.
 */
export const parseBinaryFrame = (
  data: Uint8Array,
  encode: (bytes: Uint8Array) => string,
): Parsed<IncomingFrame> => {
  if (data.length > MAX_FRAME_BYTES) return refused('frame too large');
  const split = splitBinaryFrame(data);
  if (!split) return refused('malformed binary frame');
  let json: unknown;
  try {
    json = JSON.parse(split.header);
  } catch {
    return refused('binary frame header is not JSON');
  }
  if (!Value.Check(RequestFrameSchema, json) || json.verb !== 'envelope') {
    return refused('binary frame is not an envelope');
  }
  if (!Value.Check(BinaryEnvelopeSchema, json.body)) return refused('malformed envelope');
  const [content] = cutContents(split.tail, [json.body.content]) ?? [];
  if (!content) return refused('envelope content does not match its length');
  const body: Envelope = { ...json.body, content: encode(content) };
  return { ok: true, value: { type: 'request', frame: { ...json, body } } };
};

/** The body of an `envelope` request. */
export const parseEnvelope = (body: unknown): Parsed<Envelope> =>
  Value.Check(EnvelopeSchema, body) ? { ok: true, value: body } : refused('malformed envelope');

export interface DeviceSetChange {
  /** Devices to start sessions with. */
  readonly missing: DeviceId[];
  /** Devices whose sessions to drop. */
  readonly extra: DeviceId[];
  /** Devices re-registered: drop the session, then start a new one. */
  readonly stale: DeviceId[];
}

/** The body of a 409 (mismatched devices) or 410 (stale devices) answer to a send. */
export const parseDeviceSetChange = (status: 409 | 410, body: unknown): Parsed<DeviceSetChange> => {
  if (status === 409) {
    if (!Value.Check(MismatchedDevicesSchema, body)) return refused('malformed device list');
    return {
      ok: true,
      // The schema checked every id; the guard (which keeps them all) types them as DeviceId.
      value: {
        missing: body.missingDevices.filter(isDeviceId),
        extra: body.extraDevices.filter(isDeviceId),
        stale: [],
      },
    };
  }
  if (!Value.Check(StaleDevicesSchema, body)) return refused('malformed device list');
  return {
    ok: true,
    value: { missing: [], extra: [], stale: body.staleDevices.filter(isDeviceId) },
  };
};

/** How long a 429 asks to wait, in seconds: 1 when the body does not say (or says nonsense). */
export const parseRetryAfter = (body: unknown): number => {
  const seconds = (body as { retryAfterSeconds?: unknown } | null | undefined)?.retryAfterSeconds;
  return typeof seconds === 'number' &&
    Number.isInteger(seconds) &&
    seconds >= 0 &&
    seconds <= 86_400
    ? seconds
    : 1;
};

/** A `provisioning.address` or `provisioning.message` request on the provisioning socket. */
export type ProvisioningRequest =
  | { verb: 'provisioning.address'; id: number; address: string }
  | { verb: 'provisioning.message'; id: number; content: string }
  | { verb: 'other'; id: number };

export const parseProvisioningRequest = (frame: RequestFrame): Parsed<ProvisioningRequest> => {
  if (frame.verb === 'provisioning.address') {
    return Value.Check(ProvisioningAddressBodySchema, frame.body)
      ? { ok: true, value: { verb: frame.verb, id: frame.id, address: frame.body.address } }
      : refused('malformed provisioning address');
  }
  if (frame.verb === 'provisioning.message') {
    return Value.Check(ProvisioningMessageBodySchema, frame.body)
      ? { ok: true, value: { verb: frame.verb, id: frame.id, content: frame.body.content } }
      : refused('malformed provisioning message');
  }
  return { ok: true, value: { verb: 'other', id: frame.id } };
};

/** What a primary device seals for a new one: the account, a link token and the account name. */
export interface ProvisioningPayload {
  readonly accountId: AccountId;
  readonly linkToken: string;
  readonly name?: string;
}

export const parseProvisioningPayload = (json: string): Parsed<ProvisioningPayload> => {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return refused('provisioning payload is not JSON');
  }
  const p = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  if (!isAccountId(p.accountId)) return refused('provisioning payload without an account id');
  if (typeof p.linkToken !== 'string' || p.linkToken.length === 0 || p.linkToken.length > 4096)
    return refused('provisioning payload without a link token');
  if (p.name !== undefined && (typeof p.name !== 'string' || p.name.length > 200))
    return refused('provisioning payload with a bad name');
  return {
    ok: true,
    value: {
      accountId: p.accountId,
      linkToken: p.linkToken,
      ...(p.name === undefined ? {} : { name: p.name as string }),
    },
  };
};
