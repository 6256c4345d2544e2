/** The config key for the standalone server's own TLS. */
import { z } from 'zod';

/** HTTPS on `listen` from a PEM certificate (with its chain) and key, reloaded when either file changes. */
export const listenerTls = z.object({ certFile: z.string().min(1), keyFile: z.string().min(1) }).strict();

export type ListenerTls = z.output<typeof listenerTls>;
