/**
 * The Sigma condition language for single-event rules: `and`, `or`, `not`, parentheses,
 * `1 of <pattern>`, `all of <pattern>` and `them`. Precedence, loosest first: or, and, not, x of,
 * parentheses. Anything else is refused by name: the `| count() ... > n` aggregations and `near`
 * of Sigma 1 were dropped from the specification in 2.0 in favour of correlation rules.
 */

export type Condition =
  | { kind: 'id'; name: string }
  | { kind: 'not'; arg: Condition }
  | { kind: 'and' | 'or'; args: Condition[] }
  | { kind: 'of'; all: boolean; names: string[] };

const WORD = /^[A-Za-z0-9_*.-]+$/;

function tokenize(text: string, fail: (what: string) => never): string[] {
  const tokens: string[] = [];
  for (const match of text.matchAll(/\s+|[()|]|[^\s()|]+/g)) {
    const token = match[0];
    if (/^\s+$/.test(token)) continue;
    if (token === '|') fail(pipeRefusal(text.slice(match.index + 1).trim()));
    if (token.toLowerCase() === 'near') fail(NEAR_REFUSAL);
    if (token !== '(' && token !== ')' && !WORD.test(token)) fail(`unexpected ${JSON.stringify(token)}`);
    tokens.push(token);
  }
  return tokens;
}

const NEAR_REFUSAL =
  "'near' is not supported: Sigma 2.0 dropped it for correlation rules; write a temporal correlation rule over the rules it joins";

/** What follows a `|` in a condition: a Sigma 1 aggregation or `near`, both gone from Sigma 2.0. */
function pipeRefusal(rest: string): string {
  if (/^near\b/i.test(rest)) return NEAR_REFUSAL;
  return `aggregation '| ${rest}' is not supported: Sigma 2.0 dropped aggregations for correlation rules; write it as one (type event_count, or value_count for count(field), with group-by for 'by' and timespan for the old timeframe)`;
}

function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .split('*')
    .map((part) => part.replace(/[\\^$.+?()[\]{}|/-]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`);
}

const RESERVED = new Set(['and', 'or', 'not', 'of', 'them', 'all', '1', '(', ')']);

/**
 * Parses `text` against the rule's search identifiers (`names`, in rule order). Unknown
 * identifiers and patterns that select nothing are errors: a typo must not make a rule silent.
 */
export function parseCondition(text: string, names: readonly string[], fail: (what: string) => never): Condition {
  const tokens = tokenize(text, fail);
  let pos = 0;
  const peek = (): string | undefined => tokens[pos]?.toLowerCase();
  const describe = (token: string | undefined): string => (token === undefined ? 'end of condition' : `'${token}'`);

  const or = (): Condition => {
    const args = [and()];
    while (peek() === 'or') {
      pos++;
      args.push(and());
    }
    return args.length === 1 ? (args[0] as Condition) : { kind: 'or', args };
  };
  const and = (): Condition => {
    const args = [not()];
    while (peek() === 'and') {
      pos++;
      args.push(not());
    }
    return args.length === 1 ? (args[0] as Condition) : { kind: 'and', args };
  };
  const not = (): Condition => {
    if (peek() === 'not') {
      pos++;
      return { kind: 'not', arg: not() };
    }
    return primary();
  };
  const primary = (): Condition => {
    const token = tokens[pos];
    const lower = token?.toLowerCase();
    if (token === undefined) fail('condition ends where a search identifier was expected');
    pos++;
    if (token === '(') {
      const inner = or();
      if (tokens[pos] !== ')') fail(`expected ')' but found ${describe(tokens[pos])}`);
      pos++;
      return inner;
    }
    if (peek() === 'of') {
      pos++;
      if (lower !== '1' && lower !== 'all') fail(`'${token} of' is not supported; use '1 of' or 'all of'`);
      return quantified(lower === 'all');
    }
    if (RESERVED.has(lower ?? '')) fail(`unexpected ${describe(token)}`);
    if (token.includes('*')) fail(`wildcard '${token}' is only allowed after '1 of' or 'all of'`);
    if (!names.includes(token)) fail(`unknown search identifier '${token}'`);
    return { kind: 'id', name: token };
  };
  const quantified = (all: boolean): Condition => {
    const target = tokens[pos];
    if (target === undefined || target === '(' || target === ')')
      fail(`expected 'them' or a search identifier pattern after 'of' but found ${describe(target)}`);
    pos++;
    let selected: string[];
    if (target.toLowerCase() === 'them') selected = names.filter((n) => !n.startsWith('_'));
    else {
      const re = globToRegExp(target);
      selected = names.filter((n) => re.test(n));
    }
    if (selected.length === 0) fail(`'${target}' matches no search identifier`);
    return { kind: 'of', all, names: selected };
  };

  const result = or();
  if (pos < tokens.length) fail(`unexpected ${describe(tokens[pos])}`);
  return result;
}

export function evaluate(c: Condition, test: (name: string) => boolean): boolean {
  switch (c.kind) {
    case 'id':
      return test(c.name);
    case 'not':
      return !evaluate(c.arg, test);
    case 'and':
      return c.args.every((a) => evaluate(a, test));
    case 'or':
      return c.args.some((a) => evaluate(a, test));
    case 'of':
      return c.all ? c.names.every(test) : c.names.some(test);
  }
}

/** The identifiers a condition can read, in the order they first appear. */
export function referenced(c: Condition, out: Set<string> = new Set()): Set<string> {
  if (c.kind === 'id') out.add(c.name);
  else if (c.kind === 'of') for (const n of c.names) out.add(n);
  else if (c.kind === 'not') referenced(c.arg, out);
  else for (const a of c.args) referenced(a, out);
  return out;
}
