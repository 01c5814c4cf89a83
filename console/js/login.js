// @ts-check
// Sign-in: any 401 forgets the rejected token and shows only the login prompt; a token
// that GET /v1/runtimes accepts is kept for this tab.

import { apiRaw, errMessage, errorFrom, forgetToken, storeToken, token } from './api.js';
import { byId, clear, h } from './dom.js';
import { teardown } from './page.js';
import { setRuntimeInfo } from './runtimes.js';

let shown = false;

/** Whether the login prompt is what the page shows. */
export function loginShown() {
  return shown;
}

/** The app is about to show itself again (a fresh start). */
export function resetLogin() {
  shown = false;
}

/**
 * Any 401: forget a rejected token and show only the login prompt.
 * @param {string} message why (shown when a token was given and refused)
 * @param {() => void} onSignedIn what a successful sign-in shows
 */
export function requireLogin(message, onSignedIn) {
  const hadToken = !!token();
  forgetToken();
  if (shown) return;
  teardown();
  shown = true;
  byId('topbar').hidden = true;
  renderLogin(hadToken ? message : '', onSignedIn);
}

/**
 * @param {string} message
 * @param {() => void} onSignedIn
 */
function renderLogin(message, onSignedIn) {
  const app = clear(byId('app'));
  const input = h('input', {
    id: 'login-token', type: 'password', autocomplete: 'current-password', required: true,
    testid: 'login-token', 'aria-describedby': 'login-help',
  });
  const error = h('p', { class: 'form-error', role: 'alert', testid: 'login-error', hidden: !message }, message || '');
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'login-submit' }, 'Sign in');
  const form = h('form', { class: 'login card', testid: 'login', novalidate: true },
    h('h1', {}, 'Sign in to Ignis'),
    h('p', { id: 'login-help', class: 'muted' },
      'This server needs its access token (the --token or IGNIS_TOKEN given to ignis serve). ',
      'It is kept for this browser tab only.'),
    h('div', { class: 'field' }, h('label', { for: 'login-token' }, 'Access token'), input),
    error,
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    if (!value) {
      error.hidden = false;
      error.textContent = 'Enter the token.';
      input.focus();
      return;
    }
    submit.disabled = true;
    error.hidden = true;
    try {
      storeToken(value);
      const resp = await apiRaw('GET', '/v1/runtimes', undefined, { allow401: true });
      if (resp.status === 401) {
        forgetToken();
        throw await errorFrom(resp);
      }
      if (!resp.ok) throw await errorFrom(resp);
      setRuntimeInfo(await resp.json());
      shown = false;
      onSignedIn();
    } catch (e) {
      error.hidden = false;
      error.textContent = errMessage(e);
      input.select();
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  app.append(form);
  input.focus();
}
