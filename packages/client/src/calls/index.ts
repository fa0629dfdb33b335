export * from './call-state.ts';
export * from './call-manager.ts';
export * from './webrtc.ts';
