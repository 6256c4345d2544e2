/**
 * The `storage` section of the config and the factory that turns it into adapters. Kept
 * apart from the rest of the config so that adding an adapter touches this file only.
 */
import { z } from 'zod';
import { fsStorage } from '../adapters/fs/index.js';
import type { Storage } from './storage.js';

export const storageSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('fs'), path: z.string().min(1), fsync: z.boolean().default(true) }).strict(),
]);

export type StorageConfig = z.output<typeof storageSchema>;

export function createStorage(config: StorageConfig): Storage {
  switch (config.type) {
    case 'fs':
      return fsStorage({ path: config.path, fsync: config.fsync });
  }
}
