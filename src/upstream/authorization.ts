/**
 * What one upstream sends as `Authorization`, and how it answers the upstream's 401: a static
 * token as is, else a cached Bearer token up front once a realm is known, or Basic once the
 * upstream asked for it; a challenge is answered with a token exchange or Basic, once.
 */
import { currentSecret, type Secret } from '../secrets.js';
import { discard } from './body.js';
import { basicAuthorization, type BearerChallenge, type TokenSource } from './token.js';
import type { UpstreamCredentials, UpstreamResponse } from './types.js';
import { parseWwwAuthenticate } from './www-authenticate.js';

export interface Credential {
  authorization: string;
  /** The Bearer token inside `authorization`, so that a refused one is not handed out again. */
  token?: string;
}

export class UpstreamAuthorization {
  /** The Bearer realm this upstream last challenged with: it lets cached tokens go out up front. */
  private bearer: BearerChallenge | undefined;
  /** Set once the upstream asked for Basic: from then on credentials go out up front. */
  private basicWanted = false;

  constructor(
    private readonly tokens: TokenSource,
    /** A static token, read on every request: its file may have been rotated. */
    private readonly staticToken: Secret | undefined,
  ) {}

  /** A static token is all there is: a 401 to it is the answer. */
  get fixed(): boolean {
    return this.staticToken !== undefined;
  }

  /** What goes out with the first try, before the upstream has challenged this request. */
  upfront(scope: string | undefined, creds: UpstreamCredentials | undefined): Credential | undefined {
    if (this.staticToken !== undefined) return { authorization: `Bearer ${currentSecret(this.staticToken)}` };
    if (this.bearer !== undefined) {
      const token = this.tokens.cached(this.bearer, scope, creds);
      if (token !== undefined) return { authorization: `Bearer ${token}`, token };
    }
    return this.basicWanted && creds !== undefined ? { authorization: basicAuthorization(creds) } : undefined;
  }

  /**
   * The `Authorization` to retry the upstream's own 401 with, its body discarded; `undefined`
   * when the challenge is none this upstream can answer (the 401, body unread, is then the answer).
   */
  async answer(
    res: UpstreamResponse,
    scope: string | undefined,
    creds: UpstreamCredentials | undefined,
    sent: Credential | undefined,
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    const challenges = parseWwwAuthenticate(res.headers['www-authenticate']);
    const challenge = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
    if (challenge !== undefined) {
      const { realm, service, error, scope: wanted } = challenge.params;
      const realmed: BearerChallenge = { realm: realm!, service };
      await discard(res.body);
      const token = await this.tokens.get(realmed, error === 'insufficient_scope' && wanted ? wanted : scope, signal, sent?.token, creds);
      this.bearer = realmed;
      return `Bearer ${token}`;
    }
    if (creds !== undefined && sent?.authorization === undefined && challenges.some((c) => c.scheme === 'basic')) {
      await discard(res.body);
      this.basicWanted = true;
      return basicAuthorization(creds);
    }
    return undefined;
  }
}
