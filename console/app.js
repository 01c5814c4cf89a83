// @ts-check
// The Ignis web console's entry module: native ES modules, no framework, no build step.
//
// It checks that the API answers (or asks for a token) before showing anything, and
// wires what is global to the page: the keyboard shortcuts, sign-out, the skip link and
// hash routing. Everything else lives in js/ (see js/router.js for the pages).

import { api, errMessage, forgetToken, isUnauthorized, onUnauthorized, token } from './js/api.js';
import { byId, clear, h } from './js/dom.js';
import { requireLogin, resetLogin } from './js/login.js';
import { currentPage, teardown } from './js/page.js';
import { route } from './js/router.js';
import { setRuntimeInfo } from './js/runtimes.js';
import { toast } from './js/widgets.js';

function showApp() {
  byId('topbar').hidden = false;
  byId('sign-out').hidden = !token();
  route();
}

/** Checks the API answers (or wants a token) before showing anything of the app. */
async function start() {
  resetLogin();
  byId('topbar').hidden = true;
  const app = clear(byId('app'));
  app.append(h('p', { class: 'muted' }, 'Loading…'));
  try {
    setRuntimeInfo(await api('GET', '/v1/runtimes'));
  } catch (e) {
    if (isUnauthorized(e)) return;
    // The app can still work without the runtime list; say what happened.
    setRuntimeInfo(null);
    toast(errMessage(e), 'error');
  }
  showApp();
}

function signOut() {
  forgetToken();
  teardown();
  start();
}

onUnauthorized((message) => requireLogin(message, showApp));

// Ctrl/Cmd+S deploys and Ctrl/Cmd+Enter runs, wherever the focus is (even in Monaco):
// this listener sees the key before the editor does.
window.addEventListener('keydown', (ev) => {
  const page = currentPage();
  if (!(ev.ctrlKey || ev.metaKey) || ev.altKey || !page) return;
  if ((ev.key === 's' || ev.key === 'S') && !ev.shiftKey && page.onSave) {
    ev.preventDefault();
    page.onSave();
  } else if (ev.key === 'Enter' && page.onRun) {
    ev.preventDefault();
    ev.stopPropagation();
    page.onRun();
  }
}, true);

byId('sign-out').addEventListener('click', signOut);
const skipLink = document.querySelector('.skip-link');
if (skipLink) {
  skipLink.addEventListener('click', (ev) => {
    ev.preventDefault();
    const main = byId('app');
    const heading = main.querySelector('h1');
    if (heading) heading.tabIndex = -1;
    (heading || main).focus();
  });
}
window.addEventListener('hashchange', route);
start();
