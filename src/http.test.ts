import { describe, expect, it } from 'vitest';
import { listsType } from './http.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('listsType', () => {
  it('finds a type listed as it is, alone or among others, however spaced', () => {
    expect(listsType(OCI, OCI)).toBe(true);
    expect(listsType(`application/json,${OCI}`, OCI)).toBe(true);
    expect(listsType(`application/json ,  ${OCI} , */*`, OCI)).toBe(true);
  });

  it('leaves everything else to a full negotiation', () => {
    expect(listsType('*/*', OCI)).toBe(false);
    expect(listsType(`${OCI};q=0`, OCI)).toBe(false);
    expect(listsType(`${OCI};q=0.5`, OCI)).toBe(false);
    expect(listsType(`${OCI}-extra`, OCI)).toBe(false);
    expect(listsType(`x${OCI}`, OCI)).toBe(false);
    expect(listsType('', OCI)).toBe(false);
  });
});
