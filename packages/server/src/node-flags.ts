/**
 * The Node flags the relay runs with, wherever it is started: `npm start` (both package.json
 * files), the container image's CMD, the systemd unit and the benchmark (a test checks they agree).
 *
 * A young generation of twice Node's default (32 MiB semi-spaces instead of 16): the relay's
 * garbage is short-lived (a frame, its JSON, the envelope), so fewer scavenges collect the same
 * garbage: 8-15 % less CPU per message in the online benchmark for up to 48 MiB more resident
 * memory under load (docs/benchmarks.md).
 *
 * No allocation-site pretenuring: under full load most of the relay's objects outlive a young
 * collection (a send spends tens of milliseconds in the relay), so V8 starts allocating them
 * straight in the old generation, and keeps on when the load falls. There, dead, they keep the
 * young objects they point to alive through every young collection: at 4,000 messages/s after
 * the online benchmark, 320 KB promoted per young collection instead of 3 KB, a full collection
 * every few seconds, and the p99 over 10 ms (docs/benchmarks.md, item 33). V8 reads these flags
 * only at start, never from the program.
 */
export const RELAY_NODE_FLAGS = [
  '--max-semi-space-size=32',
  '--no-allocation-site-pretenuring',
] as const;
