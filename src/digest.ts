/**
 * Hashing and verification of content by digest. Every byte that enters storage is
 * checked here, so adapters share one implementation instead of each hashing its own way.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { OciError } from './errors.js';
import { parseDigest, type Digest, type DigestAlgorithm } from './reference.js';

export function digestOf(data: Uint8Array | string, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

/** Incremental hasher that knows what it should end up as. */
export class DigestVerifier {
  readonly expected: Digest;
  readonly expectedSize: number | undefined;
  private readonly hash: Hash;
  private bytes = 0;

  constructor(expected: string | Digest, expectedSize?: number) {
    this.expected = typeof expected === 'string' ? parseDigest(expected) : expected;
    this.expectedSize = expectedSize;
    this.hash = createHash(this.expected.algorithm);
  }

  get size(): number {
    return this.bytes;
  }

  update(chunk: Uint8Array): void {
    this.bytes += chunk.byteLength;
    if (this.expectedSize !== undefined && this.bytes > this.expectedSize) {
      throw new OciError('SIZE_INVALID', `content is longer than the expected ${this.expectedSize} bytes`);
    }
    this.hash.update(chunk);
  }

  /** Throws SIZE_INVALID or DIGEST_INVALID; returns the size on success. Call once. */
  verify(): number {
    if (this.expectedSize !== undefined && this.bytes !== this.expectedSize) {
      throw new OciError('SIZE_INVALID', `content has ${this.bytes} bytes, expected ${this.expectedSize}`);
    }
    const actual = `${this.expected.algorithm}:${this.hash.digest('hex')}`;
    if (actual !== this.expected.value) {
      throw new OciError('DIGEST_INVALID', `content digest ${actual} does not match ${this.expected.value}`);
    }
    return this.bytes;
  }
}

/**
 * A pass-through stream that fails instead of ending when the bytes do not match.
 * Adapters put it in front of their write so that a mismatch aborts the write
 * before anything becomes visible.
 */
export function verifyingStream(expected: string | Digest, expectedSize?: number): Transform & { verifier: DigestVerifier } {
  const verifier = new DigestVerifier(expected, expectedSize);
  const t = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      try {
        verifier.update(chunk);
        cb(null, chunk);
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb: TransformCallback) {
      try {
        verifier.verify();
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
  });
  return Object.assign(t, { verifier });
}
