// libsignal loaded by Node itself (require of its ES module, Node >= 20.19), outside Jest's
// registry: its native addon path comes from import.meta.dirname, which Jest's transform lacks.
const { createRequire } = process.getBuiltinModule('node:module');
module.exports = createRequire(__filename)('@signalapp/libsignal-client');
