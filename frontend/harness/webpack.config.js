/*
 * harness/webpack.config.js - the editors and Grafana's packages in one browser bundle (nothing
 * external), for the headless-browser test. `--env out=DIR` picks the output folder.
 */
const path = require('path');
const fs = require('fs');

module.exports = (env = {}) => {
  const out = path.resolve(env.out || path.join(__dirname, '..', 'dist-harness'));
  return {
    mode: 'development',
    devtool: false,
    context: __dirname,
    entry: { harness: './index.tsx' },
    module: {
      rules: [
        {
          test: /\.[tj]sx?$/,
          exclude: /node_modules/,
          use: { loader: 'swc-loader', options: { jsc: { target: 'es2019', parser: { syntax: 'typescript', tsx: true } } } },
        },
        { test: /\.m?js$/, resolve: { fullySpecified: false } },
      ],
    },
    output: { path: out, filename: '[name].js', clean: true },
    resolve: { extensions: ['.ts', '.tsx', '.js'] },
    performance: { hints: false },
    stats: 'errors-warnings',
    cache: { type: 'filesystem', cacheDirectory: path.join(__dirname, '..', 'node_modules', '.cache', 'harness-webpack') },
    plugins: [
      {
        apply(compiler) {
          compiler.hooks.afterEmit.tap('HarnessPage', () => fs.copyFileSync(path.join(__dirname, 'index.html'), path.join(out, 'index.html')));
        },
      },
    ],
  };
};
