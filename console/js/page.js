// @ts-check
// The page on screen and what it started (timers, streams, editors), so that leaving it
// stops everything; polling and waiting that end with the page.

/**
 * @typedef {object} Page
 * @property {boolean} alive false once the user left the page
 * @property {Array<() => void>} cleanups what leaving the page runs (last first)
 * @property {(() => void) | null} onSave what Ctrl/Cmd+S does on this page
 * @property {(() => void) | null} onRun what Ctrl/Cmd+Enter does on this page
 * @property {boolean} navigated whether the page came from a navigation (not the first load)
 * @property {() => void} refreshFunction asks the function page to poll right away
 */

/** @type {Page | null} */
let page = null;

/** The page on screen, if any. */
export function currentPage() {
  return page;
}

/**
 * Stops the page on screen and starts a new one.
 * @param {boolean} navigated
 * @returns {Page}
 */
export function newPage(navigated) {
  teardown();
  page = { alive: true, cleanups: [], onSave: null, onRun: null, navigated, refreshFunction: () => {} };
  return page;
}

/** Stops everything the page on screen started. */
export function teardown() {
  if (!page) return;
  page.alive = false;
  for (const fn of page.cleanups.splice(0).reverse()) {
    try {
      fn();
    } catch (e) {
      console.error(e);
    }
  }
  page = null;
}

/**
 * @typedef {object} Poller
 * @property {() => void} stop
 * @property {() => void} now runs again right away (or as soon as the current run ends)
 */

/**
 * Runs fn now and then again `interval()` ms after each run finishes, while pg lives.
 * @param {Page} pg
 * @param {() => Promise<void>} fn
 * @param {number | (() => number)} interval
 * @returns {Poller}
 */
export function poll(pg, fn, interval) {
  /** @type {ReturnType<typeof setTimeout> | null} */
  let timer = null;
  let stopped = false;
  const run = async () => {
    timer = null;
    if (stopped || !pg.alive) return;
    try {
      await fn();
    } catch (e) {
      console.error(e);
    }
    if (stopped || !pg.alive) return;
    timer = setTimeout(run, typeof interval === 'function' ? interval() : interval);
  };
  const handle = {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
    now() {
      if (timer) {
        clearTimeout(timer);
        run();
      }
    },
  };
  pg.cleanups.push(handle.stop);
  run();
  return handle;
}

/**
 * Resolves after `ms`, unless the page goes first (then never).
 * @param {Page} pg
 * @param {number} ms
 * @returns {Promise<void>}
 */
export function wait(pg, ms) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    pg.cleanups.push(() => clearTimeout(t));
  });
}
