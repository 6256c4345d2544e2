/** The little of s3rver 3.7 (which ships no types) that test/helpers/s3.ts uses. */
declare module 's3rver' {
  import type { Server } from 'node:http';
  import type { AddressInfo } from 'node:net';

  interface S3rverOptions {
    address?: string;
    port?: number;
    silent?: boolean;
    directory?: string;
    configureBuckets?: Array<{ name: string }>;
    vhostBuckets?: boolean;
    resetOnClose?: boolean;
  }

  /** A Koa application; `middleware` is Koa's own array, composed when the server starts. */
  class S3rver {
    constructor(options?: S3rverOptions);
    middleware: Array<(ctx: S3rverContext, next: () => Promise<void>) => Promise<void> | void>;
    httpServer?: Server;
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
  }

  interface S3rverContext {
    method: string;
    path: string;
    query: Record<string, string | string[] | undefined>;
    status: number;
    body: unknown;
    type: string;
  }

  export default S3rver;
}
