/*
 * webpack.config.js - builds module.js the way Grafana loads plugins: one AMD module, swc for
 * TypeScript, Grafana's shared packages as externals (the host provides them), and the plugin's
 * static files (plugin.json with version and date filled in, README, logos, LICENSE, CHANGELOG)
 * next to it. `--env out=DIR` picks the output folder (default: dist/ here).
 */
const fs = require('fs');
const path = require('path');
const webpack = require('webpack');

const SRC = path.resolve(__dirname, 'src');
const ROOT = path.resolve(__dirname, '..');

// Shared with the host (create-plugin's list): never bundled.
const externals = [
  'lodash',
  'jquery',
  'moment',
  'slate',
  'emotion',
  '@emotion/react',
  '@emotion/css',
  'prismjs',
  'slate-plain-serializer',
  '@grafana/slate-react',
  'react',
  'react/jsx-runtime',
  'react/jsx-dev-runtime',
  'react-dom',
  'react-redux',
  'redux',
  'rxjs',
  'i18next',
  'react-router',
  'react-router-dom',
  'd3',
  'angular',
  /^@grafana\/ui/i,
  /^@grafana\/runtime/i,
  /^@grafana\/data/i,
  /^@grafana\/schema/i,
];

/** Emits the plugin's static files next to module.js. */
class PluginFilesPlugin {
  constructor(version) {
    this.version = version;
  }
  apply(compiler) {
    compiler.hooks.thisCompilation.tap('PluginFiles', (compilation) => {
      compilation.hooks.processAssets.tap(
        { name: 'PluginFiles', stage: webpack.Compilation.PROCESS_ASSETS_STAGE_ADDITIONAL },
        () => {
          const today = new Date().toISOString().slice(0, 10);
          const emit = (name, file, transform) => {
            compilation.fileDependencies.add(file);
            let body = fs.readFileSync(file);
            if (transform) {
              body = Buffer.from(transform(body.toString('utf8')));
            }
            compilation.emitAsset(name, new webpack.sources.RawSource(body));
          };
          const fill = (s) => s.replace(/%VERSION%/g, this.version).replace(/%TODAY%/g, today);
          emit('plugin.json', path.join(SRC, 'plugin.json'), fill);
          emit('README.md', path.join(SRC, 'README.md'), fill);
          emit('LICENSE', path.join(ROOT, 'LICENSE'));
          emit('CHANGELOG.md', path.join(ROOT, 'CHANGELOG.md'));
          const plugin = JSON.parse(fs.readFileSync(path.join(SRC, 'plugin.json'), 'utf8'));
          for (const logo of new Set(Object.values(plugin.info.logos))) {
            emit(logo, path.join(SRC, logo));
          }
        }
      );
    });
  }
}

module.exports = (env = {}) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, 'package.json'), 'utf8'));
  const plugin = JSON.parse(fs.readFileSync(path.join(SRC, 'plugin.json'), 'utf8'));
  const version = env.version || pkg.version;
  const production = Boolean(env.production);
  return {
    context: SRC,
    mode: production ? 'production' : 'development',
    devtool: 'source-map',
    entry: { module: './module.ts' },
    externals,
    module: {
      rules: [
        {
          test: /\.[tj]sx?$/,
          exclude: /node_modules/,
          use: {
            loader: 'swc-loader',
            options: {
              jsc: {
                target: 'es2015',
                parser: { syntax: 'typescript', tsx: true },
              },
            },
          },
        },
      ],
    },
    output: {
      clean: true,
      filename: '[name].js',
      library: { type: 'amd' },
      path: path.resolve(env.out || path.join(__dirname, 'dist')),
      publicPath: `public/plugins/${plugin.id}/`,
      uniqueName: plugin.id,
    },
    plugins: [
      new PluginFilesPlugin(version),
    ],
    resolve: { extensions: ['.ts', '.tsx', '.js'] },
    performance: { hints: false },
    stats: 'errors-warnings',
  };
};
