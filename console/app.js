const s = document.createElement('script');
s.src = '/console/monaco/vs/loader.js';
s.onload = () => {
  window.require.config({ paths: { vs: '/console/monaco/vs' } });
  window.require(['vs/editor/editor.main'], () => {
    const d = document.createElement('div'); d.style.height = '300px'; document.body.appendChild(d);
    const ed = monaco.editor.create(d, { value: 'interface E { a?: string }\nexport async function handler(event: E) {\n  return 1\n}\n', language: 'typescript' });
    window.ed = ed; document.title = 'ok';
  }, (e) => { document.title = 'err ' + e; });
};
s.onerror = () => { document.title = 'loaderr'; };
document.head.appendChild(s);
