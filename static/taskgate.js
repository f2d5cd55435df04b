/* taskgate's one script: it only improves pages that work without it. It remembers the
 * team token in this browser's storage when the person ticks the box (never a cookie),
 * offers the team's presets once the token is known, counts inputs, checks metadata keys
 * as they are typed, adds metadata rows, opens the history with a remembered token, and
 * keeps a submission's runs up to date while any of them is still active. */
(function () {
  'use strict';
  var KEY = 'taskgate.token';
  var META_KEY_MAX = 16;

  function stored() {
    try { return window.localStorage.getItem(KEY) || ''; } catch (e) { return ''; }
  }
  function store(token) {
    try {
      if (token) { window.localStorage.setItem(KEY, token); } else { window.localStorage.removeItem(KEY); }
    } catch (e) { /* storage disabled: nothing is remembered */ }
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text) { e.textContent = text; }
    return e;
  }

  /* ---- the token ---- */
  function setupToken(form) {
    var token = form.querySelector('#f-token');
    var remember = form.querySelector('#f-remember');
    if (!token) { return null; }
    if (!token.value && stored()) {
      token.value = stored();
      if (remember) { remember.checked = true; }
    } else if (remember && stored() && token.value === stored()) {
      remember.checked = true;
    }
    if (remember) {
      form.addEventListener('submit', function () { store(remember.checked ? token.value.trim() : ''); });
      remember.addEventListener('change', function () { if (!remember.checked) { store(''); } });
    }
    return token;
  }

  /* ---- presets: a list to choose from once the token is known ---- */
  var lastToken = null;
  function loadPresets(token) {
    var t = token.value.trim();
    var input = document.getElementById('f-preset');
    if (!input || !t || t === lastToken) { return; }
    lastToken = t;
    window.fetch('/ui/presets', { headers: { 'Authorization': 'Bearer ' + t, 'Accept': 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (ans) {
        if (!ans || !Array.isArray(ans.presets) || ans.presets.length === 0) { return; }
        var current = input.value;
        var select = el('select', { id: 'f-preset', name: 'preset' });
        ['class', 'aria-describedby', 'aria-invalid'].forEach(function (a) {
          if (input.hasAttribute(a)) { select.setAttribute(a, input.getAttribute(a)); }
        });
        var seen = false;
        ans.presets.forEach(function (p) {
          var label = p.name + (p.processor ? ' (' + p.processor + ')' : '');
          var o = el('option', { value: p.name === 'default' ? '' : p.name }, label);
          if (p.name === current || (!current && p.name === 'default')) { o.selected = true; seen = true; }
          select.appendChild(o);
        });
        if (!seen) {
          var o = el('option', { value: current }, current || 'default');
          o.selected = true;
          select.insertBefore(o, select.firstChild);
        }
        input.parentNode.replaceChild(select, input);
        var hint = document.getElementById('h-preset');
        if (hint) { hint.textContent = 'The presets of team ' + ans.team + '.'; }
      })
      .catch(function () { /* the text field stays */ });
  }

  /* ---- inputs counter ---- */
  function setupCounter(form) {
    var area = form.querySelector('#f-inputs');
    var out = form.querySelector('#input-count');
    var file = form.querySelector('#f-file');
    if (!area || !out) { return; }
    function update() {
      var n = area.value.split('\n').filter(function (l) { return l.trim() !== ''; }).length;
      var text = n === 1 ? '1 input' : n + ' inputs';
      if (file && file.files && file.files.length > 0) { text += ' + the file ' + file.files[0].name; }
      out.textContent = text;
    }
    area.addEventListener('input', update);
    if (file) { file.addEventListener('change', update); }
    update();
  }

  /* ---- metadata rows ---- */
  function checkKey(input) {
    var row = input.parentNode;
    var msg = row.querySelector('.live-error');
    var tooLong = Array.from(input.value.trim()).length > META_KEY_MAX;
    if (tooLong && !msg) {
      msg = el('p', { 'class': 'field-error live-error' }, 'Keys may have at most 16 characters.');
      row.insertBefore(msg, row.firstChild);
    } else if (!tooLong && msg) {
      row.removeChild(msg);
    }
    input.classList.toggle('invalid', tooLong);
  }
  function setupMetadata(form) {
    var rows = form.querySelector('#meta-rows');
    if (!rows) { return; }
    rows.addEventListener('input', function (ev) {
      if (ev.target.classList.contains('meta-key')) { checkKey(ev.target); }
    });
    var add = el('button', { type: 'button', 'class': 'button secondary', id: 'add-meta' }, 'Add a row');
    add.addEventListener('click', function () {
      var n = rows.querySelectorAll('.meta-row').length + 1;
      var row = el('div', { 'class': 'meta-row' });
      row.appendChild(el('input', { type: 'text', name: 'metadata_key', 'class': 'meta-key', placeholder: 'key', 'aria-label': 'Key ' + n }));
      row.appendChild(el('input', { type: 'text', name: 'metadata_value', placeholder: 'value', 'aria-label': 'Value ' + n }));
      rows.appendChild(row);
      row.firstChild.focus();
    });
    rows.parentNode.appendChild(add);
  }

  function setupSubmitForm(form) {
    var token = setupToken(form);
    if (token) {
      token.addEventListener('change', function () { loadPresets(token); });
      loadPresets(token);
    }
    setupCounter(form);
    setupMetadata(form);
    var summary = document.getElementById('problems');
    if (summary) { summary.focus(); }
  }

  /* ---- history: open it with the remembered token ---- */
  function setupHistory(form) {
    var token = form.querySelector('#f-token');
    if (!token || form.querySelector('.field-error') || !stored()) { return; }
    token.value = stored();
    form.submit();
  }

  /* ---- history: a submission's runs, followed while any is still active ---- */
  var FINAL = { completed: true, failed: true, cancelled: true };
  var POLL_MS = 4000;
  var POLLS_MAX = 150; /* ten minutes: the page says the rest when it is opened again */

  /* "2026-11-28 12:00:05" from a stored RFC 3339 time, as the page writes it. */
  function shown(t) { return t.slice(0, 10) + ' ' + t.slice(11, 19); }

  function showRun(row, run) {
    var cell = row.querySelector('td.run-status');
    if (!cell) { return; }
    var status = run.status || 'waiting';
    var badge = cell.querySelector('.state');
    badge.className = 'state state-' + status;
    badge.textContent = status;
    var error = cell.querySelector('.run-error');
    if (run.error && !error) {
      error = el('span', { 'class': 'run-error' });
      cell.appendChild(error);
    }
    if (error) {
      if (run.error) { error.textContent = run.error; } else { cell.removeChild(error); }
    }
    var ended = cell.nextElementSibling;
    if (ended && run.completed_at && !ended.querySelector('time')) {
      ended.textContent = '';
      ended.appendChild(el('time', { datetime: run.completed_at }, shown(run.completed_at)));
    }
  }

  /* The page's own token (its forms carry it) reads the submission through the audit API. */
  function setupLiveRuns(table) {
    var path = window.location.pathname.match(/^\/history\/(sub_[0-9a-f]+)$/);
    var token = document.querySelector('form input[type="hidden"][name="token"]');
    if (!path || !token || !token.value || !window.fetch) { return; }
    var rows = {};
    Array.prototype.forEach.call(table.querySelectorAll('tbody tr'), function (row) {
      var id = row.querySelector('code.run-id');
      if (id) { rows[id.textContent] = row; }
    });
    var polls = 0;
    function active() {
      return Object.keys(rows).some(function (id) {
        var badge = rows[id].querySelector('td.run-status .state');
        return badge && !FINAL[badge.textContent];
      });
    }
    function poll() {
      if (!active() || ++polls > POLLS_MAX) { return; }
      window.fetch('/v1/audit/submissions/' + path[1], {
        headers: { Authorization: 'Bearer ' + token.value, Accept: 'application/json' },
        credentials: 'omit'
      }).then(function (r) { return r.ok ? r.json() : null; }).then(function (body) {
        ((body && body.runs) || []).forEach(function (run) {
          if (rows[run.run_id]) { showRun(rows[run.run_id], run); }
        });
        window.setTimeout(poll, POLL_MS);
      }, function () { window.setTimeout(poll, POLL_MS); });
    }
    window.setTimeout(poll, POLL_MS);
  }

  document.addEventListener('DOMContentLoaded', function () {
    var submit = document.getElementById('submit-form');
    if (submit) { setupSubmitForm(submit); }
    var history = document.getElementById('history-form');
    if (history) { setupHistory(history); }
    var runs = document.getElementById('runs');
    if (runs && runs.querySelector('td.run-status')) { setupLiveRuns(runs); }
  });
}());
