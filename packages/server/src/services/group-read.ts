/**
 * Group read: the read-side twin of GroupCommit. Keys asked for while a read is in flight are
 * read together by the next one, so that under load one query answers many requests (the send
 * path's device-set lookup was one query per message, and each query's round trip cost more CPU
 * than its work). A lone caller pays no added latency. A failed batch is read again key by key,
 * so one bad key cannot fail the others, unless `retryAlone` says the failure was not the keys'
 * (the database is gone): then every caller gets the error at once. Also used for statements that
 * write but answer each key (a login's challenge, a socket's connection number): one statement
 * is atomic, so a batch that failed wrote nothing and may be tried again key by key.
 */
export class GroupRead<K, V> {
  private pending: { key: K; resolve: (value: V) => void; reject: (error: unknown) => void }[] = [];
  private reading = false;

  private readonly maxKeys: number;
  private readonly retryAlone: (error: unknown) => boolean;

  constructor(
    /** Answers each key, in the order given (one value per key). */
    private readonly read: (keys: readonly K[]) => Promise<readonly V[]>,
    options: { maxKeys?: number; retryAlone?: (error: unknown) => boolean } = {},
  ) {
    this.maxKeys = options.maxKeys ?? 500;
    this.retryAlone = options.retryAlone ?? (() => true);
  }

  get(key: K): Promise<V> {
    return new Promise((resolve, reject) => {
      this.pending.push({ key, resolve, reject });
      if (!this.reading) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.reading = true;
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.maxKeys);
      try {
        const values = await this.readChecked(batch.map((entry) => entry.key));
        batch.forEach((entry, index) => entry.resolve(values[index] as V));
      } catch (error) {
        if (batch.length === 1 || !this.retryAlone(error)) {
          for (const entry of batch) entry.reject(error);
          continue;
        }
        for (const entry of batch) {
          await this.readChecked([entry.key]).then(
            (values) => entry.resolve(values[0] as V),
            entry.reject,
          );
        }
      }
    }
    this.reading = false;
  }

  private async readChecked(keys: readonly K[]): Promise<readonly V[]> {
    const values = await this.read(keys);
    if (values.length !== keys.length) {
      throw new Error(`group read answered ${values.length} of ${keys.length} keys`);
    }
    return values;
  }
}
