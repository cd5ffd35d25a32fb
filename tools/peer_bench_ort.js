#!/usr/bin/env node
// ONNX Runtime side of tools/peer_bench.sh (see tools/README.md, "peer_bench.sh").
//
//   node tools/peer_bench_ort.js prep  --model M [--data-dir D] --out-dir W
//       Decide the inputs both engines get. When D/input_*.pb exist they are used as they are;
//       otherwise random inputs (float in [-1,1), integers in 0..9, symbolic dims = 1) are
//       written to W/input_<i>.pb. Prints one JSON line:
//       {"inputs": [...pb paths], "outputs": [...reference pb paths or []], "input_shape": "a:1,3;b:2"}
//       (input_shape is the value for `tandem bench --input-shape`).
//   node tools/peer_bench_ort.js bench --model M --inputs a.pb,b.pb --threads T
//       [--warmup W] [--loops L] [--outputs o.pb,...] [--json OUT]
//       Create the session (intraOpNumThreads T, interOpNumThreads 1, sequential,
//       graphOptimizationLevel 'all'), feed the .pb inputs, W untimed runs, L timed runs of
//       session.run; print and optionally write the samples as JSON. With --outputs, the max
//       abs difference of the first timed run's outputs against those reference files.
//
// onnxruntime-node is looked up in $ORT_NODE_DIR (a node_modules folder holding
// onnxruntime-node), then via the normal require path.
'use strict';

const rssAtStart = process.memoryUsage().rss;  // node itself, before onnxruntime is loaded
const fs = require('fs');
const path = require('path');

function loadOrt() {
  const dirs = [];
  if (process.env.ORT_NODE_DIR) dirs.push(path.join(process.env.ORT_NODE_DIR, 'onnxruntime-node'));
  dirs.push('onnxruntime-node');
  let lastErr;
  for (const d of dirs) {
    try {
      return require(d);
    } catch (e) {
      lastErr = e;
    }
  }
  throw new Error(`cannot load onnxruntime-node (set ORT_NODE_DIR): ${lastErr && lastErr.message}`);
}

// ---------------------------------------------------------------- TensorProto (minimal)
// Field numbers from onnx.proto: dims=1, data_type=2, float_data=4, int32_data=5, int64_data=7,
// name=8, raw_data=9, double_data=10, uint64_data=11. Segments and external data are rejected.
const DTYPES = {
  1: ['float32', Float32Array, 4], 2: ['uint8', Uint8Array, 1], 3: ['int8', Int8Array, 1],
  4: ['uint16', Uint16Array, 2], 5: ['int16', Int16Array, 2], 6: ['int32', Int32Array, 4],
  7: ['int64', BigInt64Array, 8], 9: ['bool', Uint8Array, 1], 10: ['float16', Uint16Array, 2],
  11: ['float64', Float64Array, 8], 12: ['uint32', Uint32Array, 4], 13: ['uint64', BigUint64Array, 8],
};
const DTYPE_BY_NAME = Object.fromEntries(Object.entries(DTYPES).map(([k, v]) => [v[0], Number(k)]));

