/*
 * types.ts - the settings and query model shared by the config editor, the query editor and the
 * data source class. Names, value sets and defaults are those of SPEC.md sections 3, 6 and 7 and
 * of the settings parser (config/settings.c); tests/types.test.ts checks them against the parser.
 */
import { DataQuery, DataSourceJsonData } from '@grafana/data';

/** A duration: "500ms", "30s", "5m", "1h30m", "1d", or a number of seconds. */
export type Duration = string | number;
/** A size: a number of bytes, or "512KiB", "64MiB", "1GB". */
export type Size = string | number;

// ---- data source settings (SPEC section 3) -----------------------------------------------

export const AUTH_TYPES = ['none', 'basic', 'bearer', 'apiKey', 'oauth2', 'forwardOAuth', 'hmac', 'module'] as const;
export type AuthType = (typeof AUTH_TYPES)[number];

export const HMAC_ALGORITHMS = ['sha256', 'sha512'] as const;
export type HmacAlgorithm = (typeof HMAC_ALGORITHMS)[number];

export const RULE_EFFECTS = ['allow', 'deny'] as const;
export type RuleEffect = (typeof RULE_EFFECTS)[number];

/** Grafana's org roles; a rule's role matches itself and every higher role. */
export const ROLES = ['Viewer', 'Editor', 'Admin'] as const;
export type Role = (typeof ROLES)[number];

/**
 * An authorization rule (SPEC section 5). An absent list matches everything; an empty list
 * matches nothing, so the editor drops empty lists instead of saving them.
 */
export interface AuthRule {
  effect: RuleEffect;
  roles?: Role[];
  users?: string[];
  orgs?: number[];
  methods?: string[];
  paths?: string[];
}

// ---- cache (SPEC section 6) --------------------------------------------------------------

export const CACHE_BACKENDS = ['memory', 'redis', 'off'] as const;
export type CacheBackend = (typeof CACHE_BACKENDS)[number];

export const CACHE_SCOPES = ['shared', 'org', 'user'] as const;
export type CacheScope = (typeof CACHE_SCOPES)[number];

/** A per-path lifetime; ttl 0 means never cache. */
export interface CacheRule {
  paths: string[];
  ttl: Duration;
}

export interface CacheSettings {
  backend?: CacheBackend;
  resourceTtl?: Duration;
  queryTtl?: Duration;
  rules?: CacheRule[];
  methods?: string[];
  staleWhileRevalidate?: Duration;
  staleIfError?: Duration;
  respectCacheControl?: boolean;
  /** conditional refresh of expired entries with validators */
  revalidate?: boolean;
  scope?: CacheScope;
  timeAlign?: Duration;
  /** queries: default split interval of the time range (0s = off) */
  querySplit?: Duration;
  /** a piece ending longer ago than this is stable */
  splitStableAfter?: Duration;
  /** lifetime of stable pieces */
  querySplitTtl?: Duration;
  maxEntryBytes?: Size;
  memoryMaxBytes?: Size;
  notFoundTtl?: Duration;
  redisUrl?: string;
  /** rediss://: skip the certificate checks (not for production) */
  redisTlsSkipVerify?: boolean;
  keyPrefix?: string;
  nearCacheTtl?: Duration;
}

/** The cache object's keys, as the parser reads them. */
export const CACHE_KEYS = [
  'backend',
  'resourceTtl',
  'queryTtl',
  'rules',
  'methods',
  'staleWhileRevalidate',
  'staleIfError',
  'respectCacheControl',
  'revalidate',
  'scope',
  'timeAlign',
  'querySplit',
  'splitStableAfter',
  'querySplitTtl',
  'maxEntryBytes',
  'memoryMaxBytes',
  'notFoundTtl',
  'redisUrl',
  'redisTlsSkipVerify',
  'keyPrefix',
  'nearCacheTtl',
] as const satisfies ReadonlyArray<keyof CacheSettings>;

