export * from './ids.ts';
export * from './base64.ts';
export * from './errors.ts';
export * from './keys.ts';
export * from './accounts.ts';
export * from './messages.ts';
export * from './frames.ts';
export * from './provisioning.ts';