class Reader {
  constructor(buf) { this.buf = buf; this.pos = 0; }
  eof() { return this.pos >= this.buf.length; }
  varint() {  // as BigInt (int64 fields may be negative: 10-byte two's complement)
    let result = 0n, shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const b = this.buf[this.pos++];
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
      shift += 7n;
    }
    return BigInt.asIntN(64, result);
  }
  bytes() {
    const n = Number(this.varint());
    const out = this.buf.subarray(this.pos, this.pos + n);
    if (out.length !== n) throw new Error('truncated field');
    this.pos += n;
    return out;
  }
  skip(wire) {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

function readTensorProto(file) {
  const buf = fs.readFileSync(file);
  const r = new Reader(buf);
  const t = { name: '', dims: [], dataType: 0, raw: null, f32: [], i32: [], i64: [], f64: [], u64: [] };
  const packedOrOne = (wire, readOne, into) => {
    if (wire === 2) {
      const sub = new Reader(r.bytes());
      while (!sub.eof()) into.push(readOne(sub));
    } else {
      into.push(readOne(r));
    }
  };
  while (!r.eof()) {
    const key = Number(r.varint());
    const field = key >>> 3, wire = key & 7;
    switch (field) {
      case 1: packedOrOne(wire, (x) => Number(x.varint()), t.dims); break;
      case 2: t.dataType = Number(r.varint()); break;
      case 3: throw new Error(`${file}: segmented tensors are not supported`);
      case 4: packedOrOne(wire, (x) => { const v = x.buf.readFloatLE(x.pos); x.pos += 4; return v; }, t.f32); break;
      case 5: packedOrOne(wire, (x) => Number(x.varint()), t.i32); break;
      case 7: packedOrOne(wire, (x) => x.varint(), t.i64); break;
      case 8: t.name = r.bytes().toString('utf8'); break;
      case 9: t.raw = r.bytes(); break;
      case 10: packedOrOne(wire, (x) => { const v = x.buf.readDoubleLE(x.pos); x.pos += 8; return v; }, t.f64); break;
      case 11: packedOrOne(wire, (x) => BigInt.asUintN(64, x.varint()), t.u64); break;
      case 13: throw new Error(`${file}: external data is not supported`);
      case 14: if (Number(r.varint()) === 1) throw new Error(`${file}: external data is not supported`); break;
      default: r.skip(wire);
    }
  }
  const info = DTYPES[t.dataType];
  if (!info) throw new Error(`${file}: unsupported TensorProto data_type ${t.dataType}`);
  const [type, Ctor, size] = info;
  const numel = t.dims.reduce((a, b) => a * b, 1);
  let data;
  if (t.raw) {
    if (t.raw.length !== numel * size) throw new Error(`${file}: raw_data has ${t.raw.length} bytes, expected ${numel * size}`);
    const copy = new ArrayBuffer(t.raw.length);  // aligned copy
    new Uint8Array(copy).set(t.raw);
    data = new Ctor(copy);
  } else {
    let src;
    if (t.dataType === 1) src = t.f32;
    else if (t.dataType === 7) src = t.i64;
    else if (t.dataType === 11) src = t.f64;
    else if (t.dataType === 13 || t.dataType === 12) src = t.u64.length ? t.u64 : t.i32;
    else src = t.i32;  // int32, int16, int8, uint16, uint8, bool, float16 (bits) live in int32_data
    if (src.length !== numel) throw new Error(`${file}: has ${src.length} values, expected ${numel}`);
    data = new Ctor(numel);
    for (let i = 0; i < numel; ++i) data[i] = (Ctor === BigInt64Array || Ctor === BigUint64Array) ? BigInt(src[i]) : Number(src[i]);
  }
  return { name: t.name, dims: t.dims, type, data };
}

function varintBytes(v) {
  let x = BigInt.asUintN(64, BigInt(v));
  const out = [];
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x) b |= 0x80;
    out.push(b);
  } while (x);
  return Buffer.from(out);
}

function writeTensorProto(file, name, dims, type, data) {
  const parts = [];
  for (const d of dims) parts.push(varintBytes((1 << 3) | 0), varintBytes(d));
  parts.push(varintBytes((2 << 3) | 0), varintBytes(DTYPE_BY_NAME[type]));
  const nameBuf = Buffer.from(name, 'utf8');
  parts.push(varintBytes((8 << 3) | 2), varintBytes(nameBuf.length), nameBuf);
  const raw = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  parts.push(varintBytes((9 << 3) | 2), varintBytes(raw.length), raw);
  fs.writeFileSync(file, Buffer.concat(parts));
}

// ---------------------------------------------------------------- helpers
function parseArgs(argv) {
  const opts = { _: [] };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) opts[a.slice(2, eq)] = a.slice(eq + 1);
      else opts[a.slice(2)] = argv[++i];
    } else {
      opts._.push(a);
    }
  }
  return opts;
}

