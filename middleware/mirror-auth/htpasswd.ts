/**
 * An htpasswd file with bcrypt entries (`htpasswd -B`, as distribution uses), read again once
 * it changed (see FileSecret). Verified credentials are remembered for a while by a hash of
 * user, password and bcrypt hash: bcrypt is meant to be slow, and clients send Basic credentials
 * on every request; a changed entry is a new hash, so a rotated password is never remembered.
 */
import { createHash } from 'node:crypto';
import { FileSecret, type SecretReload } from '../../src/secret-file.js';
import { currentSecret, type Secret } from '../../src/secrets.js';

export interface Htpasswd {
  verify(username: string, password: string): Promise<boolean>;
}

const REMEMBER_MS = 5 * 60_000;
const MAX_REMEMBERED = 10_000;

export function parseHtpasswd(text: string, source = 'htpasswd'): Map<string, string> {
  const users = new Map<string, string>();
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    const hash = line.slice(colon + 1);
    if (colon <= 0 || !/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) {
      // Other htpasswd formats (MD5, SHA1, crypt) are weak; distribution refuses them too.
      throw new Error(`${source} line ${i + 1}: only bcrypt entries (htpasswd -B) are accepted`);
    }
    users.set(line.slice(0, colon), hash);
  }
  return users;
}

/** Throws when the file cannot be read or parsed now; later changes that cannot are reported to `onReload`. */
export function loadHtpasswd(path: string, onReload?: (reload: SecretReload) => void): Htpasswd {
  const file = new FileSecret({ path, key: 'auth.htpasswd', parse: (text) => parseHtpasswd(text, path), onReload });
  return htpasswd(() => file.current());
}

export function htpasswd(users: Secret<Map<string, string>>): Htpasswd {
  const remembered = new Map<string, number>();
  // Loading starts here, at start-up when the config names an htpasswd file; a mirror without one never loads bcrypt.
  const bcrypt = import('bcryptjs').then((m) => m.default);
  bcrypt.catch(() => undefined);
  return {
    async verify(username, password) {
      const hash = currentSecret(users).get(username);
      if (hash === undefined) return false;
      const key = createHash('sha256').update(`${username}\0${password}\0${hash}`).digest('base64url');
      const until = remembered.get(key);
      if (until !== undefined && until > Date.now()) return true;
      if (!(await (await bcrypt).compare(password, hash))) return false;
      if (remembered.size >= MAX_REMEMBERED) remembered.clear();
      remembered.set(key, Date.now() + REMEMBER_MS);
      return true;
    },
  };
}
