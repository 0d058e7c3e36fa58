/*
 * resources.ts - the plugin's own resources (SPEC section 4), called through Grafana:
 * /api/datasources/uid/<uid>/resources/<path>.
 */
import { getBackendSrv } from '@grafana/runtime';

import { CacheStats, PurgeResult } from './types';

export function resourceUrl(uid: string, path: string): string {
  return `/api/datasources/uid/${encodeURIComponent(uid)}/resources/${path}`;
}

export function fetchCacheStats(uid: string): Promise<CacheStats> {
  return getBackendSrv().get<CacheStats>(resourceUrl(uid, 'cache/stats'));
}

/** Purges this data source's entries, or those under a path prefix ("/api/x"). */
export function purgeCache(uid: string, prefix?: string): Promise<PurgeResult> {
  const p = prefix?.trim();
  const body = p ? { prefix: p.startsWith('/') ? p : '/' + p } : {};
  return getBackendSrv().post<PurgeResult>(resourceUrl(uid, 'cache/purge'), body, { showSuccessAlert: false });
}
