/* eslint-disable no-console, no-undef -- a Jest setup file that filters console.error */
// The app's stores change when the relay's messages arrive, outside any test action, which React
// reports as "not wrapped in act(...)". The tests wait for what the user would see (findBy*), so
// these warnings say nothing here; every other console.error still prints.
const original = console.error;
console.error = (...args) => {
  if (typeof args[0] === 'string' && args[0].includes('not wrapped in act(')) return;
  original(...args);
};
