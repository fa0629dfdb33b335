export { openAndroidEngine } from './src/PrivcommEngine';
