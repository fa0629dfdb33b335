/**
 * The Node flags the relay runs with, wherever it is started: `npm start` (both package.json
 * files), the container image's CMD, the systemd unit and the benchmark (a test checks they agree).
 *
 * A young generation of twice Node's default (32 MiB semi-spaces instead of 16): the relay's
 * garbage is short-lived (a frame, its JSON, the envelope), so fewer scavenges collect the same
 * garbage: 8-15 % less CPU per message in the online benchmark for up to 48 MiB more resident
 * memory under load (docs/benchmarks.md). V8 reads it only at start, never from the program.
 */
export const RELAY_NODE_FLAGS = ['--max-semi-space-size=32'] as const;
