// The @parse/node-apn side of tests/bench/push: send N notifications
// over one HTTP/2 connection with W in flight and print one JSON line
// (rate, p50/p99 latency). Run by tests/bench/push with NODE_PATH set to
// the npm cache under build/; nothing of it is committed.
'use strict';

const apn = require('@parse/node-apn');

const [port, ca, key, team, kid, topic, n, win, size] = process.argv.slice(2);
const total = parseInt(n, 10);
const window = parseInt(win, 10);
const device = 'ab'.repeat(32);
const alert = 'x'.repeat(Math.max(1, parseInt(size, 10) - 40));

const provider = new apn.Provider({
  token: { key, keyId: kid, teamId: team },
  address: '127.0.0.1',
  port: parseInt(port, 10),
  ca,
  production: false,
  requestTimeout: 30000,
});

const lat = [];
let next = 0;
let done = 0;
let failed = 0;
let t0;

function one() {
  if (next >= total) return;
  next++;
  const note = new apn.Notification();
  note.alert = alert;
  note.topic = topic;
  const start = process.hrtime.bigint();
  provider.send(note, device).then((res) => {
    lat.push(Number(process.hrtime.bigint() - start) / 1e6);
    if (res.failed.length > 0) failed++;
    done++;
    if (done === total) finish();
    else one();
  });
}

function finish() {
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort((a, b) => a - b);
  const pct = (p) => lat[Math.floor((lat.length - 1) * p)];
  console.log(JSON.stringify({
    n: total, failed, elapsed_s: secs, rate: total / secs,
    p50_ms: pct(0.5), p99_ms: pct(0.99),
  }));
  provider.shutdown();
  setTimeout(() => process.exit(0), 100);
}

// One notification first, so the connection and token exist, then the run.
const warm = new apn.Notification();
warm.alert = 'warm';
warm.topic = topic;
provider.send(warm, device).then((res) => {
  if (res.failed.length > 0) {
    console.error(JSON.stringify(res.failed[0]));
    process.exit(1);
  }
  t0 = process.hrtime.bigint();
  for (let i = 0; i < window; i++) one();
});
