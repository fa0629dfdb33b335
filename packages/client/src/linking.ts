import { CLOSE_CODES, PRIMARY_DEVICE_ID, type AccountId, type DeviceId } from '@privcomm/wire';
import { fromBase64, fromBase64Url, toBase64Url, utf8Decode, utf8Encode } from './bytes.ts';
import type { Address, SignalEngine } from './engine.ts';
import { ClientError } from './errors.ts';
import { parseFrame, parseProvisioningPayload, parseProvisioningRequest } from './incoming.ts';
import { newDeviceKeys } from './key-upkeep.ts';
import type { ClientLogger } from './logger.ts';
import type { AuthSigner, RelayApi } from './relay-api.ts';
import type { Profile } from './store.ts';
import { socketUnreachable, type Transport } from './transport.ts';

/**
 * Link codes start with a fixed word: the base64url address after it may begin with "-", which a
 * command line would take for an option if it came first.
 */
const LINK_CODE_PREFIX = 'privcomm-link:';
const LINK_CODE = /^privcomm-link:([A-Za-z0-9_-]{32})\.([A-Za-z0-9_-]{40,60})$/;
/** A new device waits this long for the primary to send the provisioning message. */
const LINK_TIMEOUT_MS = 10 * 60 * 1000;

export interface NewDeviceLinkDeps {
  readonly engine: SignalEngine;
  readonly transport: Transport;
  readonly signer: AuthSigner;
  readonly api: Pick<RelayApi, 'link'>;
  readonly logger: ClientLogger;
  /** Records the new device's profile and uploads its prekeys. */
  becomeDevice(accountId: AccountId, deviceId: DeviceId, name?: string): Promise<Profile>;
  /** Asks the account's other devices for the contacts (best effort). */
  requestContacts(profile: Profile): Promise<void>;
}

/**
 * New device: shows `linkCode` (to type into the primary's `devices add`), then waits for the
 * primary's provisioning message, imports the account identity and joins the account.
 */
export const startLink = async (
  deps: NewDeviceLinkDeps,
): Promise<{ linkCode: string; done: Promise<Profile> }> => {
  const provisioningKey = await deps.engine.createProvisioningKey();
  const url = `${deps.transport.relayUrl.replace(/^http/, 'ws')}/v1/provisioning`;
  const socket = deps.transport.openSocket(url);
  const respond = (id: number, status: number): void =>
    socket.send(JSON.stringify({ type: 'response', id, status }));

  // Everything the socket says arrives as one of these outcomes, in order.
  let address!: (value: string) => void;
  let provisioned!: (profile: Profile) => void;
  let fail!: (error: Error) => void;
  const addressKnown = new Promise<string>((resolve, reject) => {
    address = resolve;
    fail = reject;
  });
  const done = new Promise<Profile>((resolve, reject) => {
    provisioned = resolve;
    const failAddress = fail;
    fail = (error) => {
      failAddress(error);
      reject(error);
    };
  });
  let linking = false;
  /**
   * The answer comes only after the message decrypts: a message that does not (damaged, or for
   * another key) is refused with 400 and the socket keeps waiting for a good one.
   */
  const onProvisioningMessage = async (id: number, content: string): Promise<void> => {
    if (linking) return respond(id, 409);
    let json: string;
    try {
      json = utf8Decode(await deps.engine.openProvisioning(fromBase64(content)));
    } catch {
      deps.logger.log('warn', 'provisioning message refused', 'cannot be opened');
      return respond(id, 400);
    }
    const payload = parseProvisioningPayload(json);
    if (!payload.ok) {
      deps.logger.log('warn', 'provisioning message refused', payload.reason);
      return respond(id, 400);
    }
    linking = true;
    // The relay closes the socket on this answer; from here on only the link request matters.
    socket.onclose = null;
    respond(id, 200);
    const { fields } = await newDeviceKeys(deps.engine, deps.signer);
    const created = await deps.api.link({ linkToken: payload.value.linkToken, ...fields });
    const profile = await deps.becomeDevice(
      created.accountId,
      created.deviceId,
      payload.value.name,
    );
    await deps.requestContacts(profile);
    provisioned(profile);
  };
  socket.onmessage = (event) => {
    const parsed = parseFrame(event.data);
    if (!parsed.ok || parsed.value.type !== 'request') {
      deps.logger.log(
        'warn',
        'provisioning frame ignored',
        parsed.ok ? 'not a request' : parsed.reason,
      );
      return;
    }
    const request = parseProvisioningRequest(parsed.value.frame);
    if (!request.ok) {
      deps.logger.log('warn', 'provisioning frame refused', request.reason);
      return respond(parsed.value.frame.id, 400);
    }
    const { value } = request;
    if (value.verb === 'provisioning.address') {
      respond(value.id, 200);
      address(value.address);
    } else if (value.verb === 'provisioning.message') {
      onProvisioningMessage(value.id, value.content).catch(fail);
    } else {
      respond(value.id, 404);
    }
  };
  socket.onerror = (event) => fail(socketUnreachable(deps.transport, event));
  socket.onclose = (event) =>
    fail(
      new ClientError(
        event.code === CLOSE_CODES.TIMEOUT ? 'LINK_TIMEOUT' : 'RELAY_UNREACHABLE',
        `the link was not completed (socket closed: ${event.code})`,
      ),
    );
  const timeout = setTimeout(
    () => fail(new ClientError('LINK_TIMEOUT', 'no link within 10 minutes')),
    LINK_TIMEOUT_MS,
  );
  const finished = done.finally(() => {
    clearTimeout(timeout);
    socket.onclose = null;
    socket.close(CLOSE_CODES.NORMAL, 'linked');
  });
  // Handled here too, so a failure before the caller awaits `done` is not an unhandled rejection.
  finished.catch(() => undefined);
  return {
    linkCode: `${LINK_CODE_PREFIX}${await addressKnown}.${toBase64Url(provisioningKey)}`,
    done: finished,
  };
};

export interface PrimaryLinkDeps {
  readonly engine: SignalEngine;
  readonly api: Pick<RelayApi, 'linkToken' | 'provision'>;
}

/** Primary: sends the account identity to the new device that shows `linkCode`. */
export const addDevice = async (
  deps: PrimaryLinkDeps,
  self: Address,
  accountName: string | undefined,
  linkCode: string,
): Promise<void> => {
  if (self.deviceId !== PRIMARY_DEVICE_ID)
    throw new ClientError('NOT_PRIMARY', 'only the primary device can add devices');
  const match = LINK_CODE.exec(linkCode.trim());
  if (!match)
    throw new ClientError(
      'INVALID_LINK_CODE',
      'that is not a link code; copy it again from the new device',
    );
  let key: Uint8Array;
  try {
    key = fromBase64Url(match[2] as string);
  } catch {
    throw new ClientError('INVALID_LINK_CODE', 'that link code is damaged; copy it again');
  }
  const { linkToken } = await deps.api.linkToken();
  const payload = utf8Encode(
    JSON.stringify({ accountId: self.accountId, linkToken, name: accountName }),
  );
  let sealed: Uint8Array;
  try {
    sealed = await deps.engine.sealProvisioning(key, payload);
  } catch {
    throw new ClientError('INVALID_LINK_CODE', 'that link code holds no valid key; copy it again');
  }
  await deps.api.provision(match[1] as string, sealed);
};
