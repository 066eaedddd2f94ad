// Parse Server for Keel's HTTP benchmark (bench/http/run.py starts it; see docs/benchmarks.md).
//
// One process, or a cluster of PARSE_WORKERS processes sharing one port through
// node's cluster module (what `parse-server --cluster N` does). Everything comes
// from the environment:
//
//   PARSE_DATABASE_URI  postgres://postgres@127.0.0.1:5432/keel_bench_parse
//   PARSE_PORT          1337
//   PARSE_WORKERS       1 (a number > 1 runs a cluster)
//   PARSE_APP_ID, PARSE_MASTER_KEY
//   PARSE_LOGS_FOLDER   where Parse writes its log files (a temporary directory)
'use strict';

const cluster = require('node:cluster');
const { ParseServer } = require('parse-server');

const port = Number(process.env.PARSE_PORT || 1337);
const workers = Math.max(1, Number(process.env.PARSE_WORKERS || 1));

const options = {
  appId: process.env.PARSE_APP_ID || 'keel-bench',
  masterKey: process.env.PARSE_MASTER_KEY || 'keel-bench-master-key',
  // The master key is used by the seeding step only, from this machine.
  masterKeyIps: ['127.0.0.1', '::1'],
  databaseURI: process.env.PARSE_DATABASE_URI || 'postgres://postgres@127.0.0.1:5432/keel_bench_parse',
  port,
  host: '127.0.0.1',
  mountPath: '/parse',
  serverURL: `http://127.0.0.1:${port}/parse`,
  logsFolder: process.env.PARSE_LOGS_FOLDER || null,
  logLevel: process.env.PARSE_LOG_LEVEL || 'info',
  // The benchmark's class is created by the seeding step with the master key.
  allowClientClassCreation: false,
};

function start() {
  ParseServer.startApp(options)
    .then(() => {
      console.log(`[${process.pid}] parse-server listening on ${options.serverURL}`);
    })
    .catch((error) => {
      console.error(error);
      process.exit(1);
    });
}

if (workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < workers; i += 1) {
    cluster.fork();
  }
  cluster.on('exit', (worker, code) => {
    console.error(`worker ${worker.process.pid} exited (${code})`);
  });
  const stop = () => {
    for (const worker of Object.values(cluster.workers)) {
      worker.process.kill('SIGTERM');
    }
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  start();
}