function sessionOptions(threads) {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function listPb(dir, prefix) {
  if (!dir || !fs.existsSync(dir)) return [];
  return fs.readdirSync(dir)
    .map((f) => /^(input|output)_(\d+)\.pb$/.exec(f))
    .filter((m) => m && m[1] === prefix)
    .sort((a, b) => Number(a[2]) - Number(b[2]))
    .map((m) => path.join(dir, m[0]));
}

function makeFeeds(ort, session, tensors) {
  const names = session.inputNames;
  if (tensors.length !== names.length)
    throw new Error(`model has ${names.length} inputs (${names.join(', ')}), got ${tensors.length} files`);
  const byName = tensors.every((t) => names.includes(t.name));
  const feeds = {};
  tensors.forEach((t, i) => {
    feeds[byName ? t.name : names[i]] = new ort.Tensor(t.type, t.data, t.dims);
  });
  return feeds;
}

// ---------------------------------------------------------------- commands
async function prep(opts) {
  const ort = loadOrt();
  const model = opts.model;
  let inputs = listPb(opts['data-dir'], 'input');
  let outputs = listPb(opts['data-dir'], 'output');
  const session = await ort.InferenceSession.create(model, sessionOptions(1));
  let tensors;
  if (inputs.length) {
    tensors = inputs.map(readTensorProto);
  } else {
    // Random inputs, the same recipe as tandem's random_inputs (symbolic dims = 1).
    outputs = [];
    fs.mkdirSync(opts['out-dir'], { recursive: true });
    let seed = 12345;
    const rand = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x80000000; };
    tensors = session.inputMetadata.map((m, i) => {
      if (!m.isTensor) throw new Error(`input '${m.name}' is not a tensor`);
      const dims = m.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
      const numel = dims.reduce((a, b) => a * b, 1);
      const info = DTYPES[DTYPE_BY_NAME[m.type]];
      if (!info) throw new Error(`cannot make random data for input '${m.name}' of type ${m.type}`);
      const data = new info[1](numel);
      for (let k = 0; k < numel; ++k) {
        if (m.type === 'float32' || m.type === 'float64') data[k] = rand() * 2 - 1;
        else if (m.type === 'int64' || m.type === 'uint64') data[k] = BigInt(Math.floor(rand() * 10));
        else if (m.type === 'bool') data[k] = Math.floor(rand() * 2);
        else if (m.type === 'float16') throw new Error(`random float16 input '${m.name}' is not supported: give the model test_data_set_0/input_*.pb`);
        else data[k] = Math.floor(rand() * 10);
      }
      const file = path.join(opts['out-dir'], `input_${i}.pb`);
      writeTensorProto(file, m.name, dims, m.type, data);
      inputs.push(file);
      return { name: m.name, dims, type: m.type, data };
    });
  }
  const names = session.inputNames;
  const byName = tensors.length === names.length && tensors.every((t) => names.includes(t.name));
  if (tensors.length !== names.length)
    throw new Error(`model has ${names.length} inputs (${names.join(', ')}), data has ${tensors.length}`);
  const shape = tensors.map((t, i) => `${byName ? t.name : names[i]}:${t.dims.join(',')}`).join(';');
  await session.release();
  process.stdout.write(JSON.stringify({ inputs, outputs, input_shape: shape }) + '\n');
}

async function bench(opts) {
  const ort = loadOrt();
  const rssAfterLoad = process.memoryUsage().rss;
  const threads = Number(opts.threads || 1);
  const warmup = Number(opts.warmup || 3);
  const loops = Number(opts.loops || 10);
  const files = (opts.inputs || '').split(',').filter(Boolean);
  const tensors = files.map(readTensorProto);
  const t0 = process.hrtime.bigint();
  const session = await ort.InferenceSession.create(opts.model, sessionOptions(threads));
  const createMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const feeds = makeFeeds(ort, session, tensors);
  let first = null;
  for (let i = 0; i < warmup; ++i) first = await session.run(feeds);
  const samples = [];
  for (let i = 0; i < loops; ++i) {
    const s = process.hrtime.bigint();
    const out = await session.run(feeds);
    samples.push(Number(process.hrtime.bigint() - s) / 1e6);
    if (!first) first = out;
  }
  const result = {
    engine: 'onnxruntime-node',
    version: ort.env && ort.env.versions ? ort.env.versions.node : null,
    model: opts.model,
    threads, warmup, loops,
    session_create_ms: createMs,
    samples_ms: samples,
    latency_ms: { p50: median(samples), min: Math.min(...samples), max: Math.max(...samples) },
    rss_node_baseline_bytes: rssAtStart,
    rss_after_require_bytes: rssAfterLoad,
    rss_end_bytes: process.memoryUsage().rss,
  };
  const refs = (opts.outputs || '').split(',').filter(Boolean);
  if (refs.length && first) {
    let maxDiff = 0;
    const outNames = session.outputNames;
    refs.forEach((f, i) => {
      const ref = readTensorProto(f);
      const got = first[outNames.includes(ref.name) ? ref.name : outNames[i]];
      if (!got || got.data.length !== ref.data.length) { maxDiff = Infinity; return; }
      for (let k = 0; k < ref.data.length; ++k) {
        const d = Math.abs(Number(got.data[k]) - Number(ref.data[k]));
        if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : Math.max(maxDiff, d);
      }
    });
    result.max_abs_diff_vs_reference = maxDiff === Infinity ? 'mismatch' : maxDiff;
  }
  await session.release();
  const text = JSON.stringify(result, null, 2);
  if (opts.json) fs.writeFileSync(opts.json, text + '\n');
  process.stdout.write(`ort ${path.basename(path.dirname(opts.model))} threads ${threads}: p50 ${result.latency_ms.p50.toFixed(3)} ms over ${loops} runs\n`);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const cmd = opts._[0];
  if (cmd === 'prep') return prep(opts);
  if (cmd === 'bench') return bench(opts);
  process.stderr.write('usage: peer_bench_ort.js prep|bench ... (see the comment at the top)\n');
  process.exit(2);
}

main().catch((e) => {
  process.stderr.write(`error: ${e && e.message ? e.message : e}\n`);
  process.exit(1);
});
