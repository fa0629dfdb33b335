import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../src/services/group-commit.ts';

/** A write function whose calls the test completes by hand, one at a time. */
const controlledWriter = <T>(fails: (items: readonly T[]) => boolean = () => false) => {
  const calls: { items: T[]; finish: () => void }[] = [];
  let waiting: (() => void) | undefined;
  const write = (items: readonly T[]): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const copy = [...items];
      calls.push({
        items: copy,
        finish: () => (fails(copy) ? reject(new Error(`bad batch ${copy.join(',')}`)) : resolve()),
      });
      waiting?.();
    });
  /** Waits (through microtasks only) until the write function has been called `count` times. */
  const called = async (count: number): Promise<void> => {
    for (let spins = 0; calls.length < count; spins += 1) {
      if (spins > 1000) throw new Error(`write called ${calls.length} times, expected ${count}`);
      await new Promise<void>((resolve) => {
        waiting = resolve;
        queueMicrotask(resolve);
      });
    }
  };
  return { calls, write, called };
};

/** Resolves to the promise's outcome without ever rejecting. */
const settle = (promise: Promise<void>) =>
  promise.then(
    () => 'ok' as const,
    (error: unknown) => (error instanceof Error ? error.message : String(error)),
  );

/** Lets queued microtasks and promise callbacks run. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('GroupCommit', () => {
  it('writes a lone submission at once, alone', async () => {
    const writer = controlledWriter<number>();
    const commit = new GroupCommit(writer.write);
    const done = settle(commit.submit([1, 2]));
    expect(writer.calls.map((c) => c.items)).toEqual([[1, 2]]);
    writer.calls[0]?.finish();
    expect(await done).toBe('ok');
  });

  it('batches everything submitted during a write into the next write', async () => {
    const writer = controlledWriter<number>();
    const commit = new GroupCommit(writer.write);
    const first = settle(commit.submit([1]));
    const outcomes: string[] = [];
    const later = [commit.submit([2]), commit.submit([3, 4]), commit.submit([5])].map((p, i) =>
      settle(p).then((outcome) => {
        outcomes[i] = outcome;
      }),
    );
    expect(writer.calls).toHaveLength(1); // nothing overtakes the write in flight
    await flush();
    expect(outcomes).toEqual([]);

    writer.calls[0]?.finish();
    expect(await first).toBe('ok');
    await writer.called(2);
    expect(writer.calls.map((c) => c.items)).toEqual([[1], [2, 3, 4, 5]]);
    await flush();
    expect(outcomes).toEqual([]); // not acknowledged before their own write completes

    writer.calls[1]?.finish();
    await Promise.all(later);
    expect(outcomes).toEqual(['ok', 'ok', 'ok']);
    expect(writer.calls).toHaveLength(2);
  });

  it('starts again after going idle', async () => {
    const writer = controlledWriter<string>();
    const commit = new GroupCommit(writer.write);
    const a = settle(commit.submit(['a']));
    writer.calls[0]?.finish();
    expect(await a).toBe('ok');
    await flush();
    const b = settle(commit.submit(['b']));
    expect(writer.calls.map((c) => c.items)).toEqual([['a'], ['b']]);
    writer.calls[1]?.finish();
    expect(await b).toBe('ok');
  });

  it('retries a failed batch item by item, so only the bad submission rejects', async () => {
    const writer = controlledWriter<string>((items) => items.includes('bad'));
    const commit = new GroupCommit(writer.write);
    const first = settle(commit.submit(['first']));
    const good1 = settle(commit.submit(['g1', 'g2']));
    const bad = settle(commit.submit(['bad']));
    const good2 = settle(commit.submit(['g3']));
    for (let call = 0; call < 5; call += 1) {
      await writer.called(call + 1);
      writer.calls[call]?.finish();
    }
    expect(await first).toBe('ok');
    expect(await good1).toBe('ok');
    expect(await bad).toBe('bad batch bad');
    expect(await good2).toBe('ok');
    expect(writer.calls.map((c) => c.items)).toEqual([
      ['first'],
      ['g1', 'g2', 'bad', 'g3'],
      ['g1', 'g2'],
      ['bad'],
      ['g3'],
    ]);
  });

  it("fails the whole batch at once when the failure is not the items' (database gone), and carries on", async () => {
    // The first two writes fail as an unreachable database does; later ones succeed.
    let writes = 0;
    const writer = controlledWriter<string>(() => (writes += 1) <= 2);
    const commit = new GroupCommit(writer.write, {
      retryAlone: (error) => !(error instanceof Error && error.message.startsWith('bad batch')),
    });
    const first = settle(commit.submit(['first']));
    const second = settle(commit.submit(['a']));
    const third = settle(commit.submit(['b']));
    await writer.called(1);
    writer.calls[0]?.finish();
    await writer.called(2);
    writer.calls[1]?.finish();
    expect([await first, await second, await third]).toEqual([
      'bad batch first',
      'bad batch a,b',
      'bad batch a,b',
    ]);
    // Nothing written item by item: each waited out one failure, not one per item before it.
    expect(writer.calls.map((c) => c.items)).toEqual([['first'], ['a', 'b']]);
    const next = settle(commit.submit(['next']));
    await writer.called(3);
    writer.calls[2]?.finish();
    expect(await next).toBe('ok');
  });

  it('rejects a lone failing submission without writing it twice, then carries on', async () => {
    const writer = controlledWriter<string>((items) => items.includes('bad'));
    const commit = new GroupCommit(writer.write);
    const bad = settle(commit.submit(['bad']));
    writer.calls[0]?.finish();
    expect(await bad).toBe('bad batch bad');
    const next = settle(commit.submit(['next']));
    await writer.called(2);
    writer.calls[1]?.finish();
    expect(await next).toBe('ok');
    expect(writer.calls.map((c) => c.items)).toEqual([['bad'], ['next']]);
  });

  it('never writes more than maxItems at once, unless one submission alone is larger', async () => {
    const writer = controlledWriter<number>();
    const commit = new GroupCommit(writer.write, { maxItems: 3 });
    const all = [commit.submit([0])];
    for (const size of [1, 1, 1, 1, 1, 2, 2, 5, 1]) {
      all.push(commit.submit(Array.from({ length: size }, () => size)));
    }
    for (let call = 0; call < 7; call += 1) {
      await writer.called(call + 1);
      writer.calls[call]?.finish();
    }
    await Promise.all(all);
    expect(writer.calls.map((c) => c.items)).toEqual([
      [0],
      [1, 1, 1],
      [1, 1],
      [2, 2],
      [2, 2],
      [5, 5, 5, 5, 5],
      [1],
    ]);
  });

  it('writes every item exactly once, in order, whole submissions within maxItems (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 10 }),
        fc.array(fc.tuple(fc.integer({ min: 1, max: 6 }), fc.boolean()), {
          minLength: 1,
          maxLength: 40,
        }),
        async (maxItems, plan) => {
          const batches: number[][] = [];
          const commit = new GroupCommit<number>(
            async (items) => {
              batches.push([...items]);
              await flush();
            },
            { maxItems },
          );
          const owner: number[] = []; // item -> index of its submission
          const submissions: Promise<void>[] = [];
          for (const [index, [size, pause]] of plan.entries()) {
            const items = Array.from({ length: size }, () => owner.push(index) - 1);
            submissions.push(commit.submit(items));
            if (pause) await flush();
          }
          await Promise.all(submissions);
          expect(batches.flat()).toEqual(owner.map((_, item) => item));
          for (const batch of batches) {
            const inBatch = new Set(batch.map((item) => owner[item]!));
            // Submissions are never split, and only a lone one may exceed maxItems.
            for (const index of inBatch) {
              expect(batch.filter((item) => owner[item] === index)).toHaveLength(plan[index]![0]);
            }
            if (batch.length > maxItems) expect(inBatch.size).toBe(1);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
