#!/usr/bin/env bash
# The Android app's CI step (called by .ci/run after the root install): its own install, typecheck,
# lint (with the AsyncStorage ban checked), jest-expo tests against real relays, the Hermes bundle,
# the web build driven in Chromium through two `privcomm daemon --web-bridge`, and a prebuild whose
# AndroidManifest permissions are checked. Needs no Android SDK; needs /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n=== mobile: %s\n' "$*"; }

step "install (own lockfile; the core comes through file: links, its dependencies from the root install)"
npm ci --no-audit --no-fund

step "typecheck"
npx tsc -p tsconfig.json --noEmit

step "lint"
npx eslint .
npx prettier --check .
# The rule that keeps secrets out of AsyncStorage must refuse an import of it.
if echo "import A from '@react-native-async-storage/async-storage'; export default A;" |
  npx eslint --stdin --stdin-filename src/probe.ts >/dev/null 2>&1; then
  echo "lint did not refuse an AsyncStorage import" >&2
  exit 1
fi

step "tests (jest-expo, real client core, Node engine, real relays)"
npx jest --ci

step "Hermes bundle (expo export --platform android)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CI=1 npx expo export --platform android --output-dir "$out/export"
ls "$out"/export/_expo/static/js/android/*.hbc

step "web build (expo export --platform web), two pages in Chromium over two web bridges"
CI=1 npx expo export --platform web --output-dir "$out/web"
PRIVCOMM_WEB_EXPORT="$out/web" PRIVCOMM_SCREENSHOTS="$out/screenshots" \
  node --import tsx --test test/web/two-browsers.test.mts

step "prebuild into a temporary copy, and the manifest's permissions"
mkdir "$out/app"
tar --exclude=./node_modules --exclude=./dist-android --exclude=./dist-web --exclude=./android -cf - . | tar -xf - -C "$out/app"
ln -s "$PWD/node_modules" "$out/app/node_modules"
(cd "$out/app" && CI=1 npx expo prebuild --platform android --no-install \
  --template expo-template-bare-minimum@56.0.37)
node scripts/check-manifest.js "$out/app/android/app/src/main/AndroidManifest.xml"
# The message database is SQLCipher only if expo-sqlite is built with it (app.json's plugin
# option); without it the app refuses to open the store (src/platform/encrypted-store.ts).
if ! grep -qx 'expo.sqlite.useSQLCipher=true' "$out/app/android/gradle.properties"; then
  echo "prebuild did not set expo.sqlite.useSQLCipher=true in android/gradle.properties" >&2
  exit 1
fi
