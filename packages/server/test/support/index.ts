/**
 * The relay test harness, for this package's tests and for other packages' end-to-end tests
 * (`@privcomm/server/testing`): databases, in-process and spawned relays, test devices, and a
 * throwaway coturn.
 */
export * from './database.ts';
export * from './relay.ts';
export * from './client.ts';
export * from './coturn.ts';
export * from './npm-start.ts';
export * from './tcp-proxy.ts';
export * from './fault-cluster.ts';
export * from './fault-schedule.ts';
export * from './fault-traffic.ts';
export * from './privacy-audit.ts';
export * from './at-rest.ts';
