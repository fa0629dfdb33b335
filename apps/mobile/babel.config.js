// Babel for Metro (the app bundle) and for jest-expo (the tests).
module.exports = (api) => {
  const test = api.env('test');
  return {
    presets: ['babel-preset-expo'],
    // Tests only: the Node engine and its SQLite loader use `import.meta`, which
    // babel-preset-expo turns into a module registry lookup that has no file path under Jest.
    // Never in the app bundle: Metro's export would break.
    plugins: test ? ['./test/support/babel-import-meta.js'] : [],
  };
};
