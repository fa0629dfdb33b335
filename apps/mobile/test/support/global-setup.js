// Starts the test relays (test/support/relay-process.mts under tsx, a separate Node process, as a
// relay runs in production) and hands their addresses to the tests through the environment.
const { spawn } = require('node:child_process');
const path = require('node:path');

module.exports = async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/relay-process.mts'], {
    cwd: path.resolve(__dirname, '../..'),
    stdio: ['ignore', 'pipe', 'inherit'],
    env: process.env,
  });
  const line = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk.toString('utf8');
      const end = out.indexOf('\n');
      if (end >= 0) resolve(out.slice(0, end));
    });
    child.once('exit', (code) => reject(new Error(`the test relays did not start (exit ${code})`)));
  });
  const relays = JSON.parse(line);
  process.env.PRIVCOMM_TEST_RELAY_URL = relays.relayUrl;
  // Absent with PRIVCOMM_TEST_RELAYS=open (the browser test starts the open relay only).
  if (relays.inviteRelayUrl) {
    process.env.PRIVCOMM_TEST_INVITE_RELAY_URL = relays.inviteRelayUrl;
    process.env.PRIVCOMM_TEST_INVITE_CODES = relays.inviteCodes.join(',');
  }
  process.env.PRIVCOMM_TEST_RELAY_DATABASE_URL = relays.databaseUrl;
  process.env.PRIVCOMM_TEST_RESTARTABLE_RELAY_URL = relays.restartableUrl;
  // The reconnection test signals this process to stop and start that relay.
  process.env.PRIVCOMM_TEST_RELAYS_PID = String(child.pid);
  globalThis.__privcommRelays = child;
};
