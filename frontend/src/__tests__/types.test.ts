/*
 * The shared types against the settings parser (config/settings.c): the same keys, value sets
 * and defaults, so a renamed or added key on either side fails here.
 */
import fs from 'fs';
import path from 'path';

import { TemplateSrv, setTemplateSrv } from '@grafana/runtime';
import { DataSourceInstanceSettings } from '@grafana/data';

import { CachingProxyDataSource, interpolate } from '../datasource';
import {
  AUTH_TYPES,
  CACHE_BACKENDS,
  CACHE_DEFAULTS,
  CACHE_KEYS,
  CACHE_SCOPES,
  CachingProxyOptions,
  DEFAULTS,
  HMAC_ALGORITHMS,
  JSON_DATA_KEYS,
  ROLES,
  SECURE_KEYS,
} from '../types';

const ROOT = path.join(__dirname, '../../..');
const settingsC = fs.readFileSync(path.join(ROOT, 'config/settings.c'), 'utf8');
// the frame codec (column types, time formats) lives in its own module or, before, in proxy/
const frameC = fs.readFileSync(
  ['frame/frame.c', 'proxy/frame.c'].map((f) => path.join(ROOT, f)).find((f) => fs.existsSync(f))!,
  'utf8'
);

function all(re: RegExp, text = settingsC): string[] {
  return Array.from(text.matchAll(re), (m) => m[1]);
}

const sorted = (a: readonly string[]) => [...new Set(a)].sort();

/** Milliseconds of a duration as the parser reads it. */
function ms(d: string | number): number {
  if (typeof d === 'number') {
    return d * 1000;
  }
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000 };
  let total = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) {
    total += Number(m[1]) * unit[m[2]];
  }
  return total;
}

function bytes(s: string): number {
  const m = /^(\d+)(KiB|MiB|GiB)$/.exec(s)!;
  return Number(m[1]) * { KiB: 1024, MiB: 1 << 20, GiB: 1 << 30 }[m[2] as 'KiB']!;
}

/** A C constant such as (64LL << 20) or 30000. */
function cConst(name: string): number {
  const m = new RegExp(`#define ${name} \\(?(\\d+)(?:LL)?(?: << (\\d+))?\\)?`).exec(settingsC);
  if (!m) {
    throw new Error(`${name} not found in settings.c`);
  }
  return Number(m[1]) * 2 ** Number(m[2] ?? 0);
}

