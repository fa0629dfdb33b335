import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  MemoryStore,
  PrivcommClient,
  type CallOptions,
  type CallSummary,
  type ClientEvent,
  type PeerConnectionConfig,
  type PeerConnectionLike,
  type SocketLike,
  type Transport,
  type WebRtc,
  type AccountId,
} from '@privcomm/client';
import { accountIdOf } from '@privcomm/client/testing';
import {
  createTestDatabase,
  dumpDatabase,
  startCoturn,
  startRelay,
  type Coturn,
  type TestRelay,
} from '@privcomm/server/testing';
import { NodeCallMedia, nodeWebRtc, openNodeEngine, toneSource } from '../src/index.ts';
import { memorySigner } from './support/memory-signer.ts';
import { watchedSocket } from './support/watched-socket.ts';

/**
 * Calls end to end: two (or three) client cores with libsignal, a real relay with its database,
 * a real coturn on loopback, and libwebrtc (@roamhq/wrtc) peers. Signaling goes through the
 * relay as encrypted messages; media goes directly or through coturn.
 */

/** Every wait for a call to ring, connect or end. */
const CALL_WAIT_MS = 10_000;

let relay: TestRelay;
let coturn: Coturn;
let databaseUrl: string;
let drop: () => Promise<void>;

/** Each send the relay accepted (over HTTP or the socket): online-only or stored, and its envelopes' contents
 * in hex, as a dump shows bytea. */
const accepted: { online: boolean; contents: string[] }[] = [];
/** Every candidate any peer connection gathered (the addresses that must stay off the relay). */
const gathered: string[] = [];
/** Every candidate a peer connection was given by its peer, through signaling. */
const received: string[] = [];

beforeAll(async () => {
  const database = await createTestDatabase();
  databaseUrl = database.url;
  drop = database.drop;
  coturn = await startCoturn();
  relay = await startRelay(databaseUrl, {
    TURN_URLS: `turn:127.0.0.1:${coturn.port}?transport=udp`,
    TURN_SECRET: coturn.secret,
    // Store first: every stored send is then written, and the audit below compares them exactly.
    // (Delivered first, one that its recipient acknowledged at once needs no row at all;
    // deliver-first.integration.test.ts covers that path.)
    WS_DIRECT_WINDOW_MS: '0',
  });
  // Every envelope the relay ever stores is copied here, so that the dump at the end shows all
  // of them, not only those still queued.
  await relay.relay.context.database.pool.query(`
    CREATE TABLE envelope_audit AS SELECT * FROM envelopes WITH NO DATA;
    CREATE FUNCTION audit_envelope() RETURNS trigger AS $$
      BEGIN INSERT INTO envelope_audit SELECT NEW.*; RETURN NEW; END $$ LANGUAGE plpgsql;
    CREATE TRIGGER audit_envelope AFTER INSERT ON envelopes
      FOR EACH ROW EXECUTE FUNCTION audit_envelope();`);
}, 60_000);

afterAll(async () => {
  await relay?.close();
  await coturn?.stop();
  await drop?.();
});

/** Message sends whose answer has not come yet (a hang-up can outlive its test). */
let sendsInFlight = 0;

type SendBody = { online?: boolean; messages: { content: string }[] };

const recordAccepted = (body: SendBody): void => {
  accepted.push({
    online: body.online === true,
    contents: body.messages.map((m) => Buffer.from(m.content, 'base64').toString('hex')),
  });
};

/**
 * A ws socket that records the sends the relay accepted over it (`message.send` answered 200):
 * a connected client sends over its socket, otherwise over HTTP (fetch below).
 */
