// libsignal's SealedSenderMultiRecipientMessage (not re-exported by its index; the Node engine
// imports it by path), loaded by Node itself as libsignal.js loads the package, and handed to
// Babel's default-import interop as an ES module's default export.
const { createRequire } = process.getBuiltinModule('node:module');
const loaded = createRequire(__filename)(
  '@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage.js',
);
module.exports = { __esModule: true, default: loaded.default };
