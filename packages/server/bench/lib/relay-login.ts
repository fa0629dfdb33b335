/**
 * A relay login for the load generator: challenge, Ed25519 signature, token, over a keep-alive
 * HTTP agent; or the body of a login on the message socket (`socketLogin`). Kept free of @privcomm/wire and the test client on purpose: importing them (typebox
 * and its schemas) cost each load process 0.6-1.2 s of CPU before its first login, at every
 * scenario and system (9 processes in a run). test/bench-relay-target.integration.test.ts checks
 * the signed bytes against the wire's authChallengeMessage and socketAuthMessage and logs in to a
 * real relay both ways.
 */
import { sign, type KeyObject } from 'node:crypto';
import http from 'node:http';

/** The same bytes as @privcomm/wire's authChallengeMessage (ASCII prefix, then the nonce). */
export const authChallengeBytes = (accountId: string, deviceId: number, nonce: Buffer): Buffer =>
  Buffer.concat([Buffer.from(`privcomm-device-auth-v1:${accountId}:${deviceId}:`), nonce]);

/** The same bytes as @privcomm/wire's socketAuthMessage. */
export const socketAuthBytes = (accountId: string, deviceId: number, nonce: Buffer): Buffer =>
  Buffer.concat([Buffer.from(`privcomm-socket-auth-v1:${accountId}:${deviceId}:`), nonce]);

/** The body of `auth` by signature over a socket's challenge (`nonce` in base64). */
export const socketLogin = (
  device: { accountId: string; deviceId: number },
  key: KeyObject,
  nonce: string,
): { accountId: string; deviceId: number; signature: string } => {
  const { accountId, deviceId } = device;
  const message = socketAuthBytes(accountId, deviceId, Buffer.from(nonce, 'base64'));
  return { accountId, deviceId, signature: sign(null, message, key).toString('base64') };
};

export const keepAliveAgent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** One JSON request over the keep-alive agent; resolves with the status and the body's text. */
export const relayRequest = (
  base: URL,
  method: string,
  path: string,
  body: string,
  token?: string,
): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const request = http.request(
      {
        agent: keepAliveAgent,
        host: base.hostname,
        port: base.port,
        method,
        path,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
        );
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });

/**
 * Challenge and token for one device; returns the token. Errors read "challenge: STATUS" and
 * "token: STATUS BODY", which the relay target's retry recognises.
 */
export const login = async (
  base: URL,
  device: { accountId: string; deviceId: number; key: KeyObject },
): Promise<string> => {
  const { accountId, deviceId } = device;
  const challenge = await relayRequest(
    base,
    'POST',
    '/v1/auth/challenge',
    JSON.stringify({ accountId, deviceId }),
  );
  if (challenge.status !== 200) throw new Error(`challenge: ${challenge.status}`);
  const nonce = (JSON.parse(challenge.body) as { nonce: string }).nonce;
  const message = authChallengeBytes(accountId, deviceId, Buffer.from(nonce, 'base64'));
  const signature = sign(null, message, device.key).toString('base64');
  const answer = await relayRequest(
    base,
    'POST',
    '/v1/auth/token',
    JSON.stringify({ accountId, deviceId, nonce, signature }),
  );
  if (answer.status !== 200) throw new Error(`token: ${answer.status} ${answer.body}`);
  return (JSON.parse(answer.body) as { token: string }).token;
};
