#!/usr/bin/env node
/**
 * `oci-mirror [--config mirror.yaml]`: runs a mirror. Without a config it mirrors Docker Hub
 * on 127.0.0.1:5000 with filesystem storage in ./data. A bad config exits 2 before anything
 * starts; SIGTERM lets fills in flight finish (bounded) and exits 0.
 * `oci-mirror check [--config mirror.yaml]` stops after the config and the files it names
 * have been read, with the same messages and exit code (like `nginx -t`).
 * `oci-mirror warm|ls|purge|gc …` are the admin commands (src/admin/cli.ts).
 * With `workers` above 1 (or `--workers`), this process is the primary and forks the workers,
 * which run this file again and serve (src/cluster/).
 */
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { ADMIN_USAGE, isAdminCommand, runAdminCommand } from './admin/cli.js';
import { runPrimary, startWorker, workerCount } from './cluster/index.js';
import { ConfigError, loadConfigFile, parseConfig, withWorkers, type MirrorConfig } from './config.js';
import { createLogger } from './logging/index.js';
import { checkConfigFiles } from '../middleware/mirror/config-files.js';

const USAGE = `Usage: oci-mirror [--config FILE] [--workers N|auto]
       oci-mirror check [--config FILE] [--workers N|auto]
${ADMIN_USAGE}
  check     validate the config and read every file it names (secrets, htpasswd), then exit:
            0 when start-up would get past them, 2 with start-up's messages when not
  -c, --config FILE   YAML configuration (default: mirror Docker Hub on 127.0.0.1:5000, storage in ./data)
  -w, --workers N     processes serving the port, or auto for one per core (default: the config's workers, 1)
  -h, --help          show this help
`;

/** Start-up's message for a bad config, and its exit code. */
function configProblem(err: unknown): number {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`oci-mirror: ${err.message}\n`);
  return 2;
}

/** Settles at SIGTERM or SIGINT. */
function stopSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

/** A cluster worker: the primary parsed the config and sends it. */
async function worker(): Promise<number> {
  const { config, replication, relayServer, listening } = await startWorker();
  const stopped = stopSignal();
  let server;
  try {
    server = await (await serving()).startServer(config, { replication, recover: false, relayServer });
  } catch (err) {
    return configProblem(err);
  }
  listening();
  await stopped;
  await server.close();
  return 0;
}

async function main(argv: string[]): Promise<number> {
  if (cluster.isWorker) return worker();
  if (isAdminCommand(argv[0])) {
    const { createMirror } = await import('../middleware/mirror/index.js');
    return runAdminCommand(argv[0], argv.slice(1), (config) => createMirror(config, { maintenance: false }));
  }
  const checkOnly = argv[0] === 'check';
  let values: { config?: string; workers?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: checkOnly ? argv.slice(1) : argv,
      options: { config: { type: 'string', short: 'c' }, workers: { type: 'string', short: 'w' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`oci-mirror: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  let config: MirrorConfig;
  try {
    config = values.config ? await loadConfigFile(values.config) : parseConfig({});
    if (values.workers !== undefined) config = withWorkers(config, values.workers);
  } catch (err) {
    return configProblem(err);
  }
  if (checkOnly) return check(config, values.config ?? 'the default config');
  const workers = workerCount(config.workers);
  if (workers > 1) {
    // The workers read the files the config names; a missing one stops the start here, once, with the same message.
    if (!filesReadable(config)) return 2;
    return runPrimary({ config, workers, logger: createLogger(), stop: stopSignal() });
  }
  const stopped = stopSignal();
  let server;
  try {
    server = await (await serving()).startServer(config);
  } catch (err) {
    // Secrets and htpasswd files are read at start-up: a missing one is a config error too.
    return configProblem(err);
  }
  await stopped;
  await server.close();
  return 0;
}

/** The server and everything it loads (koa, undici, the middlewares): only in a process that serves, not in a cluster's primary. */
const serving = () => import('./server.js');

/** Reads every file the config names; false, with each problem said on stderr, when one cannot be read. */
function filesReadable(config: MirrorConfig): boolean {
  const problems = checkConfigFiles(config);
  for (const message of problems) process.stderr.write(`oci-mirror: ${message}\n`);
  return problems.length === 0;
}

function check(config: MirrorConfig, source: string): number {
  if (!filesReadable(config)) return 2;
  process.stdout.write(`oci-mirror: ${source} is valid, and every file it names could be read\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`oci-mirror: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
