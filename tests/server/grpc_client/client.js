// The gRPC client of tests/server/grpc_test.py (and of the latency comparison in its --bench
// mode): KServe v2's GRPCInferenceService through @grpc/grpc-js, the service loaded at run time
// from our .proto with @grpc/proto-loader, so the test speaks exactly the published protocol.
//
//   node client.js job.json > results.json
//
// job: {"proto": path, "address": "127.0.0.1:port", "mode": "sequential" | "concurrent",
//       "timeout_ms": whole job, "calls": [{"rpc": "ModelInfer", "request": {...},
//       "deadline_ms": 30000, "repeat": 1}], "latencies_only": false, "progress": false,
//       "connect_first": false}
// connect_first opens the channel before the first call, so a short deadline measures the
// server, not the TCP and HTTP/2 set-up of a client process just started.
// or, instead of calls, {"rest": {"url": ..., "body": base64, "headers": {...}, "repeat": N}}:
// sequential HTTP/REST posts on one kept-alive connection (latencies only).
// Requests and responses are the protocol's messages as JSON with the .proto's field names;
// bytes (raw_input_contents, raw_output_contents) are base64 and int64s are strings.
// results: {"results": [{"ok": true, "response": {...}, "ms": 1.2} |
//                       {"ok": false, "code": 5, "code_name": "NOT_FOUND", "details": "..."}]}
// or, with latencies_only, {"ms": [...], "errors": [first few failures]}.
'use strict';

const fs = require('fs');
const path = require('path');

let grpc, protoLoader;
try {
  grpc = require('@grpc/grpc-js');
  protoLoader = require('@grpc/proto-loader');
} catch (e) {
  process.stderr.write(
      `grpc client: @grpc/grpc-js or @grpc/proto-loader is not installed in ${__dirname}/` +
      `node_modules: run tools/setup.sh (it runs npm ci there)\n${e.message}\n`);
  process.exit(2);
}

// The job comes in a file named by the first argument: Node.js 18 (Debian 12's) fails a
// synchronous read of a pipe on stdin with EAGAIN when the pipe is not ready yet.
const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
// The whole job is bounded: a hung server must fail the test, not stall it.
const guard = setTimeout(() => {
  process.stderr.write(`grpc client: the job took more than ${job.timeout_ms} ms\n`);
  process.exit(3);
}, job.timeout_ms || 120000);

const definition = protoLoader.loadSync(path.resolve(job.proto), {
  keepCase: true,   // field names as in the .proto (raw_input_contents)
  longs: String,    // int64 shapes and contents without precision loss
  enums: String,
  bytes: String,    // base64
  defaults: true,
  arrays: true,
});
const inference = grpc.loadPackageDefinition(definition).inference;
const client = new inference.GRPCInferenceService(
    job.address, grpc.credentials.createInsecure(),
    {'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1});
const codeNames = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

function call(spec) {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const deadline = new Date(Date.now() + (spec.deadline_ms || 30000));
    client[spec.rpc](spec.request || {}, {deadline}, (err, response) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      // One line per answer as it comes, for a harness counting the calls still in flight.
      if (job.progress) process.stderr.write('answered\n');
      if (err) {
        resolve({ok: false, code: err.code, code_name: codeNames[err.code], details: err.details,
                 ms});
      } else {
        resolve({ok: true, response: job.latencies_only ? undefined : response, ms});
      }
    });
  });
}

// One HTTP/REST infer on a kept-alive connection, for the latency comparison (--bench): the
// same client runtime on both protocols.
const http = require('http');
const agent = new http.Agent({keepAlive: true, maxSockets: 1});
function rest(spec, body) {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const req = http.request(spec.url, {method: 'POST', headers: spec.headers, agent,
                                        timeout: spec.deadline_ms || 30000}, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        const ok = res.statusCode === 200;
        resolve(ok ? {ok, ms} : {ok, ms, status: res.statusCode,
                                 details: Buffer.concat(chunks).toString().slice(0, 500)});
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => resolve({ok: false, details: e.message}));
    req.end(body);
  });
}

async function main() {
  if (job.rest) {
    const body = Buffer.from(job.rest.body, 'base64');
    const results = [];
    for (let i = 0; i < (job.rest.repeat || 1); ++i) results.push(await rest(job.rest, body));
    agent.destroy();
    client.close();
    clearTimeout(guard);
    process.stdout.write(JSON.stringify(
        {ms: results.map((r) => r.ms), errors: results.filter((r) => !r.ok).slice(0, 5)}));
    return;
  }
  if (job.connect_first) {
    await new Promise((resolve, reject) => {
      client.waitForReady(new Date(Date.now() + (job.timeout_ms || 120000)), (err) => {
        if (err) reject(new Error(`cannot connect to ${job.address}: ${err.message}`));
        else resolve();
      });
    });
  }
  const specs = [];
  for (const c of job.calls) for (let i = 0; i < (c.repeat || 1); ++i) specs.push(c);
  let results;
  if (job.mode === 'concurrent') {
    results = await Promise.all(specs.map(call));
  } else {
    results = [];
    for (const s of specs) results.push(await call(s));
  }
  client.close();
  clearTimeout(guard);
  const out = job.latencies_only ?
      {ms: results.map((r) => r.ms), errors: results.filter((r) => !r.ok).slice(0, 5)} :
      {results};
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(`grpc client: ${e.stack || e}\n`);
  process.exit(1);
});
