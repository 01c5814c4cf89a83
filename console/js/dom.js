// @ts-check
// DOM helpers: elements built from props and children, text set only when it changed.
//
// Everything the user or the API wrote reaches the page through textContent and DOM
// APIs, never innerHTML.

/**
 * What `h` and `setProps` accept: class, text, testid, on<event> listeners,
 * value/checked/selected, and any other attribute (true gives an empty attribute; null,
 * undefined and false leave it out).
 * @typedef {Record<string, unknown>} Props
 */

/**
 * A child of `h`: nodes, text, numbers, nested arrays; null, undefined and false are skipped.
 * @typedef {Node | string | number | null | undefined | false | Kid[]} Kid
 */

/**
 * Creates an element.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Props} [props]
 * @param {...Kid} kids
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, kids);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * Creates an SVG element with attributes (null and undefined ones left out).
 * @param {string} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {...Kid} kids
 * @returns {SVGElement}
 */
export function svg(tag, attrs, ...kids) {
  const el = /** @type {SVGElement} */ (document.createElementNS(SVG_NS, tag));
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v != null) el.setAttribute(k, String(v));
  }
  append(el, kids);
  return el;
}

/**
 * @param {HTMLElement} el
 * @param {Props} [props]
 */
function setProps(el, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = String(v);
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'testid') el.dataset.testid = String(v);
    else if (k === 'value' || k === 'checked' || k === 'selected') /** @type {any} */ (el)[k] = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/**
 * @param {Element} el
 * @param {Kid[]} kids
 */
function append(el, kids) {
  for (const kid of kids) {
    if (kid == null || kid === false) continue;
    if (Array.isArray(kid)) append(el, kid);
    else el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
}

/**
 * Removes every child of `el` and answers it.
 * @template {Element} E
 * @param {E} el
 * @returns {E}
 */
export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/**
 * Sets the text of `el`, leaving it alone when it is already that (no needless repaint).
 * @param {Element} el
 * @param {unknown} text
 */
export function setText(el, text) {
  const t = text == null ? '' : String(text);
  if (el.textContent !== t) el.textContent = t;
}

/** Encodes one path segment of an API address. */
export const enc = encodeURIComponent;

let idCounter = 0;

/**
 * An id no other element of the page has.
 * @param {string} prefix
 */
export function uid(prefix) {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/**
 * The element with this id, which the page (index.html) always has.
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el;
}
