/*
 * jest.config.js - unit tests of the editors in jsdom, TypeScript through swc. Grafana's packages
 * pull in a few ES-module-only dependencies, which are transformed too.
 */
const esModules = ['@grafana/schema', 'd3', 'd3-[a-z-]+', 'internmap', 'ol', 'react-colorful', 'rxjs', 'uuid', 'marked', 'react-calendar', '@wojtekmaj/date-utils', 'get-user-locale', 'memoize', 'mimic-function'];

module.exports = {
  rootDir: __dirname,
  testEnvironment: 'jest-environment-jsdom',
  testMatch: ['<rootDir>/src/**/*.test.{ts,tsx}'],
  setupFilesAfterEnv: ['<rootDir>/jest-setup.ts'],
  moduleNameMapper: {
    '\\.(css|scss|sass)$': 'identity-obj-proxy',
    // Icon fetches SVG files from Grafana's server; tests render a stub
    'react-inlinesvg': '<rootDir>/tests/mocks/react-inlinesvg.tsx',
  },
  transform: {
    '^.+\\.(m?js|tsx?|jsx)$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript', tsx: true }, transform: { react: { runtime: 'classic' } } } }],
  },
  transformIgnorePatterns: [`node_modules/(?!.*(${esModules.join('|')})/.*)`],
  cacheDirectory: process.env.JEST_CACHE_DIR || '<rootDir>/node_modules/.cache/jest',
  testTimeout: 30000,
};
