// Compiled modules kept across page loads: the browser's counterpart of the
// server's AOT artifacts. Keyed by the SHA-256 of the module as given plus the
// memory cap (the cap is compiled in, see limits.js).
//
// IndexedDB may store a WebAssembly.Module (structured clone) only where the
// engine allows it. Chromium refuses with DataCloneError (checked on 156), so
// there the entry holds the capped module's *bytes* instead and a load
// compiles from them: no network, no hashing, no rewrite, but a compile.
// `stored` on each entry says which.

const DB = 'wisp-browser-runner';
const STORE = 'modules';
const VERSION = 1;

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

export class ModuleCache {
  /** @param {string} [name] database name (tests use their own) */
  constructor(name = DB) {
    this.name = name;
    this.db = null;
    /** false once IndexedDB refused a Module; bytes are stored from then on */
    this.modulesStorable = true;
  }

  async open() {
    if (this.db) return this.db;
    if (typeof indexedDB === 'undefined') return null;
    const open = indexedDB.open(this.name, VERSION);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE);
    try {
      this.db = await request(open);
    } catch {
      this.db = null; // private mode, storage disabled: run without the cache
    }
    return this.db;
  }

  /** @returns {Promise<{stored:'module', module:WebAssembly.Module}|{stored:'bytes', bytes:Uint8Array}|null>} */
  async get(key) {
    const db = await this.open();
    if (!db) return null;
    try {
      return (await request(db.transaction(STORE).objectStore(STORE).get(key))) ?? null;
    } catch {
      return null;
    }
  }

  /** Stores the Module if the browser allows, else the bytes. Returns what was stored. */
  async put(key, module, bytes) {
    const db = await this.open();
    if (!db) return null;
    if (this.modulesStorable) {
      try {
        await this.#put(db, key, { stored: 'module', module });
        return 'module';
      } catch (e) {
        if (e?.name !== 'DataCloneError') return null;
        this.modulesStorable = false;
      }
    }
    try {
      await this.#put(db, key, { stored: 'bytes', bytes });
      return 'bytes';
    } catch {
      return null; // quota: the cache is an optimisation
    }
  }

  #put(db, key, value) {
    return new Promise((resolve, reject) => {
      let tx;
      try {
        tx = db.transaction(STORE, 'readwrite');
        tx.objectStore(STORE).put(value, key); // throws DataCloneError synchronously
      } catch (e) {
        reject(e);
        return;
      }
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }

  /** Removes every entry (tests, "clear cache" buttons). */
  async clear() {
    const db = await this.open();
    if (!db) return;
    await request(db.transaction(STORE, 'readwrite').objectStore(STORE).clear());
  }
}
