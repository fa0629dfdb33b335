/**
 * Counts the sockets per client address that have not authenticated: device sockets until their
 * auth frame succeeds, provisioning sockets for their whole life. Without a cap one host could
 * hold tens of thousands of them (each with its timers and buffers) for free. The address is a
 * key in memory only, while such a socket is open.
 */
export class UnauthenticatedSockets {
  private readonly open = new Map<string, number>();

  constructor(private readonly perAddress: number) {}

  /** Whether another socket from this address may open now. */
  hasRoom(address: string): boolean {
    return (this.open.get(address) ?? 0) < this.perAddress;
  }

  /**
   * Counts a socket from this address if there is room; returns its release function (idempotent),
   * or undefined when the address is at its cap.
   */
  admit(address: string): (() => void) | undefined {
    if (!this.hasRoom(address)) return undefined;
    this.open.set(address, (this.open.get(address) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(address) ?? 1) - 1;
      if (left <= 0) this.open.delete(address);
      else this.open.set(address, left);
    };
  }
}
