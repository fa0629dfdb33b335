import { describe, expect, it } from 'vitest';
import { engineContract } from '@privcomm/client/testing';
import { openNodeEngine, splitMultiRecipientMessage } from '@privcomm/engine-node';
import { sealShareAtRest } from '@privcomm/server/testing';
import {
  EngineRequestError,
  EngineRequests,
  openRemoteEngine,
  type EngineChannel,
} from '../src/index.ts';

/**
 * The engine's requests answered in JavaScript (what `privcomm daemon --web-bridge` serves) must
 * behave as the Kotlin core does: the whole engine contract runs through a RemoteSignalEngine,
 * every request and answer crossing as JSON text, as they do over the bridge.
 */
const overJson =
  (requests: EngineRequests): EngineChannel =>
  async (op, engine, args) => {
    const request = JSON.parse(JSON.stringify({ op, engine, args: args ?? {} }));
    try {
      const result = await requests.request(request.op, request.engine, request.args);
      return JSON.parse(JSON.stringify(result ?? null)) ?? undefined;
    } catch (error) {
      const failure = (error as EngineRequestError).failure;
      throw new EngineRequestError(JSON.parse(JSON.stringify(failure)));
    }
  };

const requests = new EngineRequests(() => openNodeEngine(':memory:'));
engineContract(
  'node, through the engine requests',
  () => openRemoteEngine(overJson(requests), ':memory:'),
  { splitMultiRecipient: splitMultiRecipientMessage, sealAtRest: sealShareAtRest },
);

describe('engine requests: what another process may send', () => {
  it('refuses unknown handles and ops, and malformed arguments, as argument failures', async () => {
    const channel = overJson(requests);
    const handle = (await channel('open', undefined, { file: ':memory:' })) as number;
    const kinds = async (request: Promise<unknown>) => {
      const error = await request.then(
        () => expect.fail('the request was expected to fail'),
        (failure: unknown) => failure as EngineRequestError,
      );
      expect(error).toBeInstanceOf(EngineRequestError);
      return error.failure;
    };
    expect(await kinds(channel('createIdentity', handle + 1000))).toMatchObject({
      kind: 'argument',
    });
    expect(await kinds(channel('launchMissiles', handle))).toMatchObject({
      kind: 'argument',
      message: 'unknown engine request "launchMissiles"',
    });
    expect(await kinds(channel('generatePreKeys', handle, { count: -1 }))).toMatchObject({
      kind: 'argument',
    });
    expect(
      await kinds(channel('hasSession', handle, { address: { accountId: 'x', deviceId: 1 } })),
    ).toMatchObject({ kind: 'argument', message: 'accountId must be an account id' });
    expect(await kinds(channel('openProvisioning', handle, { ciphertext: '%%%' }))).toMatchObject({
      kind: 'argument',
    });
    await channel('close', handle);
    expect(await kinds(channel('localIdentity', handle))).toMatchObject({ kind: 'argument' });
  });
});
