// The script of cachingproxy-bench's HTML report: it reads the bench's JSON document from the
// page (script#bench-data) and draws it with Chart.js, which the bench inlines before this
// script. Everything is in the page: it opens offline. Sets window.benchReport when done (the
// headless-browser test waits for it).
(function () {
  'use strict';
  const doc = JSON.parse(document.getElementById('bench-data').textContent);
  const palette = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b',
    '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  const color = (i) => palette[i % palette.length];
  const pct = (x) => (x == null ? null : Math.round(x * 1000) / 10);
  const mib = (b) => (b == null ? '-' : Math.round(b / 1048576 * 100) / 100);
  const charts = [];

  Chart.defaults.animation = false;
  Chart.defaults.responsive = true;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.size = 12;

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }

  function section(title, note) {
    const s = el('section');
    s.appendChild(el('h2', null, title));
    if (note) s.appendChild(el('p', { class: 'note' }, note));
    document.getElementById('main').appendChild(s);
    return s;
  }

  function chartBox(parent, id) {
    const box = el('div', { class: 'chart' });
    const canvas = el('canvas', { id: id });
    box.appendChild(canvas);
    parent.appendChild(box);
    return canvas;
  }

  function empty(parent, text) {
    parent.appendChild(el('p', { class: 'empty' }, text));
  }

  function axis(title, extra) {
    return Object.assign({ title: { display: true, text: title } }, extra || {});
  }

  // ---- header and summary ----------------------------------------------------------------
  const runs = doc.runs || [];
  document.title = 'cachingproxy-bench: ' + doc.command;
  document.getElementById('title').textContent = 'cachingproxy-bench ' + doc.command;
  const host = doc.host || {};
  document.getElementById('meta').textContent =
    'version ' + doc.version + ', started ' + doc.startedAt + ', ' + host.cores +
    ' cores, load average ' + host.loadavgStart + ' at the start and ' + host.loadavgEnd +
    ' at the end' + (doc.interrupted ? ' - interrupted: the figures cover the part that ran' : '');

  if (runs.length) {
    const s = section('Runs', 'Measured window after the warm-up. Hit ratio = answers from the ' +
      'cache (HIT, STALE) / requests; upstream = calls the upstream simulator received; saved = ' +
      '1 - upstream / requests; coalesced = requests that waited for an identical upstream call.');
    const t = el('table');
    const cols = ['run', 'requests', 'hit ratio', 'upstream calls', 'upstream MiB', 'saved',
      'coalesced', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'req/s', 'plugin RSS MiB'];
    const hr = el('tr');
    cols.forEach((c) => hr.appendChild(el('th', null, c)));
    t.appendChild(hr);
    runs.forEach((r) => {
      const tr = el('tr');
      const lat = r.latencyMs || {};
      [r.label + (r.interrupted ? ' (partial)' : ''), r.requests, pct(r.hitRatio) + ' %',
        r.upstreamCalls, mib(r.upstreamBytes), pct(r.upstreamSavedShare) + ' %',
        r.coalesced == null ? '-' : r.coalesced,
        lat.p50, lat.p95, lat.p99, lat.max, r.throughput,
        r.pluginRssMiB && r.pluginRssMiB.max != null ? r.pluginRssMiB.max : '-']
        .forEach((v) => tr.appendChild(el('td', null, String(v))));
      t.appendChild(tr);
    });
    s.appendChild(t);
  }

  // ---- per group of runs: over time, latency distribution, comparison ----------------------
  const groups = [];
  runs.forEach((r) => {
    const name = r.group || r.mode;
    let g = groups.find((x) => x.name === name);
    if (!g) groups.push(g = { name: name, runs: [] });
    g.runs.push(r);
  });
  const titles = {
    backends: 'Backends on the same workload',
    timeAlign: 'timeAlign on dashboard queries over the last hour',
    split: 'Split queries: a refreshing dashboard over the last 6 hours',
    revalidation: 'Revalidation of expired entries (ETag, Last-Modified, 304)',
    redis: 'Cache hits through each Redis mode',
  };

  groups.forEach((g, gi) => {
    const id = (what) => what + '-' + gi;
    const gruns = g.runs;
    const heading = section(titles[g.name] || ('Runs: ' + g.name), describe(gruns[0]));

    // hit ratio over time
    const s1 = section('Hit ratio over time (' + g.name + ')', 'One point per step of the run ' +
      '(the warm-up dashed): the share of the answers completed in that step that came from ' +
      'the cache.');
    charts.push(new Chart(chartBox(s1, id('hit-ratio-time')), {
      type: 'line',
      data: {
        datasets: gruns.map((r, i) => ({
          label: r.label,
          data: (r.timeline || []).filter((p) => p.hitRatio != null)
            .map((p) => ({ x: p.t, y: pct(p.hitRatio), warm: p.warmup })),
          borderColor: color(i),
          backgroundColor: color(i),
          pointRadius: 1.5,
          segment: { borderDash: (ctx) => (ctx.p0.raw && ctx.p0.raw.warm ? [4, 3] : undefined) },
        })),
      },
      options: {
        parsing: false,
        scales: {
          x: axis('seconds since the start', { type: 'linear' }),
          y: axis('hit ratio %', { min: 0, max: 100 }),
        },
      },
    }));

    // upstream calls over time
    charts.push(new Chart(chartBox(s1, id('upstream-time')), {
      type: 'line',
      data: {
        datasets: gruns.map((r, i) => {
          const tl = r.timeline || [];
          return {
            label: r.label,
            data: tl.map((p, k) => {
              const dt = p.t - (k ? tl[k - 1].t : 0);
              return { x: p.t, y: dt > 0 ? Math.round(p.upstreamCalls / dt * 10) / 10 : 0 };
            }),
            borderColor: color(i),
            backgroundColor: color(i),
            pointRadius: 1.5,
          };
        }),
      },
      options: {
        parsing: false,
        scales: {
          x: axis('seconds since the start', { type: 'linear' }),
          y: axis('upstream calls / s', { min: 0 }),
        },
      },
    }));

    // latency distribution
    const s2 = section('Latency distribution (' + g.name + ')', 'Share of the measured ' +
      'requests by latency bucket (upper bound of the bucket, 1-2-5 steps).');
    const withHist = gruns.filter((r) => r.latencyHistogram && r.requests);
    if (!withHist.length) {
      empty(s2, 'No measured request.');
    } else {
      const bounds = withHist[0].latencyHistogram.boundsMs;
      let lo = bounds.length, hi = 0;
      withHist.forEach((r) => r.latencyHistogram.counts.forEach((c, k) => {
        if (c) { lo = Math.min(lo, k); hi = Math.max(hi, k); }
      }));
      lo = Math.max(0, lo - 1);
      hi = Math.min(bounds.length - 1, hi + 1);
      const labels = bounds.slice(lo, hi + 1).map((b, k) =>
        (lo + k === bounds.length - 1 ? '> ' + bounds[lo + k - 1] : '<= ' + b) + ' ms');
      charts.push(new Chart(chartBox(s2, id('latency-dist')), {
        type: 'bar',
        data: {
          labels: labels,
          datasets: withHist.map((r) => ({
            label: r.label,
            data: r.latencyHistogram.counts.slice(lo, hi + 1)
              .map((c) => Math.round(c / r.requests * 1000) / 10),
            backgroundColor: color(gruns.indexOf(r)),
          })),
        },
        options: { scales: { x: axis('latency'), y: axis('% of requests', { min: 0 }) } },
      }));
    }

    // comparison
    const s3 = section('Comparison (' + g.name + ')', 'Side by side on the same workload: how ' +
      'much the cache answers, how much upstream load it saves, and how fast.');
    const labels = gruns.map((r) => r.label);
    const row = el('div', { class: 'row' });
    s3.appendChild(row);
    charts.push(new Chart(chartBox(row, id('compare-ratio')), {
      type: 'bar',
      data: {
        labels: labels,
        datasets: [
          { label: 'hit ratio %', data: gruns.map((r) => pct(r.hitRatio)), backgroundColor: color(0) },
          { label: 'upstream calls saved %', data: gruns.map((r) => pct(r.upstreamSavedShare)), backgroundColor: color(2) },
        ],
      },
      options: { scales: { y: axis('%', { min: 0, max: 100 }) } },
    }));
    charts.push(new Chart(chartBox(row, id('compare-latency')), {
      type: 'bar',
      data: {
        labels: labels,
        datasets: ['p50', 'p95', 'p99'].map((p, i) => ({
          label: p + ' ms',
          data: gruns.map((r) => (r.latencyMs || {})[p]),
          backgroundColor: color(i + 3),
        })),
      },
      options: { scales: { y: axis('latency ms (log scale)', { type: 'logarithmic' }) } },
    }));
    // upstream load against the group's baseline (split, revalidation)
    if (gruns.some((r) => r.compare)) {
      const base = gruns.find((r) => r.compare).compare.baseline;
      const s4 = section('Upstream load (' + g.name + ')', 'Measured window: calls the upstream ' +
        'simulator received and the body bytes it sent, each run against "' + base + '"; ' +
        '304 share = upstream answers that were 304 Not Modified; pieces cached = pieces of ' +
        'split queries served from the cache.');
      const t = el('table');
      const hr = el('tr');
      ['run', 'requests', 'hit ratio', 'upstream calls', 'calls vs base', 'upstream MiB',
        'bytes vs base', '304 share', 'pieces cached', 'p50 ms', 'p99 ms']
        .forEach((c) => hr.appendChild(el('th', null, c)));
      t.appendChild(hr);
      gruns.forEach((r) => {
        const tr = el('tr');
        const c = r.compare || {}, lat = r.latencyMs || {}, pc = r.pieces || {};
        const np = (pc.hit || 0) + (pc.fetched || 0);
        [r.label, r.requests, pct(r.hitRatio) + ' %', r.upstreamCalls,
          c.upstreamCallsRatio == null ? '-' : c.upstreamCallsRatio, mib(r.upstreamBytes),
          c.upstreamBytesRatio == null ? '-' : c.upstreamBytesRatio,
          pct(r.upstreamNotModifiedShare) + ' %', np ? pct(pc.hit / np) + ' %' : '-',
          lat.p50, lat.p99]
          .forEach((v) => tr.appendChild(el('td', null, String(v))));
        t.appendChild(tr);
      });
      s4.appendChild(t);
      charts.push(new Chart(chartBox(s4, id('upstream-load')), {
        type: 'bar',
        data: {
          labels: gruns.map((r) => r.label),
          datasets: [
            { label: 'upstream calls', data: gruns.map((r) => r.upstreamCalls), backgroundColor: color(0), yAxisID: 'calls' },
            { label: 'upstream MiB', data: gruns.map((r) => mib(r.upstreamBytes)), backgroundColor: color(3), yAxisID: 'bytes' },
          ],
        },
        options: {
          scales: {
            calls: axis('upstream calls', { position: 'left', min: 0 }),
            bytes: axis('upstream MiB (bodies)', { position: 'right', min: 0, grid: { drawOnChartArea: false } }),
          },
        },
      }));
    }
    heading.id = 'group-' + g.name;
  });

  function describe(r) {
    if (!r) return null;
    const w = r.workload || {}, u = r.upstream || {};
    const what = w.replay ? 'replay of ' + w.replay + ' (' + w.traceRequests + ' requests, speed ' +
      w.speed + (w.clock === 'trace' ? ': the queries\' clock runs ' + w.speed + ' times the wall ' +
      'clock' : '') + ')' : w.users + ' users, ' + w.keys + ' distinct ' +
      (w.kind === 'query' ? 'queries' : 'resource calls') + ', Zipf ' + w.zipf;
    const load = w.loop === 'open' ? 'open loop at ' + (w.replay ? 'the trace\'s pace' : w.rate +
      '/s') + ', at most ' + w.concurrency + ' in flight' : 'closed loop, ' + w.concurrency +
      ' callers';
    return what + '; ' + load + '; ' + (w.durationS ? w.durationS + ' s measured' : w.requests +
      ' requests measured') + ' after ' + w.warmupS + ' s of warm-up. Upstream simulator: ' +
      'latency ' + u.latency + ', bodies ' + u.payloadBytes + ' B, error rate ' + u.errorRate +
      (u.cacheControl ? ', Cache-Control ' + u.cacheControl : '') +
      (u.queryStepMs ? ', query answers one row per ' + u.queryStepMs / 1000 + ' s of their range' : '') +
      (u.validators ? ', ETag and Last-Modified' + (u.changeEveryS ? ', content changing every ' +
        u.changeEveryS + ' s per path' : '') : '') + '.';
  }

  // ---- preset core: bursts of slow calls, forwarding and hits against a bare round trip ----------
  function table(parent, cols, rows) {
    const t = el('table');
    const hr = el('tr');
    cols.forEach((c) => hr.appendChild(el('th', null, c)));
    t.appendChild(hr);
    rows.forEach((r) => {
      const tr = el('tr');
      r.forEach((v) => tr.appendChild(el('td', null, v == null ? '-' : String(v))));
      t.appendChild(tr);
    });
    parent.appendChild(t);
  }

  if (doc.core) {
    const core = doc.core;
    const rest = (pj, suffix) => {
      if (!pj || !pj.threads) return [];
      return [['at rest, started' + suffix, '-', '-', '-', '-', '-', '-', pj.threads.afterStart,
        pj.plugin.rssAfterStartMiB, '-', '-'],
      ['at rest, after a call' + suffix, '-', '-', '-', '-', '-', '-', pj.threads.ready,
        pj.plugin.rssReadyMiB, '-', '-']];
    };
    const bursts = core.bursts || [];
    const now = bursts.filter((b) => b.plugin === 'plugin');
    const before = bursts.filter((b) => b.plugin !== 'plugin');
    const burstRow = (b) => [b.calls + (b.plugin === 'plugin' ? '' : ', before'),
      b.upstreamLatencyMs, b.answered, b.wallMs, b.wallOverLatency + 'x', b.latencyMs.p50,
      b.latencyMs.max, b.threadsPeak + (b.ownThreadsPeak != null ? ', own ' + b.ownThreadsPeak : ''),
      b.rssPeakMiB,
      (b.upstream || {}).heldAtOnce, b.pluginCpuMs];
    const s1 = section('The event-driven core: distinct misses at once on a slow upstream',
      'N calls started at once on one channel (2 client threads, a completion queue each); ' +
      'wall = first call started to last answer; threads and RSS: the plugin\'s peak, sampled ' +
      'every 5 ms from /proc (own = named as its main thread; gRPC names its own); held at ' +
      'once: answers the upstream simulator held back for their delay at the same time.');
    table(s1, ['calls', 'upstream ms', 'answered', 'wall ms', 'wall / upstream', 'p50 ms',
      'max ms', 'threads', 'RSS MiB', 'upstream held at once', 'plugin CPU ms'],
    rest(core, '').concat(now.map(burstRow), rest(core.before, ', before'),
      before.map(burstRow)));
    const s2 = section('The event-driven core: 1 KiB answers on one channel',
      'Closed loops in rounds, every target taking its turn in each round (' +
      ((core.settings || {}).rounds || '?') + ' rounds); bare = a gRPC core server answering ' +
      'the plugin\'s own answer bytes, in the bench and in a child process; CPU = user + ' +
      'system time per answered call.');
    table(s2, ['case', 'target', 'in flight', 'p50 ms', 'p99 ms', 'calls/s', 'server CPU us',
      'bench CPU us'], (core.loops || []).map((c) => [
      c.group === 'forwarding' ? 'uncached forwarding' : 'memory hit', c.target, c.inFlight,
      c.p50Ms, c.p99Ms, Math.round(c.callsPerS), c.serverCpuUsPerCall, c.benchCpuUsPerCall]));
    if ((core.goals || []).length) {
      const s3 = section('The event-driven core: goals');
      table(s3, ['goal', 'figure', 'target', 'met'], core.goals.map((g) => [g.goal, g.figure,
        g.target, g.met == null ? '-' : g.met ? 'yes' : 'NO']));
    }
  }

  // ---- what-if: hit ratio against cache size ----------------------------------------------------
  {
    const sim = doc.sim;
    const s = section('Hit ratio against cache size, by policy', sim
      ? 'What-if on ' + sim.trace + ' (' + sim.output.requests + ' requests, ' +
        sim.distinctKeys + ' distinct keys, scope ' + sim.scope + ', ttl ' + sim.ttl + ' s): ' +
        'ours = the memory backend\'s W-TinyLFU, lru = exact LRU, opt = Belady with bypass.'
      : null);
    if (!sim) {
      empty(s, 'No what-if in this report.');
    } else {
      const names = ['ours', 'lru', 'opt'];
      const datasets = names.map((n, i) => ({
        label: n,
        data: sim.output.results.filter((r) => r.policy === n)
          .map((r) => ({ x: r.size, y: pct(r.hitRatio) })),
        borderColor: color(i),
        backgroundColor: color(i),
        borderDash: n === 'opt' ? [6, 4] : undefined,
        pointRadius: 3,
      }));
      charts.push(new Chart(chartBox(s, 'whatif'), {
        type: 'line',
        data: { datasets: datasets },
        options: {
          parsing: false,
          scales: {
            x: axis('cache size (entries, log scale)', {
              type: 'logarithmic',
              // labels on 1-2-5 steps only, so they never overlap
              ticks: {
                callback: (v) => {
                  const lead = v / Math.pow(10, Math.floor(Math.log10(v)));
                  return [1, 2, 5].some((d) => Math.abs(lead - d) < 1e-9) ? String(v) : '';
                },
              },
            }),
            y: axis('hit ratio %', { min: 0, max: 100 }),
          },
        },
      }));
    }
  }

  (doc.notes || []).forEach((n) => document.getElementById('notes').appendChild(el('li', null, n)));
  window.benchReport = { charts: charts.length, runs: runs.length, sim: !!doc.sim, core: !!doc.core };
})();