/** Defaults of the cache object, shown as placeholders by the config editor. */
export const CACHE_DEFAULTS = {
  backend: 'memory',
  resourceTtl: '30s',
  queryTtl: '60s',
  methods: ['GET', 'HEAD'],
  staleWhileRevalidate: '0s',
  staleIfError: '0s',
  respectCacheControl: true,
  revalidate: true,
  scope: 'shared',
  timeAlign: '10s',
  querySplit: '0s',
  splitStableAfter: '10m',
  querySplitTtl: '1h',
  maxEntryBytes: '8MiB',
  memoryMaxBytes: '256MiB',
  notFoundTtl: '0s',
  redisUrl: 'redis://127.0.0.1:6379',
  redisTlsSkipVerify: false,
  keyPrefix: 'cachingproxy:',
  nearCacheTtl: '0s',
} as const satisfies Required<Omit<CacheSettings, 'rules'>>;

/**
 * jsonData of a cachingproxy data source. Custom headers follow Grafana's convention:
 * httpHeaderName1..N here, their values in secureJsonData httpHeaderValue1..N.
 */
export interface CachingProxyOptions extends DataSourceJsonData {
  timeout?: number;
  healthPath?: string;
  authType?: AuthType;
  apiKeyHeader?: string;
  apiKeyQueryParam?: string;
  oauth2TokenUrl?: string;
  oauth2ClientId?: string;
  oauth2Scopes?: string[];
  oauth2Audience?: string;
  oauthPassThru?: boolean;
  hmacHeader?: string;
  hmacAlgorithm?: HmacAlgorithm;
  authModule?: string;
  /** a JSON object, or its text */
  authModuleConfig?: Record<string, unknown> | string;
  allowedPaths?: string[];
  forwardHeaders?: string[];
  rules?: AuthRule[];
  defaultAction?: RuleEffect;
  authzUrl?: string;
  authzCacheTtl?: Duration;
  maxResponseBytes?: Size;
  maxRequestBytes?: Size;
  /** upstream connections at once (1..100000) */
  maxConnections?: number;
  tlsSkipVerify?: boolean;
  tlsAuth?: boolean;
  tlsAuthWithCACert?: boolean;
  cache?: CacheSettings;
  [httpHeaderName: `httpHeaderName${number}`]: string | undefined;
}

/** jsonData keys the parser reads (custom header names apart). */
export const JSON_DATA_KEYS = [
  'timeout',
  'healthPath',
  'authType',
  'apiKeyHeader',
  'apiKeyQueryParam',
  'oauth2TokenUrl',
  'oauth2ClientId',
  'oauth2Scopes',
  'oauth2Audience',
  'oauthPassThru',
  'hmacHeader',
  'hmacAlgorithm',
  'authModule',
  'authModuleConfig',
  'allowedPaths',
  'forwardHeaders',
  'rules',
  'defaultAction',
  'authzUrl',
  'authzCacheTtl',
  'maxResponseBytes',
  'maxRequestBytes',
  'maxConnections',
  'tlsSkipVerify',
  'tlsAuth',
  'tlsAuthWithCACert',
  'cache',
] as const satisfies ReadonlyArray<keyof CachingProxyOptions>;

/** secureJsonData: write-only; Grafana sends back only secureJsonFields (which keys are set). */
export interface CachingProxySecureData {
  basicAuthPassword?: string;
  bearerToken?: string;
  apiKey?: string;
  oauth2ClientSecret?: string;
  hmacSecret?: string;
  /** a JSON object of module secrets, merged over jsonData authModuleConfig */
  authModuleConfig?: string;
  redisPassword?: string;
  redisSentinelPassword?: string;
  redisTlsCACert?: string;
  redisTlsClientCert?: string;
  redisTlsClientKey?: string;
  tlsCACert?: string;
  tlsClientCert?: string;
  tlsClientKey?: string;
  [httpHeaderValue: `httpHeaderValue${number}`]: string | undefined;
}

export type SecureKey = Exclude<keyof CachingProxySecureData, `httpHeaderValue${number}`>;

