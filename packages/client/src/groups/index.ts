export * from './group-state.ts';
export * from './group-log.ts';
export * from './group-codec.ts';
export { type GroupSummary } from './group-manager.ts';
export { receiptCounts, type ReceiptCounts } from './group-receipts.ts';
