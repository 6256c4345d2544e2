import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'middleware/**/*.test.ts', 'adapters/**/*.test.ts', 'src/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // End-to-end suites start real registries and move hundreds of megabytes; on 2 cores,
    // running them side by side only makes every one of them slower and flakier.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
