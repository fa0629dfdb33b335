export * from './phone-number.ts';
export * from './oprf.ts';
export * from './phone-discovery.ts';
export * from './address-book.ts';
