/*
 * load_module.cjs DIST_DIR - loads dist/module.js the way Grafana's SystemJS does (an AMD
 * define), with stand-ins for the host's shared packages, and prints what it exports as JSON.
 */
const fs = require('fs');
const path = require('path');
const vm = require('vm');

class DataSourcePlugin {
  constructor(ds) {
    this.DataSourceClass = ds;
    this.components = {};
  }
  setConfigEditor(c) {
    this.components.ConfigEditor = c;
    return this;
  }
  setQueryEditor(c) {
    this.components.QueryEditor = c;
    return this;
  }
}
class DataSourceWithBackend {
  constructor(settings) {
    this.instanceSettings = settings;
  }
}
const templateSrv = { replace: (t) => t.replace(/\$\{?(\w+)(:\w+)?\}?/g, (m, n) => (n === 'env' ? 'prod' : 'HOST-EXPANDED')) };

// anything else the module touches at load time: callable, constructible, indexable
const anything = () =>
  new Proxy(function () {}, {
    get: (t, k) => (k === '__esModule' ? false : k === Symbol.toPrimitive ? () => '' : anything()),
    apply: () => anything(),
    construct: () => anything(),
  });

const hosted = {
  '@grafana/data': { __esModule: true, DataSourcePlugin },
  '@grafana/runtime': { __esModule: true, DataSourceWithBackend, getTemplateSrv: () => templateSrv, getBackendSrv: anything, config: {} },
};

const file = path.join(process.argv[2], 'module.js');
let deps = null;
let exported = null;
const define = (d, factory) => {
  deps = d;
  exported = factory(...d.map((name) => hosted[name] ?? anything()));
};
define.amd = true;
vm.runInNewContext(fs.readFileSync(file, 'utf8'), { define, console }, { filename: file });

const p = exported && exported.plugin;
const out = { deps, exports: exported ? Object.keys(exported) : [] };
if (p instanceof DataSourcePlugin) {
  const DS = p.DataSourceClass;
  const ds = new DS({ id: 1, uid: 'u', jsonData: {} });
  out.plugin = {
    extendsDataSourceWithBackend: ds instanceof DataSourceWithBackend,
    configEditor: typeof p.components.ConfigEditor,
    queryEditor: typeof p.components.QueryEditor,
    defaultQuery: ds.getDefaultQuery('dashboard'),
    applied: ds.applyTemplateVariables({ refId: 'A', path: '/$env/x?from=${__from}&to=${__to:s}' }, {}),
  };
}
process.stdout.write(JSON.stringify(out));
