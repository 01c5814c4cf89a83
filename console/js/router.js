// @ts-check
// Hash routes (#/functions, #/functions/NAME[/TAB], #/new, #/playground, #/runtimes): each route change
// stops the page on screen and builds the new one.

import { byId, clear, h } from './dom.js';
import { loginShown } from './login.js';
import { newPage } from './page.js';
import { createPage } from './page-create.js';
import { functionPage } from './page-function.js';
import { listPage } from './page-list.js';
import { playgroundPage } from './page-playground.js';
import { runtimesPage } from './runtimes.js';

/**
 * @typedef {{page: 'functions'} | {page: 'function', name: string, tab: string | undefined}
 *   | {page: 'new'} | {page: 'playground'} | {page: 'runtimes'} | {page: 'missing'}} Route
 */

/** @returns {Route} */
function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const parts = raw.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  if (parts.length === 0 || (parts[0] === 'functions' && parts.length === 1)) return { page: 'functions' };
  if (parts[0] === 'functions' && parts.length <= 3) return { page: 'function', name: parts[1], tab: parts[2] };
  if (parts[0] === 'new' && parts.length === 1) return { page: 'new' };
  if (parts[0] === 'playground' && parts.length === 1) return { page: 'playground' };
  if (parts[0] === 'runtimes' && parts.length === 1) return { page: 'runtimes' };
  return { page: 'missing' };
}

let firstRender = true;

/** Builds the page the address names (nothing while the login prompt is up). */
export function route() {
  if (loginShown()) return;
  const r = parseRoute();
  const pg = newPage(!firstRender);
  const app = clear(byId('app'));
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (!(a instanceof HTMLElement)) continue;
    const current = a.dataset.nav === (r.page === 'function' || r.page === 'new' ? 'functions' : r.page);
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (r.page === 'functions') listPage(pg, app);
  else if (r.page === 'function') functionPage(pg, app, r.name, r.tab);
  else if (r.page === 'new') createPage(pg, app);
  else if (r.page === 'playground') playgroundPage(pg, app);
  else if (r.page === 'runtimes') runtimesPage(pg, app);
  else missingPage(app);
  // After a navigation, keyboard and screen-reader users land on the new page's heading.
  if (!firstRender) {
    const h1 = app.querySelector('h1');
    if (h1) {
      h1.tabIndex = -1;
      h1.focus({ preventScroll: true });
    }
  }
  firstRender = false;
}

/** @param {HTMLElement} app */
function missingPage(app) {
  document.title = 'Not found · Ignis';
  app.append(h('div', { class: 'card' },
    h('h1', {}, 'Nothing here'),
    h('p', {}, 'This address does not match a console page. ', h('a', { href: '#/functions' }, 'Go to the functions.'))));
}
