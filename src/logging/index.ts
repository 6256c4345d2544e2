export { createLogger, redact, type LoggerSetup } from './logger.js';
export { REDACT_PATHS, REDACTED, censor } from './redact.js';
export { requestIdFrom } from './request-id.js';
