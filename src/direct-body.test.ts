import { describe, expect, it } from 'vitest';
import { bufferShare } from './direct-body.js';

const MiB = 1024 * 1024;

describe('bufferShare', () => {
  it('gives few bodies large buffers and many bodies small ones, their sum near 16 MiB', () => {
    expect(bufferShare(1, 4 * MiB)).toBe(4 * MiB);
    expect(bufferShare(2, 4 * MiB)).toBe(4 * MiB);
    expect(bufferShare(4, 4 * MiB)).toBe(2 * MiB);
    expect(bufferShare(10, 4 * MiB)).toBe(768 * 1024);
    for (const n of [1, 3, 10, 50, 128]) expect(2 * n * bufferShare(n, 4 * MiB)).toBeLessThanOrEqual(16 * MiB);
  });

  it('never goes below 64 KiB nor above what the body asks for', () => {
    expect(bufferShare(300, 4 * MiB)).toBe(64 * 1024);
    expect(bufferShare(0, 256 * 1024)).toBe(256 * 1024);
    expect(bufferShare(1, 256 * 1024)).toBe(256 * 1024);
  });
});
