/*
 * options.ts - pure updates of the data source settings object. Every editor change goes
 * through one of these, so that empty values are dropped (the parser's defaults apply) and
 * secrets follow Grafana's pattern: written to secureJsonData, never read back, reset by
 * clearing their secureJsonFields flag.
 */
import { DataSourceSettings } from '@grafana/data';

import { CacheSettings, CachingProxyOptions, CachingProxySecureData, Duration, Size } from '../types';

export type Settings = DataSourceSettings<CachingProxyOptions, CachingProxySecureData>;

/** A value that means "not set": the key is removed so the default applies. */
function isEmpty(v: unknown): boolean {
  return v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0);
}

export function setJson<K extends keyof CachingProxyOptions>(
  o: Settings,
  key: K,
  value: CachingProxyOptions[K] | undefined
): Settings {
  const jsonData = { ...o.jsonData };
  if (isEmpty(value)) {
    delete jsonData[key];
  } else {
    jsonData[key] = value as CachingProxyOptions[K];
  }
  return { ...o, jsonData };
}

/** Several jsonData keys at once; undefined removes a key. */
export function patchJson(o: Settings, patch: Partial<CachingProxyOptions>): Settings {
  let out = o;
  for (const [k, v] of Object.entries(patch)) {
    out = setJson(out, k as keyof CachingProxyOptions, v as never);
  }
  return out;
}

export function setCache<K extends keyof CacheSettings>(o: Settings, key: K, value: CacheSettings[K] | undefined): Settings {
  const cache: CacheSettings = { ...(o.jsonData.cache ?? {}) };
  if (isEmpty(value)) {
    delete cache[key];
  } else {
    cache[key] = value;
  }
  return setJson(o, 'cache', Object.keys(cache).length ? cache : undefined);
}

export function setSecure(o: Settings, key: keyof CachingProxySecureData, value: string): Settings {
  return { ...o, secureJsonData: { ...(o.secureJsonData ?? {}), [key]: value } };
}

export function isConfigured(o: Settings, key: keyof CachingProxySecureData): boolean {
  return Boolean(o.secureJsonFields?.[key]);
}

/** Forgets a stored secret: Grafana overwrites it with the empty value on save. */
export function resetSecure(o: Settings, key: keyof CachingProxySecureData): Settings {
  return {
    ...o,
    secureJsonFields: { ...(o.secureJsonFields ?? {}), [key]: false },
    secureJsonData: { ...(o.secureJsonData ?? {}), [key]: '' },
  };
}

/** The text typed for a secret that is not stored yet (a stored one is never shown). */
export function pendingSecret(o: Settings, key: keyof CachingProxySecureData): string {
  return isConfigured(o, key) ? '' : (o.secureJsonData?.[key] ?? '');
}

/** Text of a duration or size input back into the value: plain integers become numbers. */
export function parseAmount(text: string): Duration | Size | undefined {
  const t = text.trim();
  if (t === '') {
    return undefined;
  }
  return /^\d+$/.test(t) ? Number(t) : t;
}

export function amountText(v: Duration | Size | undefined): string {
  return v === undefined || v === null ? '' : String(v);
}