/** secureJsonData keys the parser reads (custom header values apart). */
export const SECURE_KEYS = [
  'basicAuthPassword',
  'bearerToken',
  'apiKey',
  'oauth2ClientSecret',
  'hmacSecret',
  'authModuleConfig',
  'redisPassword',
  'redisSentinelPassword',
  'redisTlsCACert',
  'redisTlsClientCert',
  'redisTlsClientKey',
  'tlsCACert',
  'tlsClientCert',
  'tlsClientKey',
] as const satisfies ReadonlyArray<SecureKey>;

/** Defaults of the top-level jsonData keys, shown as placeholders. */
export const DEFAULTS = {
  timeout: 30,
  healthPath: '/',
  authType: 'none',
  apiKeyHeader: 'X-API-Key',
  hmacHeader: 'X-Signature',
  hmacAlgorithm: 'sha256',
  allowedPaths: ['/**'],
  forwardHeaders: ['Accept', 'Accept-Encoding', 'Content-Type', 'If-None-Match', 'If-Modified-Since'],
  defaultAction: 'allow',
  authzCacheTtl: '10s',
  maxResponseBytes: '64MiB',
  maxRequestBytes: '16MiB',
  maxConnections: 1024,
  oauthPassThru: false,
} as const;

/** The authType in force: explicit, else basic when Grafana's basicAuth is on (as the parser). */
export function effectiveAuthType(jsonData: CachingProxyOptions, basicAuth?: boolean): AuthType {
  return jsonData.authType ?? (basicAuth ? 'basic' : 'none');
}

// ---- queries (SPEC section 7) ------------------------------------------------------------

export const QUERY_FORMATS = ['table', 'timeseries'] as const;
export type QueryFormat = (typeof QUERY_FORMATS)[number];

export const COLUMN_TYPES = ['time', 'number', 'string', 'boolean'] as const;
export type ColumnType = (typeof COLUMN_TYPES)[number];

export const TIME_FORMATS = ['unixms', 'unixs', 'rfc3339'] as const;
export type TimeFormat = (typeof TIME_FORMATS)[number];

/** A column of the frame; absent columns are inferred from the rows. */
export interface QueryColumn {
  selector: string;
  name?: string;
  type?: ColumnType;
  timeFormat?: TimeFormat;
}

export type ParamValue = string | number | boolean;

export interface CachingProxyQuery extends DataQuery {
  method?: string;
  path?: string;
  /** arrays repeat the parameter */
  params?: Record<string, ParamValue | ParamValue[]>;
  headers?: Record<string, string>;
  body?: string;
  root?: string;
  columns?: QueryColumn[];
  format?: QueryFormat;
  cacheTtl?: Duration;
  /** cut the time range into cached pieces of this length ("1h"), or "off" */
  split?: Duration | 'off';
  /** keep the panel updating: the frame names a Grafana Live channel that polls this query */
  live?: boolean;
  /** poll interval of the live channel (default: the query's interval; at least 500ms) */
  liveInterval?: Duration;
}

export const QUERY_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'] as const;

export const DEFAULT_QUERY: Partial<CachingProxyQuery> = {
  method: 'GET',
  path: '/',
  format: 'table',
};

/** Placeholders the plugin substitutes in path, params and body, after aligning the range. */
export const PLACEHOLDERS: ReadonlyArray<{ name: string; meaning: string }> = [
  { name: '${__from}', meaning: 'range start, epoch ms' },
  { name: '${__to}', meaning: 'range end, epoch ms' },
  { name: '${__from:s}', meaning: 'range start, epoch s' },
  { name: '${__to:s}', meaning: 'range end, epoch s' },
  { name: '${__from:iso}', meaning: 'range start, RFC 3339' },
  { name: '${__to:iso}', meaning: 'range end, RFC 3339' },
  { name: '${__interval_ms}', meaning: 'interval, ms' },
  { name: '${__maxDataPoints}', meaning: 'max data points' },
];

// ---- resources (SPEC section 4) ----------------------------------------------------------

/** The answer of GET cache/stats. */
export interface CacheStats {
  backend: CacheBackend;
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
  stale: number;
  revalidated: number;
  bypass: number;
  coalesced: number;
  hitRatio: number;
  upstreamRequests: number;
  errors: number;
}

export interface PurgeResult {
  purged: number;
}
