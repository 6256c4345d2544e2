#!/usr/bin/env node
/**
 * `oci-mirror [--config mirror.yaml]`: runs a mirror. Without a config it mirrors Docker Hub
 * on 127.0.0.1:5000 with filesystem storage in ./data. A bad config exits 2 before anything
 * starts; SIGTERM lets fills in flight finish (bounded) and exits 0.
 * `oci-mirror warm|ls|purge|gc …` are the admin commands (src/admin/cli.ts).
 */
import { parseArgs } from 'node:util';
import { ADMIN_USAGE, isAdminCommand, runAdminCommand } from './admin/cli.js';
import { ConfigError, loadConfigFile, parseConfig } from './config.js';
import { createMirror } from '../middleware/mirror/index.js';
import { startServer } from './server.js';

const USAGE = `Usage: oci-mirror [--config FILE]
${ADMIN_USAGE}
  -c, --config FILE   YAML configuration (default: mirror Docker Hub on 127.0.0.1:5000, storage in ./data)
  -h, --help          show this help
`;

async function main(argv: string[]): Promise<number> {
  if (isAdminCommand(argv[0])) return runAdminCommand(argv[0], argv.slice(1), (config) => createMirror(config, { maintenance: false }));
  let values: { config?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
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
  let config;
  try {
    config = values.config ? await loadConfigFile(values.config) : parseConfig({});
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`oci-mirror: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  let server;
  try {
    server = await startServer(config);
  } catch (err) {
    // Secrets and htpasswd files are read at start-up: a missing one is a config error too.
    if (err instanceof ConfigError) {
      process.stderr.write(`oci-mirror: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  await server.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`oci-mirror: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
