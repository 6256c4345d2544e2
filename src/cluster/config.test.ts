import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig, withWorkers } from '../config.js';
import { workerCount } from './config.js';

const problems = (input: object, flag?: string): string[] => {
  try {
    const config = parseConfig(input);
    if (flag !== undefined) withWorkers(config, flag);
    return [];
  } catch (err) {
    return (err as ConfigError).problems;
  }
};

describe('workers config', () => {
  it('is one process by default; auto is one per core; the flag overrides the key', () => {
    expect(parseConfig({}).workers).toBe(1);
    expect(workerCount(parseConfig({ workers: 'auto' }).workers)).toBe(availableParallelism());
    expect(withWorkers(parseConfig({ workers: 1 }), '3').workers).toBe(3);
    expect(withWorkers(parseConfig({ workers: 4 }), 'auto').workers).toBe('auto');
  });

  it.each([0, -1, 1.5, '2', 'all', 257])('names the key of a bad value: %j', (workers) => {
    expect(problems({ workers })).toEqual([expect.stringMatching(/^workers: must be "auto" \(one per core\) or a whole number from 1 to 256/)]);
  });

  it('names the flag of a bad value', () => {
    expect(problems({}, 'many')).toEqual([expect.stringMatching(/^--workers: must be "auto"/)]);
  });

  it.each([
    [{ storage: { type: 'keyv', url: 'memory' } }, 'storage.url'],
    [{ storage: { blobs: { type: 'fs', path: '/d' }, meta: { type: 'keyv', url: 'memory' } } }, 'storage.meta.url'],
    [{ storage: { blobs: { type: 'keyv', url: 'memory' }, meta: { type: 'fs', path: '/d' } } }, 'storage.blobs.url'],
    [{ replication: { redis: 'redis://x', advertise: 'http://a:1', secret: 'x'.repeat(16) } }, 'workers'],
  ])('refuses with several workers what one process keeps to itself: %j', (config, key) => {
    expect(problems({ ...config, workers: 2 })).toEqual([expect.stringMatching(new RegExp(`^${key.replace(/\./g, '\\.')}: `))]);
    expect(problems(config, '2')).toEqual([expect.stringMatching(new RegExp(`^${key.replace(/\./g, '\\.')}: `))]);
    expect(problems({ ...config, workers: 1 })).toEqual([]);
  });

  it('takes storage the workers share', () => {
    expect(problems({ workers: 2, storage: { type: 'fs', path: '/d' } })).toEqual([]);
    expect(problems({ workers: 2, storage: { type: 'keyv', url: 'redis://127.0.0.1:6379' } })).toEqual([]);
  });
});
