/**
 * `WWW-Authenticate` parsing per RFC 7235 §2.1 and §4.1:
 *
 *   WWW-Authenticate = 1#challenge
 *   challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 *   auth-param       = token BWS "=" BWS ( token / quoted-string )
 *
 * One header line may carry several challenges, and the commas that separate challenges also
 * separate the parameters of one challenge; an item that is `token BWS "="` continues the current
 * challenge, any other token starts the next one. Parsing is lenient where registries are known
 * to be sloppy (unquoted values with `/` or `:` in them, stray commas) and never throws.
 */

export interface Challenge {
  /** Lower-case, e.g. `bearer`, `basic`. */
  scheme: string;
  /** Lower-case parameter names; quoted values unescaped. The first of a repeated name wins. */
  params: Record<string, string>;
  /** Set when the challenge carries a token68 instead of parameters. */
  token68?: string;
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*/;

/** Parses one or several `WWW-Authenticate` field values (as undici hands them: one string or an array of lines). */
export function parseWwwAuthenticate(value: string | readonly string[] | undefined): Challenge[] {
  if (value === undefined) return [];
  // Each line is parsed on its own, so a malformed line (an unclosed quote) cannot swallow the next.
  return typeof value === 'string' ? parseLine(value) : value.flatMap((line) => parseLine(line));
}

// One scanner with its cursor in a closure: its small readers (space, token, quoted string) share
// `pos`, and splitting them into functions of their own would only pass it around.
function parseLine(input: string): Challenge[] {
  const challenges: Challenge[] = [];
  let current: Challenge | undefined;
  let pos = 0;

  const skipSpace = (): void => {
    while (pos < input.length && (input[pos] === ' ' || input[pos] === '\t')) pos++;
  };
  const readToken = (): string => {
    const start = pos;
    while (pos < input.length && TCHAR.test(input[pos]!)) pos++;
    return input.slice(start, pos);
  };
  /** Leaves `pos` on the next comma that is not inside a quoted-string, or at the end. */
  const skipToComma = (): void => {
    while (pos < input.length && input[pos] !== ',') {
      if (input[pos] === '"') readQuoted();
      else pos++;
    }
  };
  const readQuoted = (): string => {
    pos++; // opening quote
    let out = '';
    while (pos < input.length && input[pos] !== '"') {
      if (input[pos] === '\\' && pos + 1 < input.length) pos++;
      out += input[pos];
      pos++;
    }
    pos++; // closing quote (or one past the end for an unclosed one)
    return out;
  };
  const readValue = (): string => {
    if (input[pos] === '"') {
      const quoted = readQuoted();
      skipToComma(); // anything after the closing quote is junk
      return quoted;
    }
    // A token, by the grammar; registries send URLs unquoted, so take everything up to the comma.
    const start = pos;
    skipToComma();
    return input.slice(start, pos).trim();
  };

  while (pos < input.length) {
    const itemStart = pos;
    skipSpace();
    if (input[pos] === ',') {
      pos++;
      continue;
    }
    const name = readToken();
    if (name === '') {
      skipToComma(); // not a token where an item must start: drop the item
      if (pos === itemStart) pos++;
      continue;
    }
    skipSpace();
    if (input[pos] === '=' && current !== undefined) {
      pos++;
      skipSpace();
      const key = name.toLowerCase();
      const val = readValue();
      if (!(key in current.params)) current.params[key] = val;
      continue;
    }
    if (input[pos] === '=') {
      skipToComma(); // a parameter before any scheme
      continue;
    }

    current = { scheme: name.toLowerCase(), params: Object.create(null) as Record<string, string> };
    challenges.push(current);
    // Right after the scheme: token68, the first auth-param, or nothing.
    const rest = input.slice(pos);
    const t68 = TOKEN68.exec(rest);
    if (t68 !== null) {
      const after = rest.slice(t68[0].length).trimStart();
      if (after === '' || after.startsWith(',')) {
        current.token68 = t68[0];
        pos += t68[0].length;
        current = undefined; // a token68 challenge takes no parameters
      }
    }
  }
  return challenges;
}
