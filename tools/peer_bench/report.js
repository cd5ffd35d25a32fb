#!/usr/bin/env node
// Summarises the per-run files tools/peer_bench.sh leaves in its work folder:
//   manifest.tsv                      id <TAB> model path, in run order
//   <id>/prep.err                     inputs could not be prepared
//   <id>/t<T>/r<R>.<engine>.json      tandem bench --json / peer_bench_ort.js bench --json; engines:
//                                     tandem, ort, and with --baseline / --isa avx2 also baseline
//                                     (another tandem binary) and avx2 (tandem capped to AVX2)
//   <id>/t<T>/r<R>.<engine>.time      /usr/bin/time -v of that process
//   <id>/t<T>/r<R>.<engine>.err       why the run failed
// Prints the table and the geometric means; --json OUT writes everything.
'use strict';

const fs = require('fs');
const path = require('path');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const work = args.work;
const threads = args.threads.split(',').map(Number);
const rounds = Number(args.rounds);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function maxRssBytes(file) {
  if (!fs.existsSync(file)) return null;
  const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(fs.readFileSync(file, 'utf8'));
  return m ? Number(m[1]) * 1024 : null;
}

function human(bytes) {
  if (bytes == null) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = bytes, u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; ++u; }
  return `${v.toFixed(v >= 100 || u === 0 ? 0 : 1)} ${units[u]}`;
}

function fmtMs(ms) {
  if (ms == null) return '-';
  return ms >= 100 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3);
}

function engineSummary(dir, engine) {
  const samples = [], roundMedians = [], rss = [], errors = [];
  const s = { samples_ms: samples, round_medians_ms: roundMedians, max_rss_bytes: null, error: null };
  for (let r = 1; r <= rounds; ++r) {
    const p = path.join(dir, `r${r}.${engine}`);
    if (fs.existsSync(`${p}.err`)) { errors.push(fs.readFileSync(`${p}.err`, 'utf8').trim()); continue; }
    if (!fs.existsSync(`${p}.json`)) continue;
    const j = JSON.parse(fs.readFileSync(`${p}.json`, 'utf8'));
    samples.push(...j.samples_ms);
    roundMedians.push(median(j.samples_ms));
    const m = maxRssBytes(`${p}.time`);
    if (m != null) rss.push(m);
    if (engine !== 'ort') {  // tandem, baseline, avx2: tandem bench --json
      s.peak_bytes = j.peak_bytes;
      s.arena_bytes = j.arena_bytes;
    } else {
      s.node_baseline_rss_bytes = j.rss_node_baseline_bytes;
      s.session_create_ms = j.session_create_ms;
      if (j.max_abs_diff_vs_reference !== undefined) s.max_abs_diff_vs_reference = j.max_abs_diff_vs_reference;
    }
  }
  if (rss.length) s.max_rss_bytes = Math.max(...rss);
  s.median_ms = median(samples);
  if (errors.length) s.error = errors[0];
  if (!samples.length && !s.error) s.error = 'no runs';
  return s;
}

let meta = {};
try { meta = JSON.parse(fs.readFileSync(path.join(work, 'meta.json'), 'utf8')); } catch (e) { /* older work folder */ }
// The extra Tandem engines of this run, each compared with the plain one: [engine, column label,
// ratio label, ratio(row)].
const ok = (e) => e && e.median_ms != null && !e.error;
const extras = [];
if (meta.baseline) {
  extras.push(['baseline', 'baseline ms', 'tandem/baseline',
               (r) => (ok(r.tandem) && ok(r.baseline) ? r.tandem.median_ms / r.baseline.median_ms : null)]);
}
if (meta.isa === 'avx2') {
  extras.push(['avx2', 'avx2 ms', 'avx2/tandem',
               (r) => (ok(r.tandem) && ok(r.avx2) ? r.avx2.median_ms / r.tandem.median_ms : null)]);
}
const rows = [];
const manifest = fs.readFileSync(path.join(work, 'manifest.tsv'), 'utf8').trim().split('\n').filter(Boolean);
for (const line of manifest) {
  const [id, model] = line.split('\t');
  const prepErr = path.join(work, id, 'prep.err');
  let prep = null;
  try { prep = JSON.parse(fs.readFileSync(path.join(work, id, 'prep.json'), 'utf8')); } catch (e) { /* none */ }
  for (const t of threads) {
    const row = { model: id, path: model, threads: t, input_shape: prep ? prep.input_shape : null,
                  inputs: prep ? prep.inputs : null };
    if (fs.existsSync(prepErr)) {
      const e = `inputs: ${fs.readFileSync(prepErr, 'utf8').trim()}`;
      row.tandem = { error: e };
      row.ort = { error: e };
      for (const [eng] of extras) row[eng] = { error: e };
    } else {
      const dir = path.join(work, id, `t${t}`);
      row.tandem = engineSummary(dir, 'tandem');
      row.ort = engineSummary(dir, 'ort');
      for (const [eng] of extras) row[eng] = engineSummary(dir, eng);
    }
    row.ratio = ok(row.tandem) && ok(row.ort) ? row.tandem.median_ms / row.ort.median_ms : null;
    for (const [eng, , , ratio] of extras) row[`ratio_${eng}`] = ratio(row);
    rows.push(row);
  }
}

