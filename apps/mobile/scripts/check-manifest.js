// Checks the AndroidManifest.xml that `expo prebuild` generated: the app asks for exactly the
// permissions a voice messenger needs, and every blocked one is marked tools:node="remove" (so
// a library's manifest cannot bring it back at merge time).
// Usage: node scripts/check-manifest.js <AndroidManifest.xml>
const { readFileSync } = require('node:fs');

const EXPECTED = [
  'android.permission.ACCESS_NETWORK_STATE', // libwebrtc's network monitor
  'android.permission.CAMERA', // scanning QR codes
  'android.permission.INTERNET',
  'android.permission.MODIFY_AUDIO_SETTINGS', // speaker and earpiece in calls
  'android.permission.RECORD_AUDIO', // calls
];

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: node scripts/check-manifest.js <AndroidManifest.xml>\n');
  process.exit(2);
}
const xml = readFileSync(file, 'utf8');
const requested = [];
const removed = [];
for (const [tag] of xml.matchAll(/<uses-permission\b[^>]*>/g)) {
  const name = /android:name="([^"]+)"/.exec(tag)?.[1];
  if (!name) continue;
  (/tools:node="remove"/.test(tag) ? removed : requested).push(name);
}
const blocked = require('../app.json').expo.android.blockedPermissions;
const problems = [];
const missing = EXPECTED.filter((p) => !requested.includes(p));
const extra = requested.filter((p) => !EXPECTED.includes(p));
const notRemoved = blocked.filter((p) => !removed.includes(p));
if (missing.length) problems.push(`missing: ${missing.join(', ')}`);
if (extra.length) problems.push(`not expected: ${extra.join(', ')}`);
if (notRemoved.length) problems.push(`blocked but not removed: ${notRemoved.join(', ')}`);
if (problems.length) {
  process.stderr.write(`AndroidManifest permissions are wrong: ${problems.join('; ')}\n`);
  process.exit(1);
}
process.stdout.write(
  `AndroidManifest permissions as expected: ${requested.sort().join(', ')}; removed: ${removed.length}\n`,
);
