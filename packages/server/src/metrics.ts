import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics. Labels are bounded and never name an account, a device or an address:
 * the route label is the route pattern, the status a number.
 */
export const createMetrics = () => {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'privcomm_' });
  const counter = (name: string, help: string) =>
    new Counter({ name: `privcomm_${name}`, help, registers: [registry] });
  return {
    registry,
    httpRequests: new Counter({
      name: 'privcomm_http_requests_total',
      help: 'HTTP requests by route pattern and status.',
      labelNames: ['route', 'status'] as const,
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'privcomm_http_request_duration_seconds',
      help: 'HTTP request duration by route pattern.',
      labelNames: ['route'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers: [registry],
    }),
    wsConnections: new Gauge({
      name: 'privcomm_ws_connections',
      help: 'Open WebSocket connections on this instance.',
      registers: [registry],
    }),
    envelopesStored: counter('envelopes_stored_total', 'Envelopes made durable.'),
    envelopesDelivered: counter(
      'envelopes_delivered_total',
      'Envelopes pushed to a socket: stored ones, and ones delivered first.',
    ),
    envelopesAcknowledged: counter('envelopes_acknowledged_total', 'Envelopes acknowledged.'),
    envelopesExpired: counter('envelopes_expired_total', 'Envelopes removed after their TTL.'),
    onlineDelivered: counter('online_delivered_total', 'Online-only envelopes pushed.'),
    directAcknowledged: counter(
      'envelopes_direct_acknowledged_total',
      'Envelopes delivered first and acknowledged in the window: accepted with no write.',
    ),
    directStored: counter(
      'envelopes_direct_stored_total',
      'Envelopes delivered first but not acknowledged in the window: written, then accepted.',
    ),
    invalidFrames: counter('ws_invalid_frames_total', 'Frames rejected as invalid.'),
    slowConsumers: counter('ws_slow_consumers_total', 'Sockets closed as slow consumers.'),
  };
};

export type Metrics = ReturnType<typeof createMetrics>;