function geomeanOf(t, key) {
  const rs = rows.filter((r) => r.threads === t && r[key] != null).map((r) => r[key]);
  return { ratio: rs.length ? Math.exp(rs.reduce((a, r) => a + Math.log(r), 0) / rs.length) : null,
           models: rs.length, of: rows.filter((r) => r.threads === t).length };
}
const geomean = {};
for (const t of threads) {
  geomean[t] = geomeanOf(t, 'ratio');
  for (const [eng] of extras) geomean[t][eng] = geomeanOf(t, `ratio_${eng}`);
}

// ---------------------------------------------------------------- table
const header = ['model', 'thr', 'tandem ms', 'ort ms', 'tandem/ort'];
for (const [, label, ratioLabel] of extras) header.push(label, ratioLabel);
header.push('tandem peak_bytes', 'tandem max RSS', 'ort max RSS', 'ort vs ref', 'notes');
const table = [header];
for (const r of rows) {
  const notes = [];
  if (r.tandem.error && r.tandem.error === r.ort.error) notes.push(`error: ${r.tandem.error}`);
  else {
    if (r.tandem.error) notes.push(`tandem error: ${r.tandem.error}`);
    if (r.ort.error) notes.push(`ort error: ${r.ort.error}`);
  }
  for (const [eng] of extras)
    if (r[eng].error && r[eng].error !== r.tandem.error) notes.push(`${eng} error: ${r[eng].error}`);
  const cell = (e, v) => (e.error && e.median_ms == null ? 'error' : v);
  const diff = r.ort.max_abs_diff_vs_reference;
  table.push([
    r.model, String(r.threads),
    cell(r.tandem, fmtMs(r.tandem.median_ms)),
    cell(r.ort, fmtMs(r.ort.median_ms)),
    r.ratio != null ? r.ratio.toFixed(2) : 'error',
    ...extras.flatMap(([eng]) => [cell(r[eng], fmtMs(r[eng].median_ms)),
                                  r[`ratio_${eng}`] != null ? r[`ratio_${eng}`].toFixed(2) : 'error']),
    cell(r.tandem, human(r.tandem.peak_bytes)),
    cell(r.tandem, human(r.tandem.max_rss_bytes)),
    cell(r.ort, human(r.ort.max_rss_bytes)),
    diff === undefined ? '-' : typeof diff === 'number' ? diff.toExponential(1) : String(diff),
    notes.join('; '),
  ]);
}
const widths = header.map((_, c) => Math.max(...table.map((row) => row[c].length)));
const last = header.length - 1;  // notes: left-aligned, not padded
const lines = table.map((row) => row.map((v, c) => (c === last ? v : c < 1 ? v.padEnd(widths[c]) : v.padStart(widths[c])))
  .join('  ').trimEnd());
lines.splice(1, 0, widths.map((w, c) => '-'.repeat(c === last ? 5 : w)).join('  '));
console.log(lines.join('\n'));
console.log('');
for (const t of threads) {
  const g = geomean[t];
  console.log(`geometric mean tandem/ort, threads ${t}: ${g.ratio != null ? g.ratio.toFixed(3) : 'n/a'}` +
              ` (${g.models} of ${g.of} models)`);
  for (const [eng, , ratioLabel] of extras) {
    const e = g[eng];
    console.log(`geometric mean ${ratioLabel}, threads ${t}: ${e.ratio != null ? e.ratio.toFixed(3) : 'n/a'}` +
                ` (${e.models} of ${e.of} models)`);
  }
}
if (meta.baseline) console.log(`baseline: ${meta.baseline}; tandem/baseline < 1 means the tested binary is faster.`);
if (meta.isa === 'avx2')
  console.log('avx2: Tandem with DNNL_MAX_CPU_ISA=AVX2 and TANDEM_SIMD_LEVEL=1; avx2/tandem > 1 is what AVX-512 gains.' +
              (meta.has_avx512 === false ? ' This CPU has no AVX-512: both are the same code.' : ''));
const baseline = rows.map((r) => r.ort.node_baseline_rss_bytes).filter((x) => x != null);
console.log(`\nlatency: median over ${rounds} rounds x ${args.loops} timed runs (after ${args.warmup} warmup runs per process)` +
            `; tandem/ort < 1 means Tandem is faster.`);
console.log('tandem peak_bytes: tensor memory Tandem\'s planner reports (arena + other live tensors, no weights);' +
            ' max RSS: /usr/bin/time -v "Maximum resident set size" of the whole process' +
            ` (the node process for ORT; node itself is ~${human(median(baseline))} before onnxruntime loads).`);
if (meta.tandem_mtime_start !== undefined) {
  console.log(`machine: ${meta.cpus} CPUs (${meta.cpu_model || 'unknown model'}); load average ${meta.loadavg_start} at start, ${meta.loadavg_end} at end.`);
  if (meta.tandem_mtime_start !== meta.tandem_mtime_end)
    console.log(`WARNING: ${meta.tandem} changed during the run (rebuilt?): the Tandem figures mix two binaries.`);
}
console.log('ort vs ref: max |ORT output - test_data_set_0/output_*.pb| on the same inputs (- when no reference).');

if (args.json) {
  const out = {
    ort_version: args['ort-version'], rounds, warmup: Number(args.warmup), loops: Number(args.loops), threads,
    date: new Date().toISOString(), meta, rows, geomean,
  };
  fs.writeFileSync(args.json, JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${args.json}`);
}
