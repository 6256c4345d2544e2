/** `workers: N`: several processes on one port, one upstream fetch per blob between them (see primary.ts). */
export { parseWorkersFlag, workerCount, workersProblems, workersSchema, type Workers } from './config.js';
export { runPrimary, type PrimaryOptions } from './primary.js';
export { startWorker, type WorkerStart } from './worker.js';
