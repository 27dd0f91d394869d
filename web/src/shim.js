// The WASI preview 1 shim (@bjorn3/browser_wasi_shim, pinned in package.json).
// Imported by relative path so that module workers load it without a bundler
// or import map (workers don't see the page's import map). A bundler resolves
// this path too; if the package is hoisted elsewhere, alias this file.
export {
  WASI,
  WASIProcExit,
  File,
  OpenFile,
  ConsoleStdout,
} from '../node_modules/@bjorn3/browser_wasi_shim/dist/index.js';
