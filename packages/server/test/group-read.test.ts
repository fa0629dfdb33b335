import { describe, expect, it } from 'vitest';
import { GroupRead } from '../src/services/group-read.ts';

/** A read function whose calls the test answers by hand. */
const controlledReader = (bad: (key: number) => boolean = () => false) => {
  const calls: { keys: number[]; finish: () => void }[] = [];
  const read = (keys: readonly number[]): Promise<number[]> =>
    new Promise((resolve, reject) => {
      const copy = [...keys];
      calls.push({
        keys: copy,
        finish: () =>
          copy.some(bad)
            ? reject(new Error(`bad key in ${copy.join(',')}`))
            : resolve(copy.map((key) => key * 10)),
      });
    });
  return { calls, read };
};

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));
const settle = (promise: Promise<number>) =>
  promise.then(
    (value) => value,
    (error: unknown) => (error as Error).message,
  );

describe('GroupRead', () => {
  it('reads a lone key at once, and keys asked for meanwhile together in the next read', async () => {
    const reader = controlledReader();
    const group = new GroupRead(reader.read);
    const first = settle(group.get(1));
    expect(reader.calls.map((c) => c.keys)).toEqual([[1]]);
    const later = [2, 3, 4].map((key) => settle(group.get(key)));
    expect(reader.calls).toHaveLength(1);
    reader.calls[0]?.finish();
    await flush();
    expect(reader.calls.map((c) => c.keys)).toEqual([[1], [2, 3, 4]]);
    reader.calls[1]?.finish();
    expect(await first).toBe(10);
    expect(await Promise.all(later)).toEqual([20, 30, 40]);
  });

  it('splits at maxKeys', async () => {
    const reader = controlledReader();
    const group = new GroupRead(reader.read, { maxKeys: 2 });
    const all = [1, 2, 3, 4, 5].map((key) => settle(group.get(key)));
    for (let i = 0; i < 3; i += 1) {
      await flush();
      reader.calls[i]?.finish();
    }
    expect(await Promise.all(all)).toEqual([10, 20, 30, 40, 50]);
    expect(reader.calls.map((c) => c.keys)).toEqual([[1], [2, 3], [4, 5]]);
  });

  it('reads a failed batch again key by key, so one bad key fails only its own caller', async () => {
    const reader = controlledReader((key) => key === 3);
    const group = new GroupRead(reader.read);
    const first = settle(group.get(1));
    const later = [2, 3, 4].map((key) => settle(group.get(key)));
    reader.calls[0]?.finish();
    for (let i = 1; i < 5; i += 1) {
      await flush();
      reader.calls[i]?.finish();
    }
    expect(await first).toBe(10);
    expect(await Promise.all(later)).toEqual([20, 'bad key in 3', 40]);
  });

  it('fails every caller at once when the failure is not the keys’ (retryAlone false)', async () => {
    const reader = controlledReader((key) => key === 3);
    const group = new GroupRead(reader.read, { retryAlone: () => false });
    void group.get(1).catch(() => undefined);
    const later = [2, 3].map((key) => settle(group.get(key)));
    reader.calls[0]?.finish();
    await flush();
    reader.calls[1]?.finish();
    expect(await Promise.all(later)).toEqual(['bad key in 2,3', 'bad key in 2,3']);
    expect(reader.calls).toHaveLength(2);
  });

  it('refuses an answer with the wrong number of values', async () => {
    const group = new GroupRead(async (keys: readonly number[]) => keys.slice(1));
    await expect(group.get(1)).rejects.toThrow('group read answered 0 of 1 keys');
  });
});
