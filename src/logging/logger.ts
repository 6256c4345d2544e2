/**
 * The mirror's pino logger: JSON lines with credentials redacted, or pino-pretty's readable
 * lines when writing to a terminal and the optional pino-pretty is installed.
 */
import { createRequire } from 'node:module';
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { REDACT_PATHS, censor } from './redact.js';

export interface LoggerSetup {
  level?: string;
  /** Where lines go (a test's capture stream); stdout by default. */
  destination?: DestinationStream;
  /** `pretty` on a terminal by default, when pino-pretty is installed; `json` otherwise. */
  format?: 'json' | 'pretty';
}

/** The redaction every mirror logger applies; give it to a logger of your own with `pino({ redact })`. */
export const redact: NonNullable<LoggerOptions['redact']> = { paths: [...REDACT_PATHS], censor };

export function createLogger({ level = process.env.LOG_LEVEL ?? 'info', destination, format }: LoggerSetup = {}): Logger {
  const options: LoggerOptions = { level, redact };
  if (destination) return pino(options, destination);
  const wantPretty = format === 'pretty' || (format === undefined && process.env.LOG_FORMAT !== 'json' && process.stdout.isTTY === true);
  // Redaction runs before the transport's worker sees a line, so pretty output is redacted too.
  if (wantPretty && prettyInstalled()) return pino({ transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l' } }, ...options });
  return pino(options);
}

function prettyInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}