const recordingSocket = (url: string): SocketLike => {
  const sends = new Map<number, SendBody>();
  return watchedSocket(url, {
    sending: (data) => {
      // JSON frames only: this test's transport does not ask for binary ones.
      const frame = JSON.parse(String(data)) as {
        type: string;
        id: number;
        verb?: string;
        body?: unknown;
      };
      if (frame.type === 'request' && frame.verb === 'message.send') {
        sends.set(frame.id, frame.body as SendBody);
        sendsInFlight += 1;
      }
    },
    received: (data) => {
      const frame = JSON.parse(String(data)) as { type: string; id: number; status?: number };
      const send = frame.type === 'response' ? sends.get(frame.id) : undefined;
      if (send) {
        sends.delete(frame.id);
        sendsInFlight -= 1;
        if (frame.status === 200) recordAccepted(send);
      }
      return [data];
    },
    closed: () => {
      sendsInFlight -= sends.size;
      sends.clear();
    },
  });
};

/** fetch and ws, recording which message sends the relay accepted. */
const transport = (relayUrl: string): Transport => ({
  relayUrl,
  fetch: async (url, init) => {
    const isSend = init.method === 'PUT' && url.includes('/v1/messages/');
    if (isSend) sendsInFlight += 1;
    try {
      const response = await fetch(url, init);
      if (isSend && response.status === 200) recordAccepted(JSON.parse(init.body ?? '{}'));
      return response;
    } finally {
      if (isSend) sendsInFlight -= 1;
    }
  },
  openSocket: recordingSocket,
});

/** libwebrtc, with every gathered candidate noted. */
const recordingWebRtc = (): WebRtc => {
  const { RTCPeerConnection } = nodeWebRtc();
  function Recording(config: PeerConnectionConfig): PeerConnectionLike {
    const pc = new RTCPeerConnection(config);
    pc.addEventListener('icecandidate', (event) => {
      if (event.candidate?.candidate) gathered.push(event.candidate.candidate);
    });
    const addIceCandidate = pc.addIceCandidate.bind(pc);
    return Object.assign(pc, {
      addIceCandidate: (candidate: { candidate: string }) => {
        received.push(candidate.candidate);
        return addIceCandidate(candidate);
      },
    });
  }
  return { RTCPeerConnection: Recording as unknown as WebRtc['RTCPeerConnection'] };
};

interface TestClient {
  client: PrivcommClient;
  events: ClientEvent[];
  accountId: AccountId;
}

const open: PrivcommClient[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((client) => client.close()));
});

const newClient = async (
  calls: CallOptions = {},
  relayUrl = relay.url,
): Promise<Omit<TestClient, 'accountId'>> => {
  const client = await PrivcommClient.open({
    transport: transport(relayUrl),
    engine: await openNodeEngine(':memory:'),
    store: new MemoryStore(),
    signer: memorySigner(),
    randomBytes: (n) => new Uint8Array(randomBytes(n)),
    calls: { webrtc: recordingWebRtc(), media: () => new NodeCallMedia(), ...calls },
  });
  open.push(client);
  const events: ClientEvent[] = [];
  client.subscribe((event) => events.push(event));
  return { client, events };
};

/** A registered, connected client. */
const online = async (
  name: string,
  calls: CallOptions = {},
  relayUrl = relay.url,
): Promise<TestClient> => {
  const test = await newClient(calls, relayUrl);
  const profile = await test.client.register({ name });
  await test.client.connect();
  return { ...test, accountId: profile.accountId };
};

const statusOf = (test: TestClient) => test.client.calls.state.status;

const waitFor = async (check: () => boolean, what: string): Promise<void> => {
  await expect.poll(check, { timeout: CALL_WAIT_MS, message: what }).toBe(true);
};

const ringing = (test: TestClient, callId: string) =>
  waitFor(() => {
    const state = test.client.calls.state;
    return state.status === 'ringing' && state.call.callId === callId;
  }, 'the call rings');

const ended = async (test: TestClient, callId: string): Promise<CallSummary> => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      test.client.calls.whenEnded(callId),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`call ${callId} did not end within ${CALL_WAIT_MS} ms`)),
          CALL_WAIT_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
};

