/* The status page: polls status.json and renders it. Plain browser JS, no build step.
   Everything from the server goes in with textContent, never as HTML: repository names are
   chosen by whoever pulls. */
/* global document, window, fetch, setTimeout, uPlot */
'use strict';

const REFRESH = Number(document.body.dataset.refresh) || 5000;
const $ = (selector) => document.querySelector(selector);
const number = new Intl.NumberFormat('en');

function bytes(n) {
  if (n == null) return '–';
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}
const percent = (ratio) => (ratio == null ? '–' : `${(ratio * 100).toFixed(1)}%`);
const time = (ms) => new Date(ms).toLocaleTimeString();

/** A figure shows its value formatted, and keeps the raw number in data-value for machines. */
function figure(name, value, format) {
  const el = $(`[data-metric="${name}"]`);
  el.textContent = format(value);
  el.dataset.value = value == null ? '' : String(value);
}

function cell(text, { className, metric, value, title } = {}) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  if (metric) td.dataset.metric = metric;
  if (value !== undefined) td.dataset.value = String(value);
  if (title) td.title = title;
  return td;
}

function fillTable(name, rows, columns, build) {
  const body = $(`[data-table="${name}"]`);
  if (rows.length === 0) {
    const td = cell('none', { className: 'empty' });
    td.colSpan = columns;
    const tr = document.createElement('tr');
    tr.append(td);
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(...rows.map(build));
}

function upstreamRow(u) {
  const tr = document.createElement('tr');
  tr.dataset.upstream = u.name;
  const urls = document.createElement('ul');
  urls.className = 'urls';
  for (const url of u.urls ?? []) {
    const li = document.createElement('li');
    li.className = `state-${url.state}`;
    li.textContent = `${url.url} ${url.state}${url.failures ? `, ${url.failures} failed` : ''}`;
    urls.append(li);
  }
  const where = document.createElement('td');
  where.append(urls);
  tr.append(
    cell(u.name),
    cell(u.state, { className: `state-${u.state}`, metric: 'upstream-state', value: u.state }),
    where,
    cell(number.format(u.requests), { className: 'num', metric: 'upstream-requests', value: u.requests }),
    cell(number.format(u.errors), { className: 'num', metric: 'upstream-errors', value: u.errors }),
  );
  return tr;
}

function fillRow(f) {
  const tr = document.createElement('tr');
  tr.dataset.digest = f.digest;
  const bar = document.createElement('progress');
  bar.max = 100;
  if (f.percent != null) bar.value = f.percent;
  const progress = cell(f.percent == null ? ` ${f.state}` : ` ${f.percent.toFixed(1)}%`, { metric: 'fill-percent', value: f.percent ?? '' });
  progress.prepend(bar);
  tr.append(
    cell(`${f.digest.slice(0, 19)}…`, { className: 'digest', title: f.digest }),
    cell(f.repository, { metric: 'fill-repository' }),
    progress,
    cell(bytes(f.received), { className: 'num', metric: 'fill-received', value: f.received }),
    cell(bytes(f.size), { className: 'num', metric: 'fill-size', value: f.size ?? '' }),
    cell(`${bytes(f.rate)}/s`, { className: 'num', metric: 'fill-rate', value: f.rate }),
    cell(number.format(f.clients), { className: 'num', metric: 'fill-clients', value: f.clients }),
  );
  return tr;
}

function repositoryRow(r) {
  const tr = document.createElement('tr');
  tr.append(cell(r.repository, { metric: 'repository' }));
  if (r.bytes !== undefined) {
    tr.append(cell(bytes(r.bytes), { className: 'num', metric: 'repository-bytes', value: r.bytes }));
    tr.append(cell(number.format(r.tags), { className: 'num' }));
  } else {
    tr.append(cell(number.format(r.pulls), { className: 'num', metric: 'repository-pulls', value: r.pulls }));
  }
  return tr;
}

const charts = {};

function chartWidth(el) {
  return Math.max(300, el.clientWidth);
}

/** Creates the chart on first use, then only swaps its data. */
function chart(name, options, data) {
  const el = $(`[data-chart="${name}"]`);
  if (charts[name]) {
    charts[name].setData(data);
    return;
  }
  charts[name] = new uPlot({ width: chartWidth(el), height: 220, ...options }, data, el);
}

window.addEventListener('resize', () => {
  for (const [name, u] of Object.entries(charts)) u.setSize({ width: chartWidth($(`[data-chart="${name}"]`)), height: 220 });
});

function drawCharts(s) {
  const xs = s.series.map((p) => p.t / 1000);
  const seconds = s.sampleInterval / 1000;
  chart(
    'hit-ratio',
    {
      scales: { y: { range: [0, 100] } },
      series: [{}, { label: 'hit ratio', stroke: '#2a7ab0', width: 2, value: (u, v) => (v == null ? '–' : `${v.toFixed(1)}%`) }],
      axes: [{}, { values: (u, splits) => splits.map((v) => `${v}%`) }],
    },
    [xs, s.series.map((p) => (p.hitRatio == null ? null : p.hitRatio * 100))],
  );
  chart(
    'bytes',
    {
      series: [
        {},
        { label: 'served from cache', stroke: '#2e8540', fill: 'rgba(46,133,64,0.12)', width: 2, value: (u, v) => (v == null ? '–' : `${bytes(v)}/s`) },
        { label: 'fetched from upstreams', stroke: '#c0392b', width: 2, value: (u, v) => (v == null ? '–' : `${bytes(v)}/s`) },
      ],
      axes: [{}, { size: 90, values: (u, splits) => splits.map((v) => `${bytes(v)}/s`) }],
    },
    [xs, s.series.map((p) => p.cacheBytes / seconds), s.series.map((p) => p.upstreamBytes / seconds)],
  );
}

function render(s) {
  const t = s.totals;
  figure('hit-ratio', t.hitRatio, percent);
  figure('hits', t.hits, (v) => number.format(v));
  figure('misses', t.misses, (v) => number.format(v));
  figure('cache-bytes', t.cacheBytes, bytes);
  figure('upstream-bytes', t.upstreamBytes, bytes);
  figure('fills-in-flight', t.fillsInFlight, (v) => number.format(v));
  figure('storage-bytes', t.storageBytes, (v) => (v == null ? 'not tracked' : bytes(v)));
  $('[data-metric="started-at"]').textContent = new Date(s.startedAt).toLocaleString();
  $('[data-metric="updated-at"]').textContent = time(s.now);

  fillTable('upstreams', s.upstreams, 5, upstreamRow);
  fillTable('fills', s.fills, 7, fillRow);
  // Only a count: which fills they are, and their sizes, are not this viewer's to know.
  const hidden = $('[data-metric="hidden-fills"]');
  hidden.textContent = s.hiddenFills
    ? `${number.format(s.hiddenFills)} ${s.hiddenFills === 1 ? 'fill' : 'fills'} in flight not shown: of private upstreams, of repositories you may not pull, or asked for by no client`
    : '';
  hidden.dataset.value = String(s.hiddenFills);
  fillTable('largest', s.largest.repositories, 3, repositoryRow);
  fillTable('pulled', s.pulled, 2, repositoryRow);
  const l = s.largest;
  $('[data-metric="largest-note"]').textContent = l.error
    ? `could not read storage: ${l.error}`
    : l.computedAt == null
      ? 'computing…'
      : `as of ${time(l.computedAt)}${l.pending ? ', updating…' : ''}`;
  drawCharts(s);
  document.body.dataset.updated = String(s.now);
  document.body.dataset.status = 'ready';
}

async function poll() {
  const error = $('#error');
  try {
    const res = await fetch('status.json', { cache: 'no-store' });
    if (!res.ok) throw new Error(`status.json answered ${res.status}`);
    render(await res.json());
    error.hidden = true;
  } catch (err) {
    error.textContent = `· ${err.message}`;
    error.hidden = false;
  } finally {
    setTimeout(poll, REFRESH);
  }
}

poll();