describe('types match the settings parser', () => {
  it('has every jsonData key the parser reads, and no other', () => {
    const parsed = all(/(?:get_\w+\(&?p, jd, |json_object_get\(jd, )"(\w+)"/g);
    expect(parsed.length).toBeGreaterThan(20);
    expect(sorted(JSON_DATA_KEYS)).toEqual(sorted(parsed));
  });

  it('has every cache key the parser reads, and no other', () => {
    const parsed = all(/(?:get_\w+\(p, co, |json_object_get\(co, )"(\w+)"/g);
    expect(sorted(CACHE_KEYS)).toEqual(sorted(parsed));
  });

  it('has every secret the parser reads', () => {
    const parsed = [...all(/take_secret\(p, "(\w+)"/g), ...all(/secure\(p, "(\w+)"\)/g)];
    expect(sorted(SECURE_KEYS)).toEqual(sorted(parsed));
    expect(settingsC).toContain('"httpHeaderName%d"');
    expect(settingsC).toContain('"httpHeaderValue%d"');
  });

  it('uses the parser value sets', () => {
    const authNames = /names\[\] = \{([^}]*)\}/.exec(settingsC)![1];
    expect(all(/"(\w+)"/g, authNames)).toEqual([...AUTH_TYPES]);
    expect(settingsC).toContain('"must be memory, redis or off"');
    expect([...CACHE_BACKENDS]).toEqual(['memory', 'redis', 'off']);
    expect(settingsC).toContain('"must be shared, org or user"');
    expect([...CACHE_SCOPES]).toEqual(['shared', 'org', 'user']);
    expect(settingsC).toContain('"must be sha256 or sha512"');
    expect([...HMAC_ALGORITHMS]).toEqual(['sha256', 'sha512']);
    for (const r of ROLES) {
      expect(settingsC).toContain(`!strcasecmp(s, "${r}")`);
    }
    expect(frameC).toContain('"columns[%zu].type must be time, number, string or boolean"');
    expect(frameC).toContain('"columns[%zu].timeFormat must be unixms, unixs or rfc3339"');
  });

  it('shows the parser defaults', () => {
    expect(DEFAULTS.timeout * 1000).toBe(cConst('DEFAULT_TIMEOUT_MS'));
    expect(bytes(DEFAULTS.maxResponseBytes)).toBe(cConst('DEFAULT_MAX_RESPONSE'));
    expect(bytes(DEFAULTS.maxRequestBytes)).toBe(cConst('DEFAULT_MAX_REQUEST'));
    expect(DEFAULTS.maxConnections).toBe(cConst('DEFAULT_MAX_CONNECTIONS'));
    expect(bytes(CACHE_DEFAULTS.maxEntryBytes)).toBe(cConst('DEFAULT_MAX_ENTRY'));
    expect(bytes(CACHE_DEFAULTS.memoryMaxBytes)).toBe(cConst('DEFAULT_MEMORY_MAX'));
    expect(settingsC).toContain(`#define DEFAULT_REDIS_URL "${CACHE_DEFAULTS.redisUrl}"`);
    const assigned = (field: string) => Number(new RegExp(`c->${field} = (\\d+);`).exec(settingsC)![1]);
    expect(ms(CACHE_DEFAULTS.resourceTtl)).toBe(assigned('resource_ttl_ms'));
    expect(ms(CACHE_DEFAULTS.queryTtl)).toBe(assigned('query_ttl_ms'));
    expect(ms(CACHE_DEFAULTS.timeAlign)).toBe(assigned('time_align_ms'));
    expect(ms(CACHE_DEFAULTS.nearCacheTtl)).toBe(assigned('near_cache_ms'));
    expect(Number(CACHE_DEFAULTS.respectCacheControl)).toBe(assigned('respect_cache_control'));
    expect(Number(CACHE_DEFAULTS.revalidate)).toBe(assigned('revalidate'));
    expect(ms(DEFAULTS.authzCacheTtl)).toBe(Number(/authz_cache_ttl_ms = (\d+);/.exec(settingsC)![1]));
    expect(settingsC).toContain(`"${CACHE_DEFAULTS.keyPrefix}"`);
    expect(settingsC).toContain(`"${DEFAULTS.apiKeyHeader}"`);
    expect(settingsC).toContain(`&ds->hmac_header, "${DEFAULTS.hmacHeader}"`);
    expect(settingsC).toContain(`&ds->hmac_algorithm, "${DEFAULTS.hmacAlgorithm}"`);
    expect(settingsC).toContain(`&ds->health_path, "${DEFAULTS.healthPath}"`);
    expect(settingsC).toContain(`&ds->allowed_paths, "${DEFAULTS.allowedPaths[0]}"`);
    const fwd = /default_forward_headers\[\] = \{([^}]*)\}/.exec(settingsC)![1];
    expect(all(/"([\w-]+)"/g, fwd)).toEqual([...DEFAULTS.forwardHeaders]);
    expect(settingsC).toMatch(/cfg_strlist_push\(&c->methods, "GET"\)[\s\S]{0,120}"HEAD"/);
    expect([...CACHE_DEFAULTS.methods]).toEqual(['GET', 'HEAD']);
  });
});

describe('template variables', () => {
  // Grafana's template service would also expand its own ${__from}: the data source must not let it
  const fake = {
    replace: (t: string) => t.replace(/\$\{?env\}?/g, 'prod').replace(/\$\{?__\w+(:\w+)?\}?/g, 'GRAFANA'),
  } as unknown as TemplateSrv;

  it('substitutes dashboard variables and keeps the backend placeholders', () => {
    const text = '/m/${env}?from=${__from}&to=${__to:s}&a=${__from:iso}&i=${__interval_ms}&n=$__maxDataPoints&x=$__fromage';
    expect(interpolate(text, fake.replace as (t: string) => string)).toBe(
      '/m/prod?from=${__from}&to=${__to:s}&a=${__from:iso}&i=${__interval_ms}&n=$__maxDataPoints&x=GRAFANA'
    );
  });

  it('applies to path, params, headers, body and root of a query', () => {
    setTemplateSrv(fake);
    const ds = new CachingProxyDataSource({ id: 1, uid: 'u', jsonData: {} } as DataSourceInstanceSettings<CachingProxyOptions>);
    const q = ds.applyTemplateVariables(
      {
        refId: 'A',
        path: '/$env/items',
        params: { since: '${__from:s}', tag: ['$env', 'x'], limit: 5 },
        headers: { 'X-Env': '$env' },
        body: '{"to": "${__to}", "env": "$env"}',
        root: 'data.$env',
        format: 'table',
      },
      {}
    );
    expect(q).toEqual({
      refId: 'A',
      path: '/prod/items',
      params: { since: '${__from:s}', tag: ['prod', 'x'], limit: 5 },
      headers: { 'X-Env': 'prod' },
      body: '{"to": "${__to}", "env": "prod"}',
      root: 'data.prod',
      format: 'table',
    });
  });
});