describe('voice calls through the relay, coturn and libwebrtc', () => {
  it('a relay-only call carries a 440 Hz tone through TURN', async () => {
    const alice = await online('alice');
    const bob = await online('bob');
    received.length = 0;
    const tone = new NodeCallMedia(toneSource(440));
    const bobMedia = new NodeCallMedia();

    const call = await alice.client.calls.start(bob.accountId, { media: tone });
    expect(statusOf(alice)).toBe('outgoing');
    await ringing(bob, call.callId);
    expect(bob.client.calls.state).toMatchObject({
      call: { peer: alice.accountId, direction: 'incoming' },
    });
    await bob.client.calls.accept({ media: bobMedia });
    await waitFor(
      () => statusOf(alice) === 'connected' && statusOf(bob) === 'connected',
      'both sides connect',
    );
    // At least a second and a half of audio, so that the last second is steady tone.
    await waitFor(() => (bobMedia.recorder?.seconds ?? 0) >= 1.5, 'audio arrives');
    const heard = bobMedia.analyse();
    await alice.client.calls.hangup();

    const [atAlice, atBob] = await Promise.all([
      ended(alice, call.callId),
      ended(bob, call.callId),
    ]);
    expect(heard.dominantHz).toBeGreaterThanOrEqual(430);
    expect(heard.dominantHz).toBeLessThanOrEqual(450);
    expect(heard.rms).toBeGreaterThan(0.05);
    // Neither contact is verified: both sides are relay-only, and the pair is relay to relay.
    for (const summary of [atAlice, atBob]) {
      expect(summary).toMatchObject({
        callId: call.callId,
        reason: 'hung-up',
        connected: true,
        relay: true,
        relayOnly: true,
        path: { local: 'relay', remote: 'relay' },
      });
      expect(summary.durationMs).toBeGreaterThan(0);
    }
    expect(atAlice.direction).toBe('outgoing');
    expect(atBob.direction).toBe('incoming');
    expect(alice.events).toContainEqual({ type: 'call-ended', summary: atAlice });
    // Relay-only: each side learnt only the other's TURN addresses, never a host address.
    expect(received.length).toBeGreaterThan(0);
    for (const candidate of received) expect(candidate).toContain(' typ relay ');
  });

  it('a direct call between verified contacts connects without TURN', async () => {
    const alice = await online('alice');
    const bob = await online('bob');
    await alice.client.verify(bob.accountId);
    await bob.client.verify(alice.accountId);
    received.length = 0;

    const call = await alice.client.calls.start(bob.accountId, {
      media: new NodeCallMedia(toneSource(880)),
    });
    await ringing(bob, call.callId);
    const bobMedia = new NodeCallMedia();
    await bob.client.calls.accept({ media: bobMedia });
    await waitFor(
      () => statusOf(alice) === 'connected' && statusOf(bob) === 'connected',
      'both sides connect',
    );
    await waitFor(() => (bobMedia.recorder?.seconds ?? 0) >= 1.5, 'audio arrives');
    const heard = bobMedia.analyse();
    await bob.client.calls.hangup();
    const [atAlice, atBob] = await Promise.all([
      ended(alice, call.callId),
      ended(bob, call.callId),
    ]);
    expect(heard.dominantHz).toBeGreaterThanOrEqual(870);
    expect(heard.dominantHz).toBeLessThanOrEqual(890);
    for (const summary of [atAlice, atBob]) {
      expect(summary).toMatchObject({
        reason: 'hung-up',
        connected: true,
        relay: false,
        relayOnly: false,
        path: { local: 'host' },
      });
      // The peer's host candidate, or the same address learnt from its first check (prflx).
      expect(['host', 'prflx']).toContain(summary.path?.remote);
    }
    expect(received.some((candidate) => candidate.includes(' typ host '))).toBe(true);
  });

  it('relay-only stays on for a verified contact when asked for', async () => {
    const alice = await online('alice');
    const bob = await online('bob', { alwaysRelay: true });
    await alice.client.verify(bob.accountId);
    await bob.client.verify(alice.accountId);
    const call = await alice.client.calls.start(bob.accountId, { relayOnly: true });
    await ringing(bob, call.callId);
    await bob.client.calls.accept();
    await waitFor(
      () => statusOf(alice) === 'connected' && statusOf(bob) === 'connected',
      'both sides connect',
    );
    await alice.client.calls.hangup();
    const [atAlice, atBob] = await Promise.all([
      ended(alice, call.callId),
      ended(bob, call.callId),
    ]);
    expect(atAlice).toMatchObject({ relayOnly: true, relay: true, path: { local: 'relay' } });
    expect(atBob).toMatchObject({ relayOnly: true, relay: true, path: { local: 'relay' } });
  });

  it('glare: both call each other at once and end up in one call, the lower call id', async () => {
    const alice = await online('alice');
    const bob = await online('bob');
    const [fromAlice, fromBob] = await Promise.all([
      alice.client.calls.start(bob.accountId, { media: new NodeCallMedia(toneSource(440)) }),
      bob.client.calls.start(alice.accountId),
    ]);
    const winner = fromAlice.callId < fromBob.callId ? fromAlice : fromBob;
    const inCall = (test: TestClient) => {
      const state = test.client.calls.state;
      return state.status === 'connected' && state.call.callId === winner.callId;
    };
    await waitFor(() => inCall(alice) && inCall(bob), 'both sides connect on the winning call');
    // The side whose call lost became the callee of the winning one.
    const loser = winner === fromAlice ? bob : alice;
    expect(loser.client.calls.state).toMatchObject({ call: { direction: 'incoming' } });
    await alice.client.calls.hangup();
    const [atAlice, atBob] = await Promise.all([
      ended(alice, winner.callId),
      ended(bob, winner.callId),
    ]);
    expect(atAlice).toMatchObject({ reason: 'hung-up', connected: true });
    expect(atBob).toMatchObject({ reason: 'hung-up', connected: true });
    // The losing call is not reported as a call of its own.
    const losing = winner === fromAlice ? fromBob : fromAlice;
    for (const test of [alice, bob]) {
      expect(
        test.events.some((e) => e.type === 'call-ended' && e.summary.callId === losing.callId),
      ).toBe(false);
    }
  });

  it('declined: both sides end "declined"', async () => {
    const alice = await online('alice');
    const bob = await online('bob');
    const call = await alice.client.calls.start(bob.accountId);
    await ringing(bob, call.callId);
    await bob.client.calls.decline();
    const [atAlice, atBob] = await Promise.all([
      ended(alice, call.callId),
      ended(bob, call.callId),
    ]);
    expect(atAlice).toMatchObject({ reason: 'declined', connected: false, durationMs: 0 });
    expect(atBob).toMatchObject({ reason: 'declined', connected: false, durationMs: 0 });
    expect(statusOf(alice)).toBe('ended');
  });

  it('busy: a call to someone already in a call ends "busy" on both sides', async () => {
    const alice = await online('alice');
    const bob = await online('bob');
    const carol = await online('carol');
    const first = await alice.client.calls.start(bob.accountId);
    await ringing(bob, first.callId);
    await bob.client.calls.accept();
    await waitFor(() => statusOf(bob) === 'connected', 'alice and bob connect');

    const second = await carol.client.calls.start(bob.accountId);
    const [atCarol, atBob] = await Promise.all([
      ended(carol, second.callId),
      ended(bob, second.callId),
    ]);
    expect(atCarol).toMatchObject({ reason: 'busy', direction: 'outgoing', connected: false });
    expect(atBob).toMatchObject({
      reason: 'busy',
      direction: 'incoming',
      peer: carol.accountId,
      connected: false,
    });
    // The call in progress goes on.
    expect(bob.client.calls.state).toMatchObject({
      status: 'connected',
      call: { callId: first.callId },
    });
    expect(statusOf(alice)).toBe('connected');
    await alice.client.calls.hangup();
    expect((await ended(bob, first.callId)).reason).toBe('hung-up');
  });

  it('no answer: the ringing timeout ends the call "no-answer" on both sides', async () => {
    const alice = await online('alice', { ringTimeoutMs: 1_500 });
    const bob = await online('bob');
    const call = await alice.client.calls.start(bob.accountId);
    await ringing(bob, call.callId);
    const [atAlice, atBob] = await Promise.all([
      ended(alice, call.callId),
      ended(bob, call.callId),
    ]);
    expect(atAlice).toMatchObject({ reason: 'no-answer', connected: false });
    expect(atBob).toMatchObject({ reason: 'no-answer', connected: false });
    expect(atAlice.endedAt - atAlice.startedAt).toBeGreaterThanOrEqual(1_500);
  });

  it('hang-up during setup: while ringing, and right after the answer', async () => {
    const alice = await online('alice');
    const bob = await online('bob');
    const ringingCall = await alice.client.calls.start(bob.accountId);
    await ringing(bob, ringingCall.callId);
    await alice.client.calls.hangup();
    const [aliceRinging, bobRinging] = await Promise.all([
      ended(alice, ringingCall.callId),
      ended(bob, ringingCall.callId),
    ]);
    expect(aliceRinging.reason).toBe('hung-up');
    expect(bobRinging.reason).toBe('hung-up');

    const answered = await alice.client.calls.start(bob.accountId);
    await ringing(bob, answered.callId);
    await bob.client.calls.accept();
    await bob.client.calls.hangup();
    const [aliceAnswered, bobAnswered] = await Promise.all([
      ended(alice, answered.callId),
      ended(bob, answered.callId),
    ]);
    expect(aliceAnswered.reason).toBe('hung-up');
    expect(bobAnswered.reason).toBe('hung-up');
  });

  it('the callee’s other device stops ringing: "answered elsewhere"', async () => {
    const alice = await online('alice');
    const bob = await online('bob');
    const laptop = await newClient();
    const { linkCode, done } = await laptop.client.startLink();
    await bob.client.addDevice(linkCode);
    await done;
    await laptop.client.connect();
    const bobLaptop: TestClient = { ...laptop, accountId: bob.accountId };

    const call = await alice.client.calls.start(bob.accountId);
    await Promise.all([ringing(bob, call.callId), ringing(bobLaptop, call.callId)]);
    await bob.client.calls.accept();
    const atLaptop = await ended(bobLaptop, call.callId);
    expect(atLaptop).toMatchObject({ reason: 'answered-elsewhere', connected: false });
    await waitFor(
      () => statusOf(alice) === 'connected' && statusOf(bob) === 'connected',
      'alice and bob’s phone connect',
    );
    await alice.client.calls.hangup();
    expect((await ended(bob, call.callId)).reason).toBe('hung-up');
    expect(statusOf(bobLaptop)).toBe('ended');
  });

  it('a call to an unknown account, or to oneself, fails with a reason', async () => {
    const alice = await online('alice');
    const nobody = accountIdOf('00000000-0000-4000-8000-000000000000');
    const toNobody = await alice.client.calls.start(nobody);
    const failed = await ended(alice, toNobody.callId);
    expect(failed).toMatchObject({ reason: 'failed', connected: false });
    expect(failed.detail).toContain('no account');
    await expect(alice.client.calls.start(alice.accountId)).rejects.toMatchObject({
      code: 'INVALID_PEER',
    });
    // Nothing is left running: the next call goes ahead.
    const bob = await online('bob');
    const next = await alice.client.calls.start(bob.accountId);
    await ringing(bob, next.callId);
    await bob.client.calls.decline();
    expect((await ended(alice, next.callId)).reason).toBe('declined');
  });

  it('a relay-only call through a relay without TURN fails at once with the reason', async () => {
    const bare = await startRelay(databaseUrl, { WS_DIRECT_WINDOW_MS: '0' });
    try {
      const alice = await online('alice', {}, bare.url);
      const bob = await online('bob', {}, bare.url);
      const call = await alice.client.calls.start(bob.accountId);
      const atAlice = await ended(alice, call.callId);
      expect(atAlice).toMatchObject({ reason: 'failed', relayOnly: true, connected: false });
      expect(atAlice.detail).toMatch(/no TURN credentials.*TURN_NOT_CONFIGURED/);
      // The offer never left: Bob's device never rang.
      expect(bob.events.some((e) => e.type === 'call')).toBe(false);
    } finally {
      await Promise.all(open.splice(0).map((client) => client.close()));
      await bare.close();
    }
  });

  it('wrong TURN credentials: no path, and the call fails on both sides', async () => {
    // This relay signs with a secret coturn does not know: every allocation is refused.
    const wrong = await startRelay(databaseUrl, {
      WS_DIRECT_WINDOW_MS: '0',
      TURN_URLS: `turn:127.0.0.1:${coturn.port}?transport=udp`,
      TURN_SECRET: randomBytes(32).toString('hex'),
    });
    try {
      const alice = await online('alice', { connectTimeoutMs: 3_000 }, wrong.url);
      const bob = await online('bob', { connectTimeoutMs: 3_000 }, wrong.url);
      const call = await alice.client.calls.start(bob.accountId);
      await ringing(bob, call.callId);
      await bob.client.calls.accept();
      const [atAlice, atBob] = await Promise.all([
        ended(alice, call.callId),
        ended(bob, call.callId),
      ]);
      expect(atAlice).toMatchObject({ reason: 'failed', connected: false, relayOnly: true });
      expect(atBob).toMatchObject({ reason: 'failed', connected: false, relayOnly: true });
    } finally {
      await Promise.all(open.splice(0).map((client) => client.close()));
      await wrong.close();
    }
  });

  it('leaves no ICE candidate in the relay’s database and no IP address in its logs', async () => {
    // The tests above ran calls; ICE went online-only, everything else was stored.
    await expect.poll(() => sendsInFlight).toBe(0);
    const online = accepted.filter((send) => send.online);
    const stored = accepted.filter((send) => !send.online);
    expect(online.length).toBeGreaterThan(0);
    expect(stored.length).toBeGreaterThan(0);
    const dump = await dumpDatabase(databaseUrl);
    const audited = dump.split('\n-- envelope_audit\n')[1]?.split('\n-- ')[0] ?? '';
    const auditedContents = audited
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => (JSON.parse(line) as { content: string }).content.replace(/^\\x/, ''));
    // Exactly the stored sends' envelopes were ever written, none of the online ones.
    const storedContents = stored.flatMap((send) => send.contents);
    expect(auditedContents.length).toBeGreaterThan(0);
    expect([...auditedContents].sort()).toEqual([...storedContents].sort());
    const onlineContents = new Set(online.flatMap((send) => send.contents));
    expect(auditedContents.filter((content) => onlineContents.has(content))).toEqual([]);
    expect(dump).not.toContain('candidate:');
    expect(dump).not.toContain('a=candidate');

    const addresses = new Set(
      gathered.map((candidate) => candidate.split(' ')[4]).filter((a): a is string => !!a),
    );
    expect(addresses.size).toBeGreaterThan(0);
    const logs = relay.logs.join('\n');
    expect(logs.length).toBeGreaterThan(0);
    for (const address of addresses) {
      expect(dump, address).not.toContain(address);
      expect(logs, address).not.toContain(address);
    }
    expect(logs).not.toMatch(/(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])/);
    expect(logs).not.toMatch(/candidate/i);
  });
});
