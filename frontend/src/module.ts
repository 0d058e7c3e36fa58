/*
 * module.ts - the entry Grafana loads (module.js): the data source plugin with its editors.
 */
import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from './components/ConfigEditor';
import { QueryEditor } from './components/QueryEditor';
import { CachingProxyDataSource } from './datasource';
import { CachingProxyOptions, CachingProxyQuery } from './types';

export const plugin = new DataSourcePlugin<CachingProxyDataSource, CachingProxyQuery, CachingProxyOptions>(CachingProxyDataSource)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);
